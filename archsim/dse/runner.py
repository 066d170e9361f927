"""Run a sweep's points in chunks, serially, on a local process pool or on Dask; write each
chunk as it finishes; skip what an earlier run finished.

Executors are a registry (``serial``, ``pool``, ``dask``). The pool needs no setup and uses
every core; Dask runs on an existing scheduler (``scheduler="tcp://host:8786"``) or on a
local cluster it starts on the loopback interface. A failing point is a row with its error;
a worker that dies has its chunk retried (on a fresh process; Dask reschedules on its own),
and a chunk that keeps killing workers is recorded as error rows, which a re-run tries again.
Rows not yet written when the run stops (a full disk, Ctrl-C, SIGKILL) are evaluated by the
next run.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections import deque
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from archsim.dse.chunks import chunked
from archsim.dse.evaluate import code_fingerprint, evaluate_chunk
from archsim.dse.plan import Points
from archsim.dse.spec import Point
from archsim.dse.store import CODE, ResultStore
from archsim.errors import ArchsimError
from archsim.sim.family import family_free
from archsim.sim.fingerprint import CostFingerprint


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


Chunks = Sequence[list[Point]]
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
        yield _run_chunk(chunk)


MAX_ATTEMPTS = 2  # a chunk whose worker dies this many times becomes error rows
# Chunks a pool worker holds at once: the next one runs while the sweep's process writes the
# last one's rows or merges parts (a merge of 16 large parts takes seconds); with one, a worker
# finishing meanwhile waited for it.
QUEUED = 2


@dataclass
class _Kept:
    """Workers kept between runs: the pool's one-process pools, and a local Dask cluster."""

    slots: list = field(default_factory=list)
    cluster: object | None = None


# What the executors keep between calls, innermost last (``kept_workers``); empty: each call
# starts its own workers and ends them.
_KEPT: list[_Kept] = []


@contextmanager
def kept_workers() -> Iterator[None]:
    """Within it, pool and local Dask runs reuse their worker processes from one ``run_points``
    call to the next (a guided search's generations: the workers' memo caches of costs,
    tilings and plans stay warm, and no cluster starts again); they end when it exits. A run
    stopped early (Ctrl-C, a failed write) still ends the workers it was running."""
    kept = _Kept()
    _KEPT.append(kept)
    try:
        yield
    finally:
        _KEPT.remove(kept)
        for pool in kept.slots:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if kept.cluster is not None:
            kept.cluster.close()


def _new_worker() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=1, initializer=_orphan_guard, initargs=(os.getpid(),))


@register_executor("pool")
def _pool(chunks: Chunks, workers: int, scheduler: str | None) -> Iterator[list[dict]]:
    """Each worker is a one-process pool of its own, so a worker that dies (killed, out of
    memory) fails only the chunk it was running: that chunk is retried on a fresh process,
    the others go on, and a chunk whose worker dies ``MAX_ATTEMPTS`` times becomes error rows
    (which a re-run tries again); only the chunk it was running counts a death, not the one
    queued behind it. Finished chunks are handed out while the others run, and a worker holds
    ``QUEUED`` chunks, so it never waits for the sweep's process to write rows.

    Each worker takes its own run of consecutive chunks (the plan's order keeps designs alike
    together, so a worker's shared costs serve more of its points; interleaved, both workers
    would cost every op), and one that finishes its run takes the last chunk of the longest
    run left. Which worker evaluates a point changes no result, only the time."""
    attempts: dict[int, int] = {}
    kept = _KEPT[-1].slots if _KEPT else None
    if kept is not None:  # this run's slots are the kept list's first ones
        kept.extend([None] * (min(workers, len(chunks)) - len(kept)))
    slots: list[ProcessPoolExecutor | None] = kept if kept is not None else [None] * min(workers, len(chunks))
    used = min(workers, len(chunks))
    running: dict[Future, tuple[int, int, ProcessPoolExecutor, int]] = {}  # future -> (slot, chunk, pool, order)
    runs = ChunkRuns(len(chunks), used)
    submitted = 0
    culprit: dict[int, int] = {}  # a dead pool (its id, while it is in ``running``) -> the order of the chunk it ran

    def fill() -> None:  # give every slot its chunks
        nonlocal submitted
        held = [0] * used
        for slot, _, _, _ in running.values():
            held[slot] += 1
        for slot in range(used):
            # a chunk queued behind another comes from the slot's own run: an idle slot takes from others
            while held[slot] < QUEUED and (i := runs.next(slot, steal=not held[slot])) is not None:
                if slots[slot] is None:
                    slots[slot] = _new_worker()
                attempts[i] = attempts.get(i, 0) + 1
                running[slots[slot].submit(_run_chunk, chunks[i])] = (slot, i, slots[slot], submitted)
                submitted += 1
                held[slot] += 1

    try:
        while runs or running:
            fill()
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            finished = []
            for future in sorted(done, key=lambda f: running[f][3]):
                slot, i, pool, order = running.pop(future)
                try:
                    finished.append(future.result())
                except BrokenProcessPool:  # its process died: replace it, retry its chunks
                    if slots[slot] is pool:
                        pool.shutdown(wait=False, cancel_futures=True)
                        slots[slot] = None
                    # the process was running the first of its chunks still pending; the others
                    # only waited behind it: their attempt does not count
                    first = culprit.setdefault(id(pool), min([order, *(o for _, _, p, o in running.values() if p is pool)]))
                    if order != first:
                        attempts[i] -= 1
                    if not any(p is pool for _, _, p, _ in running.values()):
                        del culprit[id(pool)]
                    if attempts[i] < MAX_ATTEMPTS:
                        runs.retry(slot, i)
                    else:
                        finished.append([_died(p, f"a worker process died evaluating this point's chunk "
                                                 f"{attempts[i]} times") for p in chunks[i]])
            fill()  # the freed slots get work before the rows are written
            yield from finished
    finally:  # all done, or stopped early (a failed write, Ctrl-C): then end the running workers now
        if kept is None or running:  # kept workers stay for the next run, unless stopped early
            for i, pool in enumerate(slots):
                if pool is not None:
                    if running:
                        _terminate(pool)
                    # Wait even when stopped early: its process is gone, so this is quick, and a pool
                    # left to the interpreter's exit races CPython 3.11's exit hook, which then prints
                    # an OSError traceback after the sweep said where its points are saved.
                    pool.shutdown(wait=True, cancel_futures=True)
                    slots[i] = None


