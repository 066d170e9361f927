"""Reading a sweep's results for a report or the API: the typed table (``report.results_table``)
of a results folder (its ``results.parquet``, or its parts) or of a Parquet file, checked for the
columns a reader needs; a file that is not a sweep's results is one clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow.parquet as pq

from archsim.dse.store import COLUMNS, OK_COLUMNS, RESULTS, ResultStore, StoreError


def load_results(path: str | Path, columns: Sequence[str] = (), objectives: Sequence[str] | None = None) -> pd.DataFrame:
    """The typed results table (``report.results_table``, Pareto over ``objectives``, default
    its ``sweep.json``'s) of a results folder (its table, or its parts) or a Parquet file, old
    or new, checked for ``COLUMNS`` (and ``OK_COLUMNS`` and ``columns`` if a point is feasible)."""
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
    try:  # pd.read_parquet's frame, each column's Arrow memory freed as it is converted
        return pq.read_table(path).to_pandas(split_blocks=True, self_destruct=True)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[0]
        raise StoreError(f"{path}: not a readable Parquet results file ({why})" + (f"; {hint}" if hint else "")) from None
