"""Run a sweep's points in chunks, serially, on a local process pool or on Dask; write each
chunk as it finishes; skip what an earlier run finished.

Executors are a registry (``serial``, ``pool``, ``dask``). The pool needs no setup and uses
every core; Dask runs on an existing scheduler (``scheduler="tcp://host:8786"``) or on a
local cluster it starts on the loopback interface. A failing point is a row with its error;
a worker that dies has its chunk retried (the pool is rebuilt; Dask retries on its own), and
a chunk that kills workers twice is recorded as error rows, which a re-run tries again.
"""

from __future__ import annotations

import logging
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from archsim.dse.evaluate import evaluate_chunk
from archsim.dse.spec import Point
from archsim.dse.store import ResultStore
from archsim.errors import ArchsimError


@dataclass(frozen=True)
class RunStats:
    total: int  # points in the plan
    skipped: int  # finished by an earlier run
    evaluated: int
    seconds: float
    executor: str
    workers: int

    @property
    def points_per_second(self) -> float:
        return self.evaluated / self.seconds if self.seconds else 0.0


Chunks = list[list[Point]]
Executor = Callable[[Chunks, int, str | None], Iterator[list[dict]]]
_EXECUTORS: dict[str, Executor] = {}


def register_executor(name: str):
    def decorate(fn: Executor) -> Executor:
        _EXECUTORS[name] = fn
        return fn
    return decorate


@register_executor("serial")
def _serial(chunks: Chunks, workers: int, scheduler: str | None) -> Iterator[list[dict]]:
    for chunk in chunks:
        yield evaluate_chunk(chunk)


@register_executor("pool")
def _pool(chunks: Chunks, workers: int, scheduler: str | None) -> Iterator[list[dict]]:
    """A worker that dies (killed, out of memory) breaks the whole pool: the pool is rebuilt
    and the unfinished chunks resubmitted; a chunk in flight at two breaks becomes error rows."""
    pending = {i: chunk for i, chunk in enumerate(chunks)}
    strikes: dict[int, int] = {}
    while pending:
        pool = ProcessPoolExecutor(max_workers=workers)
        futures = {pool.submit(evaluate_chunk, chunk): i for i, chunk in pending.items()}
        try:
            for future in as_completed(futures):
                rows = future.result()
                del pending[futures[future]]
                yield rows
        except BrokenProcessPool:
            for future, i in futures.items():
                if i in pending and not future.done() or (i in pending and future.exception() is not None):
                    strikes[i] = strikes.get(i, 0) + 1
            for i in [i for i, n in strikes.items() if n >= 2 and i in pending]:
                yield [_died(point) for point in pending.pop(i)]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _died(point: Point) -> dict:
    return {"key": point.key, "role": point.role, "config": Path(point.config).name,
            "workload_file": Path(point.workload).name, "workload_id": point.workload_id,
            "status": "error", "reason": "a worker process died evaluating this point's chunk twice"}


@register_executor("dask")
def _dask(chunks: Chunks, workers: int, scheduler: str | None) -> Iterator[list[dict]]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed as dask_completed
    except ImportError:  # pragma: no cover - distributed is a declared dependency
        raise ArchsimError("the dask executor needs the 'distributed' package") from None
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None, silence_logs=logging.WARNING)
    try:
        with Client(scheduler or cluster) as client:  # the default client only within this block
            futures = client.map(evaluate_chunk, chunks, pure=False)
            for future in dask_completed(futures):
                yield future.result()
    except OSError as exc:
        raise ArchsimError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
    finally:
        if cluster is not None:
            cluster.close()


def executors() -> list[str]:
    return sorted(_EXECUTORS)


def run_points(
    points: Sequence[Point],
    store: ResultStore,
    executor: str = "pool",
    workers: int | None = None,
    chunk_size: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> RunStats:
    if executor not in _EXECUTORS:
        raise ArchsimError(f"unknown executor {executor!r}; expected one of: {', '.join(executors())}")
    workers = workers or (os.cpu_count() or 1)
    store.clean()
    done = store.done_keys()
    todo = [p for p in points if p.key not in done]
    size = chunk_size or max(1, min(64, math.ceil(len(todo) / (4 * workers))))
    chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
    start = time.perf_counter()
    bar = _progress(len(todo), progress)
    try:
        for rows in (_EXECUTORS[executor](chunks, workers, scheduler) if chunks else ()):
            store.write(rows)
            bar.update(len(rows))
    finally:
        bar.close()
    return RunStats(len(points), len(points) - len(todo), len(todo), time.perf_counter() - start, executor,
                    1 if executor == "serial" else workers)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="pt", disable=not enabled or total == 0, smoothing=0.1,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]")
