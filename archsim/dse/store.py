"""A sweep's results on disk: Parquet parts written atomically as chunks finish.

``OUT/parts/*.parquet`` hold every row ever computed; each is written to a temporary file
and renamed into place, so a killed sweep leaves whole parts or nothing (and a ``.tmp-*``
file, which the next run deletes and which is never read). A re-run reads the keys already
present and evaluates only the rest. ``OUT/results.parquet`` is the consolidated table (one
row per point key, typed and with its derived columns: ``archsim.dse.report.results_table``),
rewritten atomically at the end of each run. The parts keep the raw rows (swept values as
JSON text), which resuming reads.

The folder is data, never code: parts are read as Parquet tables only (no pickles). A part
that cannot be read (truncated, empty, not a sweep's table) is reported and, by a run that
writes, moved aside to ``*.unreadable``; its points are evaluated again. A part computed by
other model code than this process's (``code`` column: an earlier version, or an edit since)
is never reused nor mixed with this code's rows: a run that writes moves it aside to
``*.other-code`` (kept, never read again) and evaluates its points anew. One run writes a
folder at a time (``ResultStore.writer``, a lock the kernel drops if the process dies). Files
are written atomically and never through a link (``archsim.fileio``); a symbolic link in
place of ``parts/`` is refused.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from archsim.errors import ArchsimError
from archsim.fileio import atomic_write, open_regular, remove_leftovers

RESULTS = "results.parquet"
LOCK = ".lock"  # in parts/, archsim's own folder
UNREADABLE = ".unreadable"
OTHER_CODE = ".other-code"
REQUIRED = ("key", "status")  # the columns every row of a sweep has
CODE = "code"  # which model code computed a row (archsim.dse.evaluate.code_fingerprint)
# what reports read: of every row, and of every feasible row (besides the objectives' columns)
COLUMNS = ("key", "status", "reason", "role", "config", "workload_file", "workload_id")
OK_COLUMNS = ("workload", "latency_s", "energy_j", "energy_mxu_j", "area_mm2")

log = logging.getLogger(__name__)


class StoreError(ArchsimError):
    pass


class ResultStore:
    def __init__(self, out_dir: str | Path, create: bool = True):
        self.root = Path(out_dir)
        self.parts = self.root / "parts"
        self._lock_fd: int | None = None
        self._warned: set[str] = set()
        self._code: str | None = None
        self._other_code: list[Path] = []  # parts of other code met by the current read
        if self.parts.is_symlink():  # every write there would land wherever it points
            raise StoreError(f"{self.parts}: a symbolic link (to {os.readlink(self.parts)}), not a folder: archsim "
                             "writes and reads results parts only in a real folder; remove the link or use another "
                             "--out")
        if create:
            try:
                self.parts.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.root}: cannot create the results folder: {exc.strerror or exc}") from None

    @property
    def code(self) -> str:
        """This process's model code: only its rows are read."""
        if self._code is None:
            from archsim.dse.evaluate import code_fingerprint  # on first use: the model is heavy to import

            self._code = code_fingerprint()
        return self._code

    @property
    def writing(self) -> bool:
        return self._lock_fd is not None

    @contextmanager
    def writer(self) -> Iterator["ResultStore"]:
        """Be the folder's only writer within this block (re-entrant): a second sweep writing
        the same folder would delete the first one's temporaries and evaluate the same points.
        A POSIX lock: released by the kernel when the process dies, even by SIGKILL, and not
        inherited by forked pool workers."""
        if self._lock_fd is not None:
            yield self
            return
        self._lock_fd = _lock(self.parts)
        try:
            yield self
        finally:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # closing releases a POSIX lock
            self._lock_fd = None

    def clean(self) -> None:
        """Before a run writes (within ``writer()``): delete the temporaries of killed writers,
        in ``parts/`` and beside the results table."""
        with self.writer():
            remove_leftovers(self.parts)
            remove_leftovers(self.root)

    def _part_files(self) -> list[Path]:
        """Oldest first, so that a retried point's newest row wins. Regular files only: a
        FIFO or a folder with a part's name is not read (a FIFO would block forever), nor a
        symbolic link (archsim writes none: its target is not this sweep's)."""
        files = []
        for path in self.parts.glob("part-*.parquet"):
            try:
                info = path.lstat()
            except OSError:  # vanished meanwhile
                continue
            if stat.S_ISREG(info.st_mode):
                files.append((info.st_mtime_ns, path.name, path))
        return [path for *_, path in sorted(files)]

    def done_keys(self) -> set[str]:
        """Points finished for good; a point that failed with an error is tried again."""
        frame = self.frame()
        return set(frame.loc[frame["status"] != "error", "key"]) if len(frame) else set()

    def write(self, rows: list[dict]) -> Path:
        if not rows:
            raise StoreError("nothing to write")
        final = self.parts / f"part-{rows[0]['key']}-{len(rows)}-{uuid.uuid4().hex[:8]}.parquet"
        with self.writer():
            _atomic_parquet(pd.DataFrame(rows), final,
                            f"the points finished so far are saved in {self.root}; free space and run the "
                            "sweep again to resume")
        return final

    def frame(self) -> pd.DataFrame:
        """One row per point key. A key's error row (a failure, retried by the next run)
        gives way to any other row of it; otherwise the newest part wins. Only the rows kept
        are concatenated, so a superseded row (an error has fewer columns) cannot change the
        types of the others: the table is the one an uninterrupted run writes."""
        self._other_code = []
        parts = [part for part in map(self._read_part, self._part_files()) if part is not None]
        self._report_other_code()
        if not parts:
            return pd.DataFrame()
        rows = pd.DataFrame({
            "key": np.concatenate([part["key"].to_numpy(dtype=object) for part in parts]),
            "final": np.concatenate([(part["status"] != "error").to_numpy(dtype=bool) for part in parts]),
            "part": np.repeat(np.arange(len(parts)), [len(part) for part in parts]),
            "row": np.concatenate([np.arange(len(part)) for part in parts]),
        })
        kept = rows.iloc[np.argsort(rows["final"].to_numpy(), kind="stable")].drop_duplicates("key", keep="last")
        kept = kept.sort_values(["part", "row"])
        pieces = [parts[i].iloc[group["row"].to_numpy()] for i, group in kept.groupby("part", sort=True)]
        if not pieces:  # parts without rows
            return pd.DataFrame()
        frame = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0].reset_index(drop=True)
        return frame.sort_values("key", kind="stable").reset_index(drop=True)

    def _read_part(self, path: Path) -> pd.DataFrame | None:
        try:
            part = pd.read_parquet(path)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None  # removed meanwhile
            if exc.errno is not None:  # the disk or the permissions, not the file's contents
                raise StoreError(f"{path}: cannot read results: {exc.strerror or exc}") from None
            return self._unreadable(path, str(exc))  # pyarrow: corrupt metadata
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            return self._unreadable(path, str(exc))
        missing = [c for c in REQUIRED if c not in part.columns]
        if missing:
            return self._unreadable(path, f"no {' or '.join(missing)} column: not a sweep's results part")
        if CODE not in part.columns or not (part[CODE] == self.code).all():
            self._other_code.append(path)
            return None
        return part

    def _report_other_code(self) -> None:
        """Parts computed by other model code: a writer moves them aside (kept, never read
        again) so that their points are evaluated anew; a reader skips them. Told once, in one
        line, however many parts."""
        if not self._other_code:
            return
        moved = 0
        if self.writing:
            for path in self._other_code:
                try:
                    os.replace(path, path.with_name(path.name + OTHER_CODE))
                    moved += 1
                except OSError:
                    pass  # read-only, or gone: it is skipped all the same
        n = len(self._other_code)
        if moved:
            log.warning("warning: %s: %d results part(s) computed by other archsim model code (an earlier version, "
                        "or an edit since) moved to *%s; their points are evaluated again with this code (%s)",
                        self.parts, moved, OTHER_CODE, self.code)
        elif str(self.parts) not in self._warned:
            self._warned.add(str(self.parts))
            log.warning("warning: %s: %d results part(s) computed by other archsim model code skipped; run the sweep "
                        "again to evaluate their points with this code (%s)", self.parts, n, self.code)

    def _unreadable(self, path: Path, why: str) -> None:
        """Skip a part that cannot be read; a writer moves it aside so that it is reported once
        and its points are evaluated again."""
        why = why.strip().splitlines()[0] if why.strip() else "unreadable"
        if self.writing:
            aside = path.with_name(path.name + UNREADABLE)
            try:
                os.replace(path, aside)
                log.warning("warning: %s: unreadable results part (%s); moved to %s, its points are "
                            "evaluated again", path, why, aside.name)
                return None
            except OSError:
                pass
        if str(path) not in self._warned:
            self._warned.add(str(path))
            log.warning("warning: %s: unreadable results part (%s); skipped", path, why)
        return None

    def consolidate(self, keys: set[str] | None = None, objectives: Sequence[str] | None = None) -> Path:
        """Write the typed results table (``archsim.dse.report.results_table``, Pareto over
        ``objectives``, default latency and energy) of ``keys`` (the current sweep's points;
        default every row)."""
        from archsim.dse.report import results_table  # the model's modules: loaded by then

        path = self.root / RESULTS
        with self.writer():
            frame = self.frame()
            if keys is not None and len(frame):
                frame = frame[frame["key"].isin(keys)].reset_index(drop=True)
            frame = results_table(frame, objectives)
            _atomic_parquet(frame, path, f"every finished point is saved in {self.parts}; free space and run "
                            "the sweep again to write the table")
        return path


