"""Tables of one matmul that differ only in the arrays' VMEM traffic (``tiling._table``'s
``array_bytes``: the units' mappings, a sweep's grids and counts) are made from one
``tiling._Shared`` and take its last ranking where it provably is theirs (``_Ranking.of``): the
values are a full build's, and the ranking and survivors are those made afresh, to the bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.dtypes import DType
from archsim.hw.memory import Level
from archsim.hw.tiling import MatmulShape, _Ranking, _rises_alike, _Table, _table, clear_tilings


def test_a_table_by_hand():
    # 16 x 16 x 16 in bf16: one candidate tile, the whole matmul (16 is the smallest edge), so
    # every operand moves once in every order and nothing spills. A and B in HBM, the output in CMEM.
    clear_tilings()
    shape = MatmulShape(1, 16, 16, 16, DType.BF16, False)
    arrays = (100.0, 200.0, 300.0)  # the arrays' A reads, B reads and output writes in VMEM
    table = _table(shape, 2.0, 4.0, (Level.HBM, Level.HBM, Level.CMEM), arrays, 1024.0 ** 2)
    a = b = out = 16 * 16 * 2.0  # 512 bytes each
    assert table.levels == (Level.VMEM, Level.CMEM, Level.HBM)
    assert table.tiles.tolist() == [1.0]
    assert table.moved.shape == (6, 1)
    vmem_read, vmem_write = out + 0.0 + 100.0 + 200.0, a + b + 0.0 + 300.0  # 812 and 1324
    assert table.reads[0].tolist() == [[vmem_read]] * 6
    assert table.writes[0].tolist() == [[vmem_write]] * 6
    assert table.reads[1].tolist() == [[0.0]] * 6 and table.writes[1].tolist() == [[out]] * 6  # CMEM
    assert table.reads[2].tolist() == [[a + b]] * 6 and table.writes[2].tolist() == [[0.0]] * 6  # HBM
    assert table.busy_bytes[0].tolist() == [[2136.0]] * 6
    assert table.moved.tolist() == [[2136.0 + 512.0 + 1024.0]] * 6
    # another mapping's arrays: the same shared part, only VMEM's bytes differ
    other = _table(shape, 2.0, 4.0, (Level.HBM, Level.HBM, Level.CMEM), (0.0, 0.0, 0.0), 1024.0 ** 2)
    assert other.shared is table.shared and other.reads[2] is table.reads[2]
    assert other.busy_bytes[0].tolist() == [[1024.0 + 512.0]] * 6


def _fresh(table):
    ranking = _Ranking(table)
    return ranking.kept_of(table)


def _same(one, other):
    return (np.array_equal(one[0], other[0]) and len(one[1]) == len(other[1])
            and all(np.array_equal(x, y) for x, y in zip(one[1], other[1])) and np.array_equal(one[2], other[2]))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(m=st.integers(1, 700), k=st.integers(1, 700), n=st.integers(1, 700),
       levels=st.tuples(*[st.sampled_from([Level.CMEM, Level.HBM])] * 3),
       vmem_kib=st.sampled_from([64, 1024, 16384]),
       arrays=st.lists(st.tuples(*[st.sampled_from([0.0, 1.0, 3.0, 1e3, 2.5e5, 7.7e6, 1e9, 2.0 ** 80])] * 3),
                       min_size=2, max_size=5, unique=True))
def test_a_ranking_taken_from_another_table_is_the_tables_own(m, k, n, levels, vmem_kib, arrays):
    clear_tilings()
    shape = MatmulShape(1, m, k, n, DType.BF16, False)
    for array_bytes in arrays:
        table = _table(shape, 2.0, 4.0, levels, array_bytes, vmem_kib * 1024.0)
        assert table.ranked() is None  # its first use: searched directly
        assert _same(table.ranked(), _fresh(table))


def test_a_ranking_is_taken_only_where_it_holds():
    clear_tilings()
    shape = MatmulShape(1, 512, 512, 512, DType.BF16, False)
    levels = (Level.HBM, Level.HBM, Level.HBM)
    first = _table(shape, 2.0, 4.0, levels, (1.0, 1.0, 1.0), 1024.0 ** 2)
    first.ranked()
    ranked = first.ranked()
    ranking = first.shared.ranking[0]
    assert ranked[0] is ranking.kept
    alike = _table(shape, 2.0, 4.0, levels, (5.0, 7.0, 9.0), 1024.0 ** 2)
    assert ranking.of(alike) is not None  # small offsets keep every comparison
    # at 2^80 bytes (a step of 2^28), sums some MB apart round to one value: ties the first table has not
    drowned = _table(shape, 2.0, 4.0, levels, (2.0 ** 80, 2.0 ** 80, 2.0 ** 80), 1024.0 ** 2)
    assert ranking.of(drowned) is None
    drowned.ranked()
    assert _same(drowned.ranked(), _fresh(drowned))


def test_rises_alike_by_hand():
    assert _rises_alike(np.array([1.0, 1.0, 2.0, 5.0]), np.array([False, True, True]))
    assert not _rises_alike(np.array([1.0, 2.0, 2.0, 5.0]), np.array([False, True, True]))  # a tie moved
    assert not _rises_alike(np.array([1.0, 1.0, 0.5, 5.0]), np.array([False, True, True]))  # a fall
    assert _rises_alike(np.array([3.0]), np.array([], dtype=bool))


def _made(moved, vmem, hbm):
    """A one-order table of three candidates in one tile each, by its bytes."""
    rows = [np.array([values], dtype=np.float64) for values in (moved, vmem, hbm)]
    ones = np.ones(3)
    return _Table(ones, ones, ones, ones, (Level.VMEM, Level.HBM), (rows[1], rows[2]), (0 * rows[1], 0 * rows[2]),
                  (rows[1], rows[2]), rows[0])


def test_each_check_guards_its_own_change():
    base = _made([4.0, 4.5, 5.0], [1.0, 0.5, 3.0], [3.0, 3.0, 1.0])
    ranking = _Ranking(base)
    assert ranking.kept.tolist() == [0, 1, 2]  # candidate 1 moves fewer VMEM bytes than 0: no dominance
    # the bytes moved reversed, VMEM's order kept: ranked 2, 1, 0, and 1 dominates 0
    reversed_moved = _made([5.0, 4.5, 4.0], [1.0, 0.5, 3.0], [3.0, 3.0, 1.0])
    assert ranking.of(reversed_moved) is None
    assert _Ranking(reversed_moved).kept.tolist() == [2, 1]
    # the ranking kept, VMEM's bytes of candidate 1 now above 0's: 0 dominates it
    dominated = _made([4.0, 4.5, 5.0], [1.0, 2.0, 3.0], [3.0, 3.0, 1.0])
    assert ranking.of(dominated) is None
    assert _Ranking(dominated).kept.tolist() == [0, 2]
    # both orders kept (every value moved by the same amount): the ranking is taken
    shifted = _made([14.0, 14.5, 15.0], [11.0, 10.5, 13.0], [3.0, 3.0, 1.0])
    assert _same(ranking.of(shifted), _fresh(shifted))
