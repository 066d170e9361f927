"""The tiling search keeps, of a table's ranked candidates, only those no earlier one dominates
(``tiling._undominated``): the set is the brute-force one, and the choice at any bandwidths,
folds, compute time and latency is the full search's, to the bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.dtypes import DType
from archsim.hw.memory import Level
from archsim.hw.tiling import Channels, MatmulShape, _table, _undominated, clear_tilings, tile_matmul


def brute_force(busy, tiles):
    n = tiles.size
    return np.array([not any(all(b[j] <= b[i] for b in busy) and tiles[j] >= tiles[i] for j in range(i))
                     for i in range(n)])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0, 8.0]), min_size=n, max_size=n), min_size=1, max_size=3),
    st.lists(st.sampled_from([1, 2, 4, 9]), min_size=n, max_size=n))))
def test_the_survivors_are_the_brute_force_ones(table):
    busy, tiles = tuple(np.array(b) for b in table[0]), np.array(table[1])
    assert (_undominated(busy, tiles) == brute_force(busy, tiles)).all()


def test_values_by_hand():
    # ranked order; 1 moves more than 0 in as many tiles; 2 moves more VMEM bytes but fewer HBM
    # bytes; 3 moves as much as 0 in more tiles (better overlap); 4 equals 3
    busy = (np.array([1.0, 2.0, 3.0, 1.0, 1.0]), np.array([5.0, 5.0, 1.0, 5.0, 5.0]))
    tiles = np.array([4, 4, 4, 8, 8])
    assert _undominated(busy, tiles).tolist() == [True, False, True, True, False]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(m=st.integers(1, 900), k=st.integers(1, 900), n=st.integers(1, 900),
       levels=st.tuples(*[st.sampled_from([Level.CMEM, Level.HBM])] * 3),
       vmem_kib=st.sampled_from([64, 1024, 16384]), folds=st.integers(1, 4000),
       compute_s=st.sampled_from([0.0, 1e-6, 1e-4]), latency_s=st.sampled_from([0.0, 5.55e-7]))
def test_a_ranked_table_chooses_as_the_full_search_at_every_bandwidth(m, k, n, levels, vmem_kib, folds,
                                                                       compute_s, latency_s):
    shape = MatmulShape(1, m, k, n, DType.BF16, False)
    arrays = (float(m * k), float(k * n), float(m * n * 4))
    for hbm in (1e8, 4e11, 4.16e11, 1.2e12, 2e12, 1e15):  # close ones tie candidates
        channels = Channels(vmem_kib * 1024.0, ((Level.VMEM, 1e12), (Level.CMEM, 2e12), (Level.HBM, hbm)))
        args = (shape, 2.0, 4.0, levels, arrays, folds, channels, compute_s, latency_s)
        clear_tilings()
        full = tile_matmul(*args)  # the table's first use: every candidate searched
        assert tile_matmul.__wrapped__(*args) == full  # then its undominated candidates, ranked
    table = _table(shape, 2.0, 4.0, levels, arrays, vmem_kib * 1024.0)
    assert table.ranked()[0].size <= table.moved.size
