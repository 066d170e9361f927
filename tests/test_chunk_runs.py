"""How the process pool hands out a sweep's chunks (``archsim.dse.runner.ChunkRuns``): each
worker its own run of consecutive chunks (designs alike share costs in a worker), the idle one
taking the last chunk of the longest run left; every chunk once, a retried one again first."""

from __future__ import annotations

from archsim.dse.runner import ChunkRuns


def drain(runs: ChunkRuns, order: list[int]) -> list[tuple[int, int]]:
    """(slot, chunk) as the slots in ``order`` (repeated) ask for work until none is left."""
    out = []
    while runs:
        for slot in order:
            chunk = runs.next(slot)
            if chunk is not None:
                out.append((slot, chunk))
    return out


def test_each_worker_takes_its_own_consecutive_run():
    got = drain(ChunkRuns(10, 2), [0, 1])
    assert [c for s, c in got if s == 0] == [0, 1, 2, 3, 4]
    assert [c for s, c in got if s == 1] == [5, 6, 7, 8, 9]


def test_uneven_runs_cover_every_chunk_once():
    for n, workers in [(1, 1), (7, 3), (3, 3), (100, 7), (2, 2)]:
        got = drain(ChunkRuns(n, workers), list(range(workers)))
        assert sorted(c for _, c in got) == list(range(n))


def test_an_idle_worker_takes_the_last_chunk_of_the_longest_run():
    runs = ChunkRuns(9, 3)  # runs 0-2, 3-5, 6-8
    assert [runs.next(0) for _ in range(3)] == [0, 1, 2]
    assert runs.next(1) == 3  # slot 1 has taken one of its own: 4, 5 left; slot 2's 6, 7, 8
    assert runs.next(0) == 8  # slot 0 is done: the end of the longest run (slot 2's)
    assert runs.next(2) == 6  # the runs' owners keep their order
    assert runs.next(0) == 5  # slot 1's 4, 5 now the longest run left
    assert runs.next(1) == 4 and runs.next(2) == 7
    assert runs.next(1) is None and not runs


def test_a_retried_chunk_comes_first_for_its_slot():
    runs = ChunkRuns(4, 2)
    assert runs.next(0) == 0
    runs.retry(0, 0)
    assert runs.next(0) == 0 and runs.next(0) == 1
