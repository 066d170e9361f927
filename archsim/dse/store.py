"""A sweep's results on disk: Parquet parts written atomically as chunks finish, then compacted.

``OUT/parts/part-*.parquet`` hold every row computed, each written to a temporary renamed into
place: a killed sweep leaves whole parts (and ``.tmp-*`` files, never read, deleted by the next
run). A re-run evaluates only the keys not present. ``OUT/results.parquet`` is the typed table
(``report.results_table``), rewritten atomically by each run; parts keep the raw rows.

Compaction (``compact``, after each part a run writes): once ``FAN_IN`` parts of a level exist,
the oldest ``FAN_IN`` are merged into one part of the next level (``part-merged-L1-*``, ``-L2-*``)
holding the rows their keys resolve to and, in its Parquet metadata, the names of every part it
replaces. It is written atomically (temporary, fsync, rename, folder fsync) before those are
deleted, and readers ignore any part a merged part names: killed at any moment, a run leaves
every row readable exactly once; the next run deletes the leftovers. A merged part ranks as old
as the newest part it replaces, and only a level's oldest parts merge, so which of a key's rows
wins is unchanged.

The folder is data, never code: parts are read as Parquet only (no pickles). An unreadable part
is reported and, by a writer, moved aside to ``*.unreadable`` (its points evaluated again); a
part of other model code (``code`` column) is never reused, mixed in or merged: a writer moves
it to ``*.other-code``. One run writes a folder at a time (``writer``: a lock the kernel drops if
the process dies). Files are written atomically, never through a link (``archsim.fileio``); a
symbolic link in place of ``parts/`` is refused.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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
MERGED = "part-merged-"  # a compacted part: part-merged-L<level>-<rows>-<id>.parquet
MANIFEST = b"archsim.merged"  # its metadata: {"level", "rank", "replaces"}
FAN_IN = 16  # parts of a level merged into one
MAX_LEVEL = 2

log = logging.getLogger(__name__)


class StoreError(ArchsimError):
    pass


@dataclass(frozen=True)
class Part:
    path: Path
    rank: int  # age: mtime; a merged part's, its newest part's
    level: int = 0  # 0: a chunk's rows; n: merged from level n - 1
    replaces: tuple[str, ...] = ()  # names of the parts merged into it


class ResultStore:
    def __init__(self, out_dir: str | Path, create: bool = True):
        self.root = Path(out_dir)
        self.parts = self.root / "parts"
        self._lock_fd: int | None = None
        self._warned: set[str] = set()
        self._code: str | None = None
        self._other_code: list[Path] = []  # parts of other code met by the current read
        self._levels: dict[int, list[Part]] | None = None  # while writing: live parts by level
        self._compacting = True  # False once a merge failed in this run (a full disk)
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
        """Be the folder's only writer within this block (re-entrant): a POSIX lock, released
        by the kernel when the process dies (even by SIGKILL), not inherited by forked workers."""
        if self._lock_fd is not None:
            yield self
            return
        self._lock_fd = _lock(self.parts)
        try:
            yield self
        finally:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # closing releases a POSIX lock
            self._lock_fd, self._levels = None, None

    def clean(self) -> None:
        """Before a run writes: delete killed writers' temporaries, and the parts a merged part
        replaces that a killed run left, once that merged part reads whole."""
        with self.writer():
            remove_leftovers(self.parts)
            remove_leftovers(self.root)
            self._other_code, found = [], self._found()
            present = {part.path.name for part in found}
            for merged in _live(found):
                left = present & set(merged.replaces)
                if left and self._read_part(merged.path) is not None:
                    for name in left:
                        (self.parts / name).unlink(missing_ok=True)
            self._report_other_code()
            self._levels = None

    def _found(self) -> list[Part]:
        """Every part: regular files only (not a FIFO, which would block, nor a link)."""
        found = []
        for path in self.parts.glob("part-*.parquet"):
            try:
                info = path.lstat()
            except OSError:  # vanished meanwhile
                continue
            if stat.S_ISREG(info.st_mode):
                merged = _manifest(path) if path.name.startswith(MERGED) else None
                found.append(merged or Part(path, info.st_mtime_ns))
        return found

    def _tables(self, keep=lambda table: table) -> list:
        """``keep`` of each live part's table, oldest first; again if a part vanished (merged)."""
        for attempt in range(4):
            self._other_code, vanished, tables = [], [], []
            for part in _live(self._found()):
                table = self._read_part(part.path, vanished)
                if table is not None:
                    tables.append(keep(table))
            if not vanished or attempt == 3:
                break
        self._report_other_code()
        return tables

    def done_keys(self) -> set[str]:
        """Points finished for good (a point that failed is tried again)."""
        keys = self._tables(lambda table: table.filter(_final(table)).column("key"))
        return {key for column in keys for key in column.to_pylist()}

    def write(self, rows: list[dict]) -> Path:
        if not rows:
            raise StoreError("nothing to write")
        final = self.parts / f"part-{rows[0]['key']}-{len(rows)}-{uuid.uuid4().hex[:8]}.parquet"
        with self.writer():
            _atomic_parquet(pd.DataFrame(rows), final,
                            f"the points finished so far are saved in {self.root}; free space and run the "
                            "sweep again to resume")
            if self._levels is not None:
                self._levels.setdefault(0, []).append(Part(final, final.lstat().st_mtime_ns))
        return final

    def compact(self) -> list[Path]:
        """Merge parts while a level has ``FAN_IN`` (see above); a failed merge (a full disk) is
        reported once and leaves the parts as they are."""
        written: list[Path] = []
        with self.writer():
            if self._levels is None:
                self._levels = {}
                for part in _live(self._found()):
                    self._levels.setdefault(part.level, []).append(part)
            for level in range(MAX_LEVEL):
                while self._compacting and len(group := self._levels.get(level, [])) >= FAN_IN:
                    self._levels[level] = group[FAN_IN:]
                    try:
                        merged = self._merge(group[:FAN_IN], level + 1)
                    except OSError as exc:
                        self._compacting = False
                        log.warning("warning: %s: cannot merge results parts (%s); kept as they are", self.parts,
                                    exc.strerror or exc)
                    if self._compacting and merged is not None:
                        self._levels.setdefault(level + 1, []).append(merged)
                        written.append(merged.path)
        return written

    def _merge(self, batch: list[Part], level: int) -> Part | None:
        """One part of the rows ``batch``'s keys resolve to, written before ``batch`` is deleted."""
        self._other_code = []
        read = [(part, table) for part in batch if (table := self._read_part(part.path)) is not None]
        self._report_other_code()
        if not read:
            return None
        tables = [table for _, table in read]
        table = _concat([t.take(rows) for t, rows in zip(tables, _winners(tables)) if len(rows)] or tables[:1])
        names = tuple(dict.fromkeys(n for part, _ in read for n in (part.path.name, *part.replaces)))
        rank = max(part.rank for part, _ in read)
        meta = {MANIFEST: json.dumps({"level": level, "rank": rank, "replaces": names}).encode()}
        path = self.parts / f"{MERGED}L{level}-{table.num_rows}-{uuid.uuid4().hex[:8]}.parquet"
        atomic_write(path, lambda tmp: pq.write_table(table.replace_schema_metadata(meta), tmp))
        for part, _ in read:  # named by the synced merged part: a kill now loses nothing
            part.path.unlink(missing_ok=True)
        return Part(path, rank, level, names)

    def frame(self) -> pd.DataFrame:
        """One row per point key: a key's error row (retried by the next run) gives way to any
        other; otherwise the newest part wins. Only the rows kept are concatenated, so a
        superseded row (an error has fewer columns) cannot change the types of the others."""
        table = self._winning(None)
        return pd.DataFrame() if table is None else table.to_pandas(split_blocks=True, self_destruct=True)

    def _winning(self, keys: set[str] | None, arrange=None) -> pa.Table | None:
        """``frame``'s rows (of ``keys`` only, if given) as one Arrow table in key order, or in
        the order ``arrange = (reads, order)`` gives them (``order`` of a frame of the columns
        ``reads`` accepts, in key order, returns row positions); None without rows. Filtered
        and ordered before pandas sees them, with one take a column at a time, each part and
        column let go once taken: 10^6 rows of a sweep are held about once, not four times."""
        tables = self._tables()
        pieces = []
        for i, rows in enumerate(_winners(tables)):
            table, tables[i] = tables[i], None
            if len(rows):
                pieces.append(table if len(rows) == table.num_rows else table.take(rows))  # rows ascend
            del table
        if not pieces:  # no parts, or parts without rows
            return None
        table = _concat(pieces)
        del pieces
        # stable by key, as pandas' sort_values(kind="stable") (keys compare as their UTF-8 bytes)
        rows = pc.sort_indices(table, [("key", "ascending")])
        if keys is not None:
            wanted = pc.is_in(table.column("key"), value_set=pa.array(sorted(keys), table.column("key").type))
            rows = rows.filter(wanted.take(rows))
        if arrange is not None:
            reads, order = arrange
            lead = table.select([c for c in table.column_names if reads(c)]).take(rows).to_pandas()
            rows = rows.take(pa.array(order(lead), pa.int64()))
        schema, columns = table.schema, []
        while table.num_columns:
            columns.append(table.column(0).take(rows))
            table = table.remove_column(0)
        return pa.Table.from_arrays(columns, schema=schema)

    def _read_part(self, path: Path, vanished: list | None = None) -> pa.Table | None:
        try:
            table = pq.ParquetFile(path).read()
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                if vanished is not None:
                    vanished.append(path)
                return None  # removed meanwhile
            if exc.errno is not None:  # the disk or the permissions, not the file
                raise StoreError(f"{path}: cannot read results: {exc.strerror or exc}") from None
            return self._unreadable(path, str(exc))  # pyarrow: corrupt metadata
        except Exception as exc:  # not Parquet: pyarrow raises several types
            return self._unreadable(path, str(exc))
        missing = [c for c in REQUIRED if c not in table.column_names]
        if missing:
            return self._unreadable(path, f"no {' or '.join(missing)} column: not a sweep's results part")
        if CODE not in table.column_names or not _all_equal(table.column(CODE), self.code):
            self._other_code.append(path)
            return None
        return table.replace_schema_metadata(None)  # pandas' metadata: not of a merge

    def _report_other_code(self) -> None:
        """Parts of other model code: a writer moves them aside (kept, never read again), so
        their points are evaluated anew; a reader skips them. Told in one line."""
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
        """Skip an unreadable part; a writer moves it aside (reported once, evaluated again)."""
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
        """Write the typed results table (``report.results_table``, Pareto over ``objectives``,
        default latency and energy) of ``keys`` (default every row)."""
        from archsim.dse.report import results_table, table_order, table_reads  # the model's: loaded by then

        path = self.root / RESULTS
        with self.writer():
            # rows in the table's order already, so that it takes them once
            table = self._winning(keys, (table_reads, table_order))
            # each column's Arrow memory freed as it is converted (the table is not used again)
            frame = pd.DataFrame() if table is None else table.to_pandas(split_blocks=True, self_destruct=True)
            del table
            pa.default_memory_pool().release_unused()  # what the Arrow side no longer holds, back to the system
            frame = results_table(frame, objectives)
            _atomic_parquet(frame, path, f"every finished point is saved in {self.parts}; free space and run "
                            "the sweep again to write the table")
        return path


