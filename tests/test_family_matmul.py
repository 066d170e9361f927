"""A family's matmul arrays (``archsim.sim.family_ops._matmul``): they skip a later mapping exactly
where every member's own search (``matmul_cost.tpu_matmul_cost``) would skip it, where the
mapping's compute time alone, after the access latency, exceeds the member's best time so far
(the members' own searches are written out here, mapping by mapping, from the tiling search
alone); a tie in time goes to the fewer bytes moved, summed as a candidate's traffic sums
them; and a matmul at the same homes (alone, or a fused op's main op) is timed once for the
family, the same bits as timed afresh."""

from __future__ import annotations

import random
from pathlib import Path


from archsim import api
from archsim.dtypes import DType
from archsim.hw.memory import Level
from archsim.hw.tiling import MatmulShape, _table, candidate_traffic, ranked_now, tile_matmul
from archsim.ir import ops
from archsim.passes import compile_for
from archsim.sim import engine, matmul_cost
from archsim.sim.engine import Simulator
from archsim.sim.family import Family, prefetched_times
from archsim.sim.family_ops import _candidate_fields, _kept_moved

ROOT = Path(__file__).resolve().parent.parent
BANDWIDTHS = ("300 GB/s", "400 GB/s", "819 GB/s", "1.2 TB/s", "2 TB/s", "3.3 TB/s")


def _own_skips(sim: Simulator, op: ops.MatMul, levels: tuple[Level, ...]) -> list[bool]:
    """Per mapping, whether the member's own search passes it by: the best (time, bytes moved)
    so far, and a mapping skipped once latency + its compute time exceeds that time."""
    plan = matmul_cost._plan(sim, op)
    latency = sim._access_latency(levels)
    best, skips = None, []
    for mapping in plan.mappings:
        if best is not None and latency + mapping.compute_s > best[0]:
            skips.append(True)
            continue
        skips.append(False)
        array = mapping.array
        tiling = tile_matmul(plan.shape, plan.out_bytes, plan.acc_bytes, levels,
                             (array.a_reads, array.b_reads, array.out_writes), array.folds, sim.channels,
                             mapping.compute_s, latency)
        if best is None or (tiling.time_s, tiling.traffic.moved) < best:
            best = (tiling.time_s, tiling.traffic.moved)
    return skips


def test_the_arrays_skip_a_mapping_where_every_members_own_search_does():
    """On chips like the DiT sweep's (CIM grids and counts, VMEM sizes): both kinds are met, a
    later mapping skipped for the whole family and one evaluated for it."""
    met = [_compared(("mxu.count=8", "mxu.cim.grid=[32, 16]", "vmem.capacity=4 MiB")),
           _compared(("mxu.count=2", "mxu.cim.grid=[16, 8]", "vmem.capacity=32 MiB")),
           _compared(("mxu.count=4", "mxu.cim.grid=[8, 8]", "vmem.capacity=8 MiB"))]
    assert sum(m[0] for m in met) and sum(m[1] for m in met), met


def _compared(sets: tuple[str, ...]) -> tuple[int, int]:
    """The family's skips checked against its members' own on DiT's matmuls at a few homes:
    how many later mappings were skipped, and how many evaluated."""
    engine.clear_caches()
    chips = tuple(api.load_hardware(ROOT / "hw_configs" / "cim_tpu.yaml", [f"hbm.bandwidth={b}", *sets])
                  for b in BANDWIDTHS)
    family = Family(chips)
    sims = [Simulator(hw, family=family) for hw in chips]
    workload = compile_for(chips[0], api.load_workload(ROOT / "workloads" / "dit_xl_2.yaml", hw=chips[0]))
    matmuls = [op for phase in workload.phases for op in phase.graph.ops()
               if isinstance(op, ops.MatMul) or isinstance(getattr(op, "core", None), ops.MatMul)]
    rng = random.Random(5)
    homes_tried = [(Level.HBM, Level.HBM, Level.HBM), (Level.VMEM, Level.HBM, Level.VMEM),
                   (Level.CMEM, Level.HBM, Level.HBM), (Level.HBM, Level.CMEM, Level.HBM)]
    skipped = evaluated = 0
    for op in matmuls:
        core = op.core if hasattr(op, "core") else op
        for core_levels in rng.sample(homes_tried, 3):
            placed = tuple({core.a.name: core_levels[0], core.b.name: core_levels[1], core.out.name: core_levels[2]}
                           .get(name, Level.HBM) for name in op.tensor_names)
            homes = engine._homes(op, placed)
            try:
                prefetched_times(sims[0], op, homes, lambda: sims[0]._shared_cost(op, placed, homes), family.hbm)
            except Exception:  # a tiling that fits no VMEM at these homes
                continue
            plan, tables = family.picks[(core.signature_number, core_levels)][:2]
            own = [_own_skips(sim, core, core_levels) for sim in sims]
            for j in range(len(plan.mappings)):
                assert (tables[j] is None) == all(skips[j] for skips in own), (op.name, core_levels, j)
                skipped += tables[j] is None
                evaluated += j > 0 and tables[j] is not None
    engine.clear_caches()
    return skipped, evaluated


