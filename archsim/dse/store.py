"""A sweep's results on disk: Parquet parts written atomically as chunks finish.

``OUT/parts/*.parquet`` hold every row ever computed; each is written to a temporary file
and renamed into place, so a killed sweep leaves whole parts or nothing. A re-run reads the
keys already present and evaluates only the rest. ``OUT/results.parquet`` is the consolidated
table (one row per point key), rewritten atomically at the end of each run.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd

from archsim.errors import ArchsimError
from archsim.fileio import atomic_write

RESULTS = "results.parquet"


class StoreError(ArchsimError):
    pass


class ResultStore:
    def __init__(self, out_dir: str | Path, create: bool = True):
        self.root = Path(out_dir)
        self.parts = self.root / "parts"
        if create:
            try:
                self.parts.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.root}: cannot create the results folder: {exc.strerror or exc}") from None

    def clean(self) -> None:
        """Remove half-written parts of a killed run (the writer's job, before it starts)."""
        for stale in self.parts.glob(".tmp-*"):
            stale.unlink(missing_ok=True)

    def _part_files(self) -> list[Path]:
        """Oldest first, so that a retried point's newest row wins."""
        return sorted(self.parts.glob("part-*.parquet"), key=lambda p: (p.stat().st_mtime_ns, p.name))

    def done_keys(self) -> set[str]:
        """Points finished for good; a point that failed with an error is tried again."""
        frame = self.frame()
        return set(frame.loc[frame["status"] != "error", "key"]) if len(frame) else set()

    def write(self, rows: list[dict]) -> Path:
        if not rows:
            raise StoreError("nothing to write")
        final = self.parts / f"part-{rows[0]['key']}-{len(rows)}-{uuid.uuid4().hex[:8]}.parquet"
        _atomic_parquet(pd.DataFrame(rows), final)
        return final

    def frame(self) -> pd.DataFrame:
        parts = [pd.read_parquet(p) for p in self._part_files()]
        if not parts:
            return pd.DataFrame()
        frame = pd.concat(parts, ignore_index=True)
        return frame.drop_duplicates("key", keep="last").sort_values("key", kind="stable").reset_index(drop=True)

    def consolidate(self, keys: set[str] | None = None) -> Path:
        """Write the table of ``keys`` (the current sweep's points; default every row)."""
        frame = self.frame()
        if keys is not None and len(frame):
            frame = frame[frame["key"].isin(keys)].reset_index(drop=True)
        path = self.root / RESULTS
        _atomic_parquet(frame, path)
        return path


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    try:
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    except OSError as exc:
        raise StoreError(f"{path}: cannot write results: {exc.strerror or exc}") from None


def load_results(path: str | Path) -> pd.DataFrame:
    """A results folder (its consolidated table, or its parts) or a Parquet file."""
    path = Path(path)
    if path.is_dir():
        if (path / RESULTS).is_file():
            return pd.read_parquet(path / RESULTS)
        frame = ResultStore(path, create=False).frame() if (path / "parts").is_dir() else pd.DataFrame()
        if frame.empty:
            raise StoreError(f"{path}: no sweep results here")
        return frame
    if not path.is_file():
        raise StoreError(f"{path}: no such results file or folder")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise StoreError(f"{path}: not a Parquet results file ({exc})") from None