class ChunkRuns:
    """The chunks ``0 .. n - 1`` handed to ``workers`` slots: each slot its own run of
    consecutive chunks, in order; a slot whose run is done takes the last chunk of the longest
    run left (the other slots keep their order)."""

    def __init__(self, n: int, workers: int):
        self._runs = [deque(range(n * k // workers, n * (k + 1) // workers)) for k in range(workers)]

    def next(self, slot: int, steal: bool = True) -> int | None:
        """The slot's next chunk; once its run is done, with ``steal``, the longest run's last."""
        if self._runs[slot]:
            return self._runs[slot].popleft()
        if not steal:
            return None
        longest = max(self._runs, key=len)
        return longest.pop() if longest else None

    def retry(self, slot: int, chunk: int) -> None:
        """``chunk`` again, next for ``slot`` (its worker died running it)."""
        self._runs[slot].appendleft(chunk)

    def __bool__(self) -> bool:
        return any(self._runs)


def _run_chunk(points: list[Point], evaluate: Callable[[list[Point]], list[dict]] | None = None) -> list[dict]:
    """``evaluate`` (``evaluate_chunk``) as every executor runs it (pool and Dask workers, the
    sweep's own process when serial): the cyclic collector off. A feasible point makes no
    reference cycle (``tests/test_sweep.py`` checks), so its passes would free nothing, and they
    cost more as the caches grow (README, Large sweeps). What survives a chunk is then frozen; a
    chunk with a failed point (its traceback's cycles) is collected first; every
    ``COLLECT_EVERY``-th chunk everything is unfrozen and collected. Chunks running at once in
    one process's threads share the collector: off while any runs, the last to finish collects
    and freezes; a collector that was off stays off."""
    global _running, _was_enabled
    with _COLLECTOR:
        if not _running:
            _was_enabled = gc.isenabled()
            gc.disable()
        _running += 1
    rows = None
    try:
        rows = (evaluate or evaluate_chunk)(points)
    finally:
        _finished(rows is None or any(row.get("status") != "ok" for row in rows))
    return rows


def _finished(failed: bool) -> None:
    """A chunk done (``failed``: one of its points left objects in cycles, or it raised)."""
    global _running, _chunks_since_collect, _failed
    with _COLLECTOR:
        _running -= 1
        _chunks_since_collect += 1
        _failed = _failed or failed
        if _running:
            return
        try:
            if _chunks_since_collect >= COLLECT_EVERY:
                gc.unfreeze()
                gc.collect()
                _chunks_since_collect = 0
            elif _failed:
                gc.collect()  # the objects since the last freeze: these chunks'
            _failed = False
            gc.freeze()  # before the collector is back on: its count of new objects starts again from 0
        finally:
            if _was_enabled:
                gc.enable()


COLLECT_EVERY = 256  # chunks between two passes of the cyclic collector over everything
# in this process: chunks since the last pass over everything, chunks running, whether one of
# them failed, whether the collector was on before the first started
_chunks_since_collect = 0
_running = 0
_failed = False
_was_enabled = True
_COLLECTOR = threading.Lock()


def _orphan_guard(parent: int) -> None:
    """In a pool worker: exit once the sweep's process is gone. Killed outright (SIGKILL, the
    out-of-memory killer), it cannot stop its workers, and a forked worker waiting for work
    would otherwise wait forever. Ctrl-C, which the terminal sends to every process of the
    sweep, is ignored here: the sweep's process stops its workers itself, and a worker would
    only print a KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="archsim-orphan-guard", daemon=True).start()


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's process mid-chunk (its rows were not written: the next run evaluates
    them); ``shutdown`` alone waits for the chunk to finish, and so would the interpreter's exit.
    Its process ignores Ctrl-C (see ``_orphan_guard``), not this SIGTERM."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.terminate()
        except (OSError, ValueError):  # already gone
            pass


def _died(point: Point, reason: str) -> dict:
    return {"key": point.key, "role": point.role, "config": Path(point.config).name,
            "workload_file": Path(point.workload).name, "workload_id": point.workload_id,
            CODE: code_fingerprint(), "status": "error", "reason": reason}


@register_executor("dask")
def _dask(chunks: Chunks, workers: int, scheduler: str | None) -> Iterator[list[dict]]:
    """Dask reschedules the tasks of a worker that dies; a task whose workers die more than
    ``distributed.scheduler.allowed-failures`` times (Dask's setting, 3 by default) comes back
    as KilledWorker and becomes error rows, which a re-run tries again."""
    try:
        from dask.distributed import Client, as_completed as dask_completed
        from distributed import KilledWorker
    except ImportError:  # Dask is an optional extra
        raise ArchsimError("the dask executor needs Dask: pip install 'archsim[dask]' (or dask[distributed] "
                           "and cryptography)") from None
    kept = _KEPT[-1] if _KEPT and scheduler is None else None
    cluster = None
    if scheduler is None:
        cluster = kept.cluster if kept is not None and kept.cluster is not None else _local_cluster(workers)
        if kept is not None:
            kept.cluster = cluster
    finished = False
    try:
        client = Client(cluster) if cluster is not None else Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, ValueError, TypeError) as exc:  # unreachable, a malformed address, TLS without credentials
        if cluster is not None:
            cluster.close()
            if kept is not None:
                kept.cluster = None
        raise ArchsimError(f"cannot use the Dask scheduler {scheduler or cluster.scheduler_address}: "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; check the address "
                           "and that the scheduler is running") from None
    try:
        with client:  # the default client only within this block
            if cluster is not None:  # never change a shared cluster's workers
                client.register_plugin(_ignore_interrupts_plugin())
            chunks = list(chunks)  # Dask takes every task at once
            futures = _submitted(client, chunks)
            chunk_of = {future.key: chunk for future, chunk in zip(futures, chunks)}
            pending, futures = dask_completed(futures), None  # each future is dropped once handled
            for future in pending:
                try:
                    rows = future.result()
                    future.release()  # the cluster may forget it (and need not recompute it if a worker dies)
                except KilledWorker as exc:
                    rows = [_died(p, f"Dask workers died evaluating this point's chunk ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else ''})") for p in chunk_of[future.key]]
                except (CancelledError, OSError) as exc:  # the scheduler went away or cancelled it
                    raise ArchsimError(f"lost the Dask cluster ({type(exc).__name__}: {exc}); the points "
                                       "finished so far are saved: run the sweep again to resume") from None
                yield rows
            finished = True
    finally:
        if cluster is not None and (kept is None or not finished):  # a kept cluster stays, unless stopped early
            cluster.close()
            if kept is not None:
                kept.cluster = None


CONNECT_TIMEOUT_S = 3  # an unreachable --scheduler fails this soon (Dask's own default: 30 s)


def _submitted(client, chunks: list) -> list:
    """The chunks' tasks, in order: each worker of the cluster (as it is now) preferring a run
    of consecutive chunks, as the process pool hands them out (``ChunkRuns``); Dask may still
    move a task to another worker (an idle one steals; a dead one's tasks go elsewhere)."""
    workers = sorted(client.scheduler_info().get("workers", {}))
    if len(workers) < 2:
        return client.map(_run_chunk, chunks, evaluate=evaluate_chunk, pure=False)
    n, futures = len(chunks), []
    for k, address in enumerate(workers):
        run = chunks[n * k // len(workers):n * (k + 1) // len(workers)]
        if run:
            futures += client.map(_run_chunk, run, evaluate=evaluate_chunk, pure=False, workers=[address],
                                  allow_other_workers=True)
    return futures


def _local_cluster(workers: int):
    """A Dask cluster of this machine for this sweep alone. It listens on loopback, where any
    local user could connect and run code as the sweep's user: so its connections are TLS with
    credentials made for it in memory (``Security.temporary``: a key and a self-signed
    certificate that every party must present), which no one else has. Its HTTP endpoints
    (task and worker information) are off, and the scheduler's HTTP server takes any free
    loopback port rather than 8787 (which another cluster may hold).

    Ctrl-C, which the terminal sends to every process of the sweep, must reach only this one
    (which closes the cluster), not the workers, which would print tracebacks: SIGINT is
    ignored while the cluster starts, so that the worker processes start ignoring it (an
    ignored signal stays ignored across exec, and Python keeps it so), and a worker restarted
    later ignores it once it runs (``_ignore_interrupts_plugin``). Ctrl-C is thus ignored for the
    second or two the cluster takes to start."""
    import dask
    from distributed import LocalCluster
    from distributed.security import Security

    try:
        security = Security.temporary()
    except ImportError:  # part of the dask extra, but installable apart from it
        raise ArchsimError("the local Dask cluster needs the 'cryptography' package for its TLS credentials: "
                           "pip install 'archsim[dask]'") from None
    previous = _set_sigint(signal.SIG_IGN)
    try:
        with dask.config.set({"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}):
            return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                protocol="tls://", security=security, dashboard_address=None,
                                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                # the cluster is this sweep's alone: what goes wrong in it comes back as
                                # error rows; its processes' own logs would only be noise (a worker's
                                # heartbeat traceback when Ctrl-C closes the scheduler first)
                                silence_logs=logging.CRITICAL)
    except (OSError, RuntimeError) as exc:  # no port, no process: Dask says which
        raise ArchsimError(f"cannot start a local Dask cluster: {str(exc).splitlines()[0] if str(exc) else exc!r}; "
                           "use --executor pool") from None
    finally:
        if previous is not None:
            _set_sigint(previous)


def _set_sigint(handler):
    """The previous SIGINT handler (None where it cannot be changed: not the main thread)."""
    try:
        return signal.signal(signal.SIGINT, handler)
    except ValueError:
        return None


def _ignore_interrupts_plugin():
    """A Dask worker plugin: its worker process ignores Ctrl-C, which the sweep's process
    handles (it closes the cluster). Made here so that importing this module needs no Dask."""
    from distributed import WorkerPlugin

    class IgnoreInterrupts(WorkerPlugin):
        name = "archsim-ignore-interrupts"

        def setup(self, worker) -> None:
            _set_sigint(signal.SIG_IGN)

    return IgnoreInterrupts()


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
    code = code_fingerprint()  # before any worker forks: they inherit it
    with store.writer():
        store.clean()
        done = store.done_keys()
        # a plan's points stay lazy (each chunk's made when it is handed out); a list is filtered
        todo = points.without(done) if isinstance(points, Points) else [p for p in points if p.key not in done]
        del done
        if isinstance(todo, Points):  # points sharing op costs together (which runs first changes nothing)
            todo = todo.grouped(CostFingerprint.unread, family_free)  # a family's points together
        chunks = chunked(todo, chunk_size, workers)  # by default, ending where families begin
        start = time.perf_counter()
        bar = _progress(len(todo), progress)
        try:
            results = iter(_EXECUTORS[executor](chunks, workers, scheduler) if len(chunks) else ())
            try:
                for rows in results:
                    _check_code(rows, code)
                    store.write(rows)
                    store.compact()
                    bar.update(len(rows))
            finally:  # a failed write (a full disk) or Ctrl-C stops the workers now, not at exit
                getattr(results, "close", lambda: None)()
        finally:
            bar.close()
    return RunStats(len(points), len(points) - len(todo), len(todo), time.perf_counter() - start, executor,
                    1 if executor == "serial" else workers)


def _check_code(rows: list[dict], code: str) -> None:
    """Rows of this process's model code only: Dask workers may run another archsim (another
    installation, or the source edited since they started), whose rows must not be mixed in."""
    other = {row.get(CODE) for row in rows} - {code}
    if other:
        raise ArchsimError(f"workers computed results with other archsim model code ({', '.join(map(str, other))}) "
                           f"than this process ({code}): run the same archsim, unedited, on every worker; the "
                           "points finished so far are saved")


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="pt", disable=not enabled or total == 0, smoothing=0.1,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]")