def _manifest(path: Path) -> Part | None:
    """A merged part as its metadata says (None: unreadable)."""
    try:
        data = json.loads((pq.read_schema(path).metadata or {})[MANIFEST])
        return Part(path, int(data["rank"]), int(data["level"]), tuple(str(n) for n in data["replaces"]))
    except Exception:  # read as a plain part, which reports it
        return None


def _live(found: list[Part]) -> list[Part]:
    """Oldest first (a retried point's newest row wins), but those a merged part replaces."""
    replaced = {name for part in found for name in part.replaces}
    return sorted((p for p in found if p.path.name not in replaced), key=lambda p: (p.rank, p.path.name))


def _final(table: pa.Table) -> pa.ChunkedArray:
    """Which rows are final (not errors, which a re-run retries)."""
    status = table.column("status")
    if not _text(status):  # no error rows
        return pa.chunked_array([np.ones(table.num_rows, dtype=bool)], pa.bool_())
    return pc.fill_null(pc.not_equal(status, "error"), True)


def _all_equal(column: pa.ChunkedArray, value: str) -> bool:
    return (_text(column) and column.null_count == 0
            and pc.all(pc.equal(column, value)).as_py() is not False)


def _text(column) -> bool:
    return pa.types.is_string(column.type) or pa.types.is_large_string(column.type)


def _winners(tables: list[pa.Table]) -> list[np.ndarray]:
    """Per table (oldest first), the rows its keys resolve to: newest final, else newest error."""
    if not tables:
        return []
    sizes = np.array([t.num_rows for t in tables])
    keys = pd.Series(np.concatenate([t.column("key").to_numpy(zero_copy_only=False) for t in tables]))
    order = np.argsort(np.concatenate([_final(t).to_numpy() for t in tables]), kind="stable")
    kept = np.sort(order[~keys.iloc[order].duplicated(keep="last").to_numpy()])
    ends = np.cumsum(sizes)
    return [rows - start for rows, start in zip(np.split(kept, np.searchsorted(kept, ends[:-1])), ends - sizes)]


def _concat(pieces: list[pa.Table]) -> pa.Table:
    """``pieces``' rows, as pandas would concatenate them (missing values null, int and float: float)."""
    if len(pieces) == 1:
        return pieces[0]
    try:
        return pa.concat_tables(pieces, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):  # types Arrow cannot unify
        frame = pd.concat([piece.to_pandas() for piece in pieces], ignore_index=True)
        return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)


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
