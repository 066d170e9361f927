"""A sweep's chunks (``archsim.dse.chunks``): by default they end where a family of points begins
(``Points.family_starts``), when one begins in a chunk's last quarter; a size asked for is kept."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.dse.chunks import chunk_bounds, chunked, default_chunk_size
from archsim.dse.evaluate import _family_key
from archsim.dse.plan import plan_sweep
from archsim.sim.family import family_free
from archsim.sim.fingerprint import CostFingerprint
from tests.conftest import HW, TPUV4I, WORKLOADS


def test_chunks_end_where_families_begin_in_their_last_quarter():
    every_125 = np.arange(0, 1250, 125)
    assert chunk_bounds(1250, 512, every_125) == [0, 500, 1000, 1250]  # the DiT sweep's 125-point families
    assert chunk_bounds(1250, 512) == [0, 512, 1024, 1250]  # no families given: every 512
    # a family beginning at 300 is not in the first chunk's last quarter (from 384): cut at 512;
    # the next chunk reaches 1024, and 900 lies in its last quarter (from 896)
    assert chunk_bounds(1250, 512, np.array([0, 300, 900])) == [0, 512, 900, 1250]
    assert chunk_bounds(1250, 512, np.array([0, 896])) == [0, 512, 1024, 1250]  # 896 = 512 + 384: not after it
    assert chunk_bounds(1250, 512, np.array([0, 897])) == [0, 512, 897, 1250]
    assert chunk_bounds(0, 512, np.array([], dtype=np.int64)) == [0]
    assert chunk_bounds(3, 1, np.array([0, 1, 2])) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        chunk_bounds(10, 0)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 3000), st.integers(1, 600), st.lists(st.integers(0, 3000), max_size=60))
def test_chunks_cover_every_point_once_and_cut_at_the_last_family_in_reach(n, size, begins):
    starts = np.unique(np.array([0, *[b for b in begins if b < n]], dtype=np.int64))
    bounds = chunk_bounds(n, size, starts)
    assert bounds[0] == 0 and bounds[-1] == n and all(b > a for a, b in zip(bounds, bounds[1:]))
    for at, end in zip(bounds, bounds[1:]):
        assert end - at <= size
        if end == n:
            continue
        reach = at + size
        inside = starts[(starts > at + (3 * size) // 4) & (starts <= reach)]
        # the last family beginning in the chunk's last quarter, else the chunk's full size
        assert end == (inside[-1] if len(inside) else reach)
    assert chunk_bounds(n, size, None) == [*range(0, n, size), n] if n else [0]


def _plan(tmp_path, axes: str, beside=None):
    """The grouped points of a sweep of ``tpuv4i.yaml`` over ``axes`` (YAML lines), on two workloads."""
    spec = tmp_path / "sweep.yaml"
    lines = [f"extends: {TPUV4I}", "sweep:", "  baseline: null", "  axes:",
             *("    " + line for line in textwrap.dedent(axes).splitlines() if line.strip()),
             f"  workloads: [{WORKLOADS / 'llama2_7b_layer_decode.yaml'}, {WORKLOADS / 'dit_xl_2_block_512.yaml'}]"]
    spec.write_text("\n".join(lines) + "\n")
    return plan_sweep([spec]).points.grouped(CostFingerprint.unread, beside)


@pytest.mark.parametrize("axes, runs", [
    # in plan order: per workload, MXU count, bandwidth, CMEM's capacity fastest: a family is
    # one workload and one count, 3 bandwidths x 2 capacities
    ("""\
    mxu.count: [1, 2]
    hbm.bandwidth: [400 GB/s, 800 GB/s, 1.6 TB/s]
    cmem.capacity: [64 MiB, 128 MiB]
    """, [0, 6, 12, 18]),
    # the bandwidth axis first: it varies slower than the count, so each family's points come
    # in runs of 2 capacities
    ("""\
    hbm.bandwidth: [400 GB/s, 800 GB/s, 1.6 TB/s]
    mxu.count: [1, 2]
    cmem.capacity: [64 MiB, 128 MiB]
    """, list(range(0, 24, 2))),
    # a VMEM size is read by op costs: every value its own family; HBM's capacity is not
    ("""\
    vmem.capacity: [16 MiB, 32 MiB]
    hbm.capacity: [8 GiB, 16 GiB]
    hbm.bandwidth: [400 GB/s, 800 GB/s]
    """, [0, 4, 8, 12]),
])
def test_family_starts_are_where_the_points_family_key_changes(tmp_path, axes, runs):
    points = _plan(tmp_path, axes)
    starts = points.family_starts(family_free)
    assert starts.tolist() == runs
    keys = [(p.workload, _family_key(p)) for p in points]  # what ``evaluate.prepared`` groups families by
    assert [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]] == runs


def test_default_chunks_hold_whole_families_and_a_size_asked_for_is_kept(tmp_path):
    points = _plan(tmp_path, """\
    mxu.count: [1, 2, 4, 6, 8]
    hbm.bandwidth: {from: 400 GB/s, to: 2 TB/s, steps: 25}
    cmem.capacity: [64 MiB, 128 MiB, 256 MiB, 512 MiB, 1 GiB]
    """)  # 2 workloads x 5 counts: 10 families of 125 points
    assert default_chunk_size(len(points), 1) == 313  # four chunks a worker
    assert chunked(points, None, 1).bounds == [0, 250, 500, 750, 1000, 1250]
    assert default_chunk_size(len(points), 2) == 157
    assert chunked(points, None, 2).bounds == list(range(0, 1251, 125))
    assert chunked(points, 512, 1).bounds == [0, 512, 1024, 1250]  # asked for: kept
    assert chunked(points, 512, 1, at_families=True).bounds == [0, 500, 1000, 1250]
    assert chunked(list(points), None, 1).bounds == [0, 313, 626, 939, 1250]  # a list: no families known
    assert [p.key for chunk in chunked(points, None, 1) for p in chunk] == [p.key for p in points]


def test_a_sweep_groups_a_familys_points_together_whatever_the_order_of_its_axes(tmp_path):
    """The bandwidth axis declared first: grouped as a sweep runs its points (``run_points``),
    HBM's bandwidths vary just slower than CMEM's capacities, and each family is one run."""
    axes = """\
    hbm.bandwidth: [400 GB/s, 800 GB/s, 1.6 TB/s]
    mxu.count: [1, 2]
    cmem.capacity: [64 MiB, 128 MiB]
    """
    points = _plan(tmp_path, axes, family_free)
    assert points.family_starts(family_free).tolist() == [0, 6, 12, 18]
    seen = [tuple(v for _, v in p.overrides) for p in points][:12]
    # by hand: the count, then the bandwidth, then CMEM's capacity (the first workload's points)
    assert seen == [(bw, n, c) for n in (1, 2) for bw in ("400 GB/s", "800 GB/s", "1.6 TB/s") for c in ("64 MiB", "128 MiB")]
    assert sorted(points.keys.tolist()) == sorted(_plan(tmp_path, axes).keys.tolist())


def test_a_baselines_points_are_each_a_run_of_their_own():
    """The main job's sweep (``archsim sweep hw_configs/cim_*.yaml``: a design's point and a grid
    of CIM grids and counts per workload, and the TPUv4i baseline's): no axis is free, so every
    point is a family of its own, a baseline's too, and the chunks take every point once."""
    points = plan_sweep([HW / "cim_design_a.yaml", HW / "cim_tpu.yaml"]).points.grouped(CostFingerprint.unread, family_free)
    starts = points.family_starts(family_free)
    assert starts.tolist() == list(range(len(points)))  # no two neighbours alike but in free values
    roles = [p.role for p in points]
    assert roles.count("baseline") == 3 and set(roles) == {"point", "baseline"}
    bounds = chunked(points, None, 2).bounds
    assert bounds[0] == 0 and bounds[-1] == len(points)
    assert [p.key for chunk in chunked(points, None, 2) for p in chunk] == [p.key for p in points]