def _lock(folder: Path) -> int:
    """A descriptor holding an exclusive lock on ``folder/.lock`` (-1: no locking here)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return -1
    path = folder / LOCK
    for _ in range(8):
        try:
            fd = open_regular(path)  # a link planted there is replaced, never followed
        except OSError as exc:
            raise StoreError(f"{path}: cannot write to the results folder: {exc.strerror or exc}") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise StoreError(f"{folder.parent}: another sweep is writing to this results folder; wait for "
                                 "it to finish or use another --out") from None
            return -1  # a file system without locks (some network mounts): go on unlocked
        if _same_file(fd, path):
            return fd
        os.close(fd)  # another sweep replaced a link there meanwhile: lock the file that is there now
    raise StoreError(f"{path}: the lock file keeps changing; is another program writing to {folder}?")


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, held = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


def _atomic_parquet(frame: pd.DataFrame, path: Path, hint: str) -> None:
    try:
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    except OSError as exc:
        raise StoreError(f"{path}: cannot write results: {exc.strerror or exc}; {hint}") from None


def load_results(path: str | Path, columns: Sequence[str] = (), objectives: Sequence[str] | None = None) -> pd.DataFrame:
    """The typed results table (``archsim.dse.report.results_table``, Pareto over
    ``objectives``, default the sweep's from its ``sweep.json``) of a results folder (its
    consolidated table, or its parts) or a Parquet file, old or new, checked for the columns
    reports need (``COLUMNS``; ``OK_COLUMNS`` and ``columns`` if a point is feasible)."""
    from archsim.dse.report import results_table

    path = Path(path)
    objectives = objectives or read_objectives(path)
    if path.is_dir():
        if (path / RESULTS).is_file():
            hint = "run the sweep again to rewrite it"
            frame = _checked(_read_table(path / RESULTS, hint), path / RESULTS, columns, hint)
            return results_table(frame, objectives)
        store = ResultStore(path, create=False)
        frame = store.frame() if store.parts.is_dir() else pd.DataFrame()
        if frame.empty:
            raise StoreError(f"{path}: no sweep results here")
        return results_table(_checked(frame, store.parts, columns, "run the sweep again to rewrite its parts"),
                             objectives)
    if not path.is_file():
        raise StoreError(f"{path}: no such results file or folder")
    return results_table(_checked(_read_table(path), path, columns, ""), objectives)


def read_objectives(path: str | Path) -> list[str]:
    """A sweep's objectives, from the ``sweep.json`` beside its results (``path``: the folder or
    a table in it; latency and energy without one); a damaged one is an error naming it, not
    a guess."""
    import json

    from archsim.config.sweep import OBJECTIVES

    path = Path(path)
    meta = path / "sweep.json" if path.is_dir() else path.parent / "sweep.json"
    if not meta.is_file():  # a FIFO or a folder of that name is not read either
        return ["latency", "energy"]
    hint = "run the sweep again to rewrite it"
    try:
        if meta.stat().st_size > 1 << 20:
            raise StoreError(f"{meta}: damaged (larger than 1 MiB); {hint}")
        data = json.loads(meta.read_bytes())
    except OSError as exc:
        raise StoreError(f"{meta}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:  # not JSON (UnicodeDecodeError too)
        raise StoreError(f"{meta}: damaged (not JSON: {str(exc).splitlines()[0]}); {hint}") from None
    objectives = data.get("objectives") if isinstance(data, dict) else None
    if not (isinstance(objectives, list) and objectives
            and all(isinstance(o, str) and o in OBJECTIVES for o in objectives)):
        raise StoreError(f"{meta}: damaged (objectives: expected a list of {', '.join(OBJECTIVES)}; got "
                         f"{json.dumps(objectives)[:200]}); {hint}")
    return objectives


def _checked(frame: pd.DataFrame, source: Path, columns: Sequence[str], hint: str) -> pd.DataFrame:
    hint = f"; {hint}" if hint else ""
    missing = [c for c in COLUMNS if c not in frame.columns]
    needed: list[str] = []
    if "status" in frame.columns and (frame["status"] == "ok").any():
        needed = list(dict.fromkeys((*OK_COLUMNS, *columns)))
        missing += [c for c in needed if c not in frame.columns]
    if missing:
        raise StoreError(f"{source}: not a sweep's results table: no column {', '.join(missing)} (archsim sweep "
                         f"writes {', '.join(COLUMNS)} for every point and {', '.join(OK_COLUMNS)} and the "
                         f"objectives' columns for a feasible one){hint}")
    for column in (c for c in needed if c != "workload"):  # numbers, which reports compute with
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise StoreError(f"{source}: column {column}: expected numbers, found {frame[column].dtype} values "
                             f"(not a sweep's results table){hint}")
    return frame


def _read_table(path: Path, hint: str = "") -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[0]
        raise StoreError(f"{path}: not a readable Parquet results file ({why})" + (f"; {hint}" if hint else "")) from None