def test_a_tie_in_time_is_settled_by_bytes_moved_as_a_candidates_traffic_sums_them():
    """``_kept_moved``: per ranked candidate, its bytes moved as ``candidate_traffic(...).moved``
    has them, the same bits; by hand, each field from 0.0 (VMEM's from the arrays' traffic and,
    where an operand lives in VMEM, its own), then the fields added in the order VMEM, CMEM,
    HBM, reads before writes; on tables with and without CMEM, and with an operand in VMEM."""
    shape = MatmulShape(1, 64, 96, 64, DType.BF16, False)
    for levels in ((Level.HBM, Level.HBM, Level.HBM), (Level.CMEM, Level.HBM, Level.CMEM),
                   (Level.HBM, Level.VMEM, Level.CMEM), (Level.VMEM, Level.HBM, Level.VMEM)):
        table = _table(shape, 2.0, 4.0, levels, (1.0e3, 2.0e3, 3.0e3), 1024.0 ** 2)
        kept = ranked_now(table)[0]
        moved = _kept_moved(table, kept)
        assert moved.shape == kept.shape
        candidates = table.moved.shape[1]
        for position, flat in enumerate(kept.tolist()):
            o, i = divmod(flat, candidates)
            fields = []
            for level in (Level.VMEM, Level.CMEM, Level.HBM):
                for values in (table.reads, table.writes):
                    field = 0.0
                    for k, home in enumerate(table.levels):
                        if home is level:
                            field = field + float(values[k][o, i])
                    fields.append(field)
            by_hand = fields[0]
            for field in fields[1:]:
                by_hand = by_hand + field
            assert moved[position] == by_hand == candidate_traffic(table, flat).moved, (levels, flat)
            # the candidate's fields (``_candidate_fields``): each by hand as above, Traffic's order
            assert _candidate_fields(table, flat) == tuple(fields) == candidate_traffic(table, flat).values()
        assert _kept_moved(table, kept) is moved  # kept by the table


def test_a_matmul_at_the_same_homes_is_timed_once_for_the_family_the_same_bits():
    """A fused GEMM and its main GEMM alone, at the same homes, then at other homes: the family
    keeps one entry per (matmul, homes), and every time is the one a family that never saw the
    others makes."""
    engine.clear_caches()
    chips = tuple(api.load_hardware(ROOT / "hw_configs" / "cim_tpu.yaml", [f"hbm.bandwidth={b}", "mxu.count=4"])
                  for b in BANDWIDTHS)
    workload = compile_for(chips[0], api.load_workload(ROOT / "workloads" / "dit_xl_2.yaml", hw=chips[0]))
    fused = next(op for phase in workload.phases for op in phase.graph.ops()
                 if isinstance(getattr(op, "core", None), ops.MatMul))
    core = fused.core
    asked = []
    for core_levels in ((Level.HBM, Level.HBM, Level.HBM), (Level.VMEM, Level.HBM, Level.VMEM)):
        by_name = {core.a.name: core_levels[0], core.b.name: core_levels[1], core.out.name: core_levels[2]}
        asked.append((fused, tuple(by_name.get(name, Level.HBM) for name in fused.tensor_names)))
        asked.append((core, core_levels))

    def times(family: Family, op, placed) -> list[float]:
        sim = Simulator(chips[0], family=family)
        homes = engine._homes(op, placed)
        return prefetched_times(sim, op, homes, lambda: sim._shared_cost(op, placed, homes), family.hbm).tolist()

    shared = Family(chips)
    together = [times(shared, op, placed) for op, placed in asked]
    assert sorted(shared.matmuls) == sorted({(core.signature_number, levels) for _, levels in asked[1::2]})
    for (op, placed), made in zip(asked, together):
        engine.clear_caches()
        assert made == times(Family(chips), op, placed), (op.name, placed)
    engine.clear_caches()
