"""A light mutation test of archsim's cost models (issue 15; issue 16's mechanisms added).

Each mutant is one meaningful one-line change to archsim/hw, archsim/sim, archsim/system, or
the cost-bearing parts of archsim/config/schema.py and archsim/ir/ops.py (a dropped term, an
off-by-one fold count, a swapped max/min, a wrong width, a dropped repeat factor, an ignored
efficiency or dispatch cost, ...), given as (file, the exact original line, its replacement). For each mutant the
script applies it in a private copy of the repository, runs a fast selection of tests there,
and records whether a test fails (the mutant is *killed*) or none does (it *survives*). It
prints a table and the surviving fraction.

    python bench/mutation.py                    # every mutant, tests of --suite related
    python bench/mutation.py --only M05 M16     # some mutants
    python bench/mutation.py --suite values     # only tests/test_values_*.py
    python bench/mutation.py --jobs 2           # two copies side by side (2 cores: ~halves the time)
    python bench/mutation.py --list             # the mutants, and whether each applies
    python bench/mutation.py --json out.json    # the table as JSON too

The copy. The shared working tree is never touched (others edit it while this runs): the
script extracts the committed tree of --ref (default HEAD; ``git archive REF | tar -x``) into a
temporary directory, one per job, and overlays the working tree's versions of the files named
by --overlay (default: the value tests tests/test_values_*.py, so uncommitted versions of them
are used); --worktree copies the working tree's tracked files (``git ls-files``) instead,
others' uncommitted edits included. A mutant is applied in the copy by replacing the one line
whose text, stripped of indentation, equals the original's; it is reported as ``not applied``
when no line or more than one matches. The file is restored after its tests.

Importing the copy. The venv has /work/main installed in editable mode, through a meta-path
finder that setuptools *appends* to ``sys.meta_path``: the regular path finder runs first, so a
package found on ``sys.path`` wins over the editable one. The tests run as
``python -m pytest ...`` with the copy as working directory and on PYTHONPATH (``-m`` puts the
working directory first on ``sys.path``), so ``import archsim`` and ``tests.conftest`` resolve
to the copy; the script checks this before any mutant (``python -c "import archsim;
print(archsim.__file__)"`` run the same way must print a path in the copy) and aborts
otherwise. Subprocesses the tests start (the CLI tests) inherit the working directory and
PYTHONPATH. PYTHONDONTWRITEBYTECODE=1 keeps a stale .pyc of a mutated file from ever being
read after it is restored (a one-line change can keep the size and the mtime second).

Tests. ``--suite values`` runs the value tests alone; ``--suite related`` (default) the value
tests first, then the existing test files of the mutated module's area (``RELATED``);
``--suite existing`` those existing files alone (the mutants' odds before the value tests); all
with ``-x`` (stop at the first failure) and a time limit per mutant (a hang counts as killed).
Before the mutants, the unmutated copy must pass the union of the selected tests (the
baseline); otherwise the script stops, since a failure could not be told from a kill.

Runtime on this 2-core machine: the 130 mutants in about 7.5 minutes with --jobs 1 (after a
32 s baseline; every one killed, the value tests killing each in 2 to 6 s, the area's files the
rest within 9 s; a survivor would run all its area's files, about 10 to 30 s); --jobs 2 about
halves it. A run that times out has its own process group killed.

The GPU model's mutants (M131-M156: archsim/gpu, the GPU parts of archsim/config/gpu.py and
``DispatchConfig.exposed``) face the value tests too, tests/test_gpu_model.py among them (run
after the TPU-style chip's, about 3.5 s, which none of these mutants fail), then
tests/test_gpu_config.py; the default overlay adds it and tests/data/gpu_plain.yaml, so
uncommitted versions of the GPU tests are used. ``--only M131 ... M156`` runs them alone.

The GPU model's review fixes (issue 17; M157-M177): clusters (cm and cn swapped, the shared
memory's bytes against the L2's, the tie-break), a wave's rows of tiles rounded down, the
split-K spill threshold, the weight-only conversion's formula, the register check, the
collective's switch energy, sweep axes inside tables of sections, and the calibration fit's
call_overlap cap (archsim/calibrate/fit.py, against tests/test_calibrate_gpu.py, which the
default overlay adds). All 21 killed by the value tests or the area's GPU files, 2 to 4 s each
(about 30 s with --jobs 2 after a 33 s baseline); M140 and M155 were retargeted to the
current lines (``fetched``; the shared-memory check at the widest dtype).

The vectorised kernel search (66b17ba) computes archsim/gpu/gemm.py's formulas twice: in
``_ranks`` (numpy, over every candidate: it chooses the kernel) and in ``_candidate`` (the chosen
kernel's figures). Each GEMM mutant of a formula in both is given twice: ``nth=1`` in the
ranking (M133, M138, M140, M157, M160, M161, M237: the wrong formula picks the kernel, whose
figures are then built right) and ``nth=2``, an id ending in ``b``, in the build; M164 (the
tie-break) lives in the ranking only, as its third array. The ranking mutants face
tests/test_gpu_model.py's one-by-one comparison first and, behind it, value tests of the choice
itself (``test_the_kernel_search_*``: blocks per SM with their stages, the resident share, split-K
partials exactly filling the usable L2).

Flash attention (issue 18; M178-M203): the kernel's work (``FlashAttention.pairs``' causal key
blocks and query positions, the row-blocks' rounding, the MACs' 2x, each term of
``vector_work``), the pass's reader checks and causal query count (archsim/passes/flash.py), the
TPU-style cost's K/V re-read threshold (a quarter of VMEM, one KV head's K + V), overlap steps,
vector bound and causal key count, and the GPU cost's wave quantisation, query blocks, L2
re-reads of K and V, warm inputs and SFU/ALU bounds. They face tests/test_flash_attention.py,
the last of the value tests (about 7 s alone); all 26 killed by it, 3 to 5 s each (52 s with
--jobs 2 after a 15 s baseline): ``--only M178 ... M203``.

Fusion (issue 18; M204-M224): the pass's rules (single readers, layers, the vector prologue's
bytes guard, gemm_activation's functions, the norm split, cache writes of matmuls only), the
fused op's work and signature (archsim/ir/fused.py), and its cost (archsim/sim/fused.py,
archsim/gpu/fused.py: the vector main's epilogue after its work, the hidden part, extra reads per
channel, through VMEM and per pass, the epilogue's energy, the output's dtype, busy time, warm
reads, the SFU bound, extra HBM time). ``RELATED`` runs tests/test_fusion.py for these files; all
21 killed by it, about 1.2 s each (13 s with --jobs 2 and the tests restricted to that file).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Queue

ROOT = Path(__file__).resolve().parent.parent
VALUE_TESTS = ("tests/test_values_matrix.py", "tests/test_values_memory.py",
               "tests/test_values_energy.py", "tests/test_values_system.py", "tests/test_values_mechanisms.py",
               "tests/test_gpu_model.py", "tests/test_flash_attention.py")
# overlaid with the value tests by default (uncommitted versions used): what they read
OVERLAY = (*VALUE_TESTS, "tests/test_gpu_config.py", "tests/data/gpu_plain.yaml", "tests/test_calibrate_gpu.py")
# existing tests of each area, run after the value tests with --suite related
RELATED = {
    "archsim/sim/schedule.py": ("tests/test_schedule.py", "tests/test_engine.py"),
    "archsim/config/compiler.py": ("tests/test_schedule.py", "tests/test_flash_attention.py", "tests/test_fusion.py"),
    **{f: ("tests/test_fusion.py",) for f in ("archsim/passes/fusion.py", "archsim/ir/fused.py", "archsim/sim/fused.py",
                                              "archsim/gpu/fused.py")},
    "archsim/hw/matrix/": ("tests/test_systolic.py", "tests/test_cim_energy.py", "tests/test_quantization.py",
                           "tests/test_silicon.py"),
    "archsim/hw/vector.py": ("tests/test_engine.py", "tests/test_silicon.py"),
    "archsim/hw/timing.py": ("tests/test_engine.py", "tests/test_silicon.py"),
    "archsim/hw/energy.py": ("tests/test_cim_energy.py",),
    "archsim/hw/area.py": ("tests/test_cim_energy.py",),
    "archsim/hw/leakage.py": ("tests/test_cim_energy.py",),
    "archsim/ir/transformer.py": ("tests/test_hf_models.py", "tests/test_expert_parallel.py"),
    "archsim/workloads/hf.py": ("tests/test_hf_models.py",),
    "archsim/system/topology.py": ("tests/test_expert_parallel.py",),
    "archsim/hw/memory.py": ("tests/test_engine.py",),
    "archsim/hw/placement.py": ("tests/test_placement.py", "tests/test_engine.py"),
    "archsim/sim/family.py": ("tests/test_family.py",),
    "archsim/sim/family_timing.py": ("tests/test_family_timing.py",),
    "archsim/sim/result.py": ("tests/test_result_sums.py",),
    "archsim/additive.py": ("tests/test_result_sums.py",),
    "archsim/memo.py": ("tests/test_memo.py",),
    "archsim/dse/point_config.py": ("tests/test_point_config.py",),
    "archsim/dse/chunks.py": ("tests/test_chunks.py",),
    "archsim/dse/plan.py": ("tests/test_chunks.py", "tests/test_scale.py"),
    "archsim/passes/flash.py": ("tests/test_flash_attention.py", "tests/test_fusion.py"),
    "archsim/hw/placement_walk.py": ("tests/test_placement.py", "tests/test_engine.py", "tests/test_family.py"),
    "archsim/hw/knapsack.py": ("tests/test_knapsack_shared.py", "tests/test_placement.py", "tests/test_engine.py"),
    "archsim/sim/schedule.py": ("tests/test_schedule.py", "tests/test_scheduled_ops.py"),
    "archsim/sim/serving.py": ("tests/test_serving.py",),
    "archsim/sim/engine.py": ("tests/test_scaling.py", "tests/test_engine.py", "tests/test_cim_energy.py",
                              "tests/test_metrics.py", "tests/test_quantization.py", "tests/test_silicon.py"),
    "archsim/sim/matmul_cost.py": ("tests/test_engine.py", "tests/test_quantization.py", "tests/test_tiling.py",
                                   "tests/test_scaling.py", "tests/test_silicon.py"),
    "archsim/workloads/llm_schedules": ("tests/test_llm_schedules.py", "tests/test_llm_schedules_compare.py"),
    "archsim/gpu/gemm.py": ("tests/test_gpu_model.py",),
    "archsim/hw/tiling.py": ("tests/test_tiling.py", "tests/test_engine.py", "tests/test_quantization.py"),
    "archsim/sim/": ("tests/test_engine.py", "tests/test_cim_energy.py", "tests/test_metrics.py",
                     "tests/test_quantization.py", "tests/test_silicon.py"),
    "archsim/system/": ("tests/test_system.py", "tests/test_silicon.py"),
    "archsim/config/gpu.py": ("tests/test_gpu_config.py",),  # before the config area's (slower) files
    "archsim/config/schema.py": ("tests/test_gpu_config.py",),  # GPU keys
    "archsim/config/sweep_keys.py": ("tests/test_gpu_config.py",),  # sweep axes in tables of sections
    "archsim/config/": ("tests/test_config.py", "tests/test_silicon.py", "tests/test_calibrate.py"),
    "archsim/gpu/": ("tests/test_gpu_config.py",),
    "archsim/ir/": ("tests/test_ir.py", "tests/test_engine.py", "tests/test_silicon.py"),
    "archsim/calibrate/": ("tests/test_calibrate_gpu.py", "tests/test_calibrate.py"),
}


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    original: str
    replacement: str
    what: str
    nth: int = 0  # 0: the line must be unique in the file; n: its n-th occurrence (1-based)


def m(id, file, original, replacement, what, nth=0):
    return Mutant(id, file, original, replacement, what, nth)


SYS, CIM, VEC = "archsim/hw/matrix/systolic.py", "archsim/hw/matrix/cim.py", "archsim/hw/vector.py"
TIMING, ENERGY, AREA = "archsim/hw/timing.py", "archsim/hw/energy.py", "archsim/hw/area.py"
MEMORY, TILING, ENGINE, RESULT = "archsim/hw/memory.py", "archsim/hw/tiling.py", "archsim/sim/engine.py", "archsim/sim/result.py"
MATMUL = "archsim/sim/matmul_cost.py"
PLACE, PIPE, COST = "archsim/hw/placement.py", "archsim/system/pipeline.py", "archsim/sim/cost.py"
WALK, KNAPSACK = "archsim/hw/placement_walk.py", "archsim/hw/knapsack.py"
SCHEMA, OPS = "archsim/config/schema.py", "archsim/ir/ops.py"
SWEEP_KEYS = "archsim/config/sweep_keys.py"  # the sweep-key checks, moved from schema.py (6a6ec83)
TOPO, SCHED, SYSRES, SYSSIM = ("archsim/system/topology.py", "archsim/system/schedule.py",
                               "archsim/system/result.py", "archsim/system/simulator.py")
GEMM, GENGINE, GCOLL, GPOWER, GCONFIG = ("archsim/gpu/gemm.py", "archsim/gpu/engine.py", "archsim/gpu/collectives.py",
                                         "archsim/gpu/power.py", "archsim/config/gpu.py")
FIT = "archsim/calibrate/fit.py"
LEAKAGE = "archsim/hw/leakage.py"
FLASH, FLASHCOST = "archsim/passes/flash.py", "archsim/sim/flash_cost.py"
FUSION, FUSED_IR, FUSED_TPU, FUSED_GPU = ("archsim/passes/fusion.py", "archsim/ir/fused.py", "archsim/sim/fused.py",
                                          "archsim/gpu/fused.py")
SCHEDULE, COMPILER_CFG = "archsim/sim/schedule.py", "archsim/config/compiler.py"
KV_KEEP = "kv_reads = 1 if (k.bytes + v.bytes) / op.batch <= sim.hw.vmem.capacity * sim.hw.compiler.kv_share else q_blocks"
FLASH_VECTOR = ("vector_s = max(work.alu / hw.vector_ops_per_second, "
                "work.special / (sm.count * sm.special_ops_per_cycle * hw.clock))")

MUTANTS: tuple[Mutant, ...] = (
    # -- the five of issue 15 ------------------------------------------------------------
    m("M01", SYS, "a_reads, b_reads = a_bytes * math.ceil(shape.n / cfg.cols), b_bytes * split",
      "a_reads, b_reads = a_bytes, b_bytes * split", "ws: streamed operand read once, not once per column fold"),
    m("M02", CIM, "cycles = load + (per_unit - 1) * max(compute, load) + compute",
      "cycles = load + (per_unit - 1) * compute + compute", "CIM: reload no longer bounds an overlapped fold"),
    m("M03", WALK, "self.total = {n: 0.0 if usage[n].born_on_chip else -usage[n].tensor.total_bytes * per_byte",
      "self.total = {n: 0.0", "placement: preload left out of a promotion's value"),
    m("M04", ENERGY, "mxu=macs * self.mac[dtype] + weight_write_bytes * self.weight_write if macs else 0.0,",
      "mxu=macs * self.mac[dtype] if macs else 0.0,", "energy: CIM weight writes free"),
    m("M05", SCHED, "period = max(max(stage.occupancy(m) for stage in stages), *sends, 0.0)",
      "period = max(max(stage.occupancy(m) for stage in stages), 0.0)", "pipeline period ignores link sends"),
    # -- systolic --------------------------------------------------------------------------
    m("M06", SYS, "return folds * (s + load + skew_drain) - 1",
      "return folds * (s + load + skew_drain)", "scalesim: off by one cycle"),
    m("M07", SYS, "later = s + swap - load_overlap * min(s, swap)",
      "later = s", "pipelined: weight swap no longer bounds a fold"),
    m("M08", SYS, "later = s + swap - load_overlap * min(s, swap)",
      "later = s + swap - load_overlap * max(s, swap)", "pipelined: max -> min (overlap hides the longer of S, L)"),
    m("M09", SYS, "skew_drain = rows + cols - 2", "skew_drain = rows + cols - 1", "skew/drain off by one"),
    m("M10", SYS, "load = math.ceil(rows / load_rows_per_cycle) if mapping.preload else 0",
      "load = math.ceil(rows / load_rows_per_cycle)", "os pays a stationary load"),
    m("M11", SYS, "per_unit = math.ceil(folds / units)", "per_unit = folds // units",
      "folds per unit rounded down"),
    m("M12", SYS, "row_folds = math.ceil(mapping.row_dim / cfg.rows)", "row_folds = mapping.row_dim // cfg.rows + 1",
      "row folds off by one on whole multiples"),
    m("M13", SYS, "split = units // folds if mapping.preload and folds < units else 1", "split = 1",
      "idle units no longer share a fold's stream"),
    m("M14", SYS, "k_eff = math.ceil(shape.k / pack)", "k_eff = shape.k", "PE packing dropped"),
    m("M15", SYS, "b_reads = b_bytes * math.ceil(shape.m / cfg.rows)", "b_reads = b_bytes",
      "os: B read once, not once per row fold"),
    m("M16", SYS, "folds=folds * split,", "folds=folds,", "split fold pieces not counted as steps"),
    # -- CIM -------------------------------------------------------------------------------
    m("M17", CIM, "cycles = per_unit * (load + compute)", "cycles = load + per_unit * compute",
      "CIM serial reload paid once"),
    m("M18", CIM, "fill = math.ceil(bits / core.input_bits_per_cycle)", "fill = 0", "bit-serial fill dropped"),
    m("M19", CIM, "chunk = shape.m if k_folds == 1 else max(1, min(shape.m, psum_rows))", "chunk = shape.m",
      "partial-sum buffer ignored"),
    m("M20", CIM, "loads = chunks * split", "loads = chunks", "weight copies of a split fold not loaded"),
    m("M21", CIM, "a_reads=shape.a_bytes * n_folds,  # broadcast once per N fold",
      "a_reads=shape.a_bytes,", "CIM: A read once, not once per N fold"),
    m("M22", CIM, "outputs_per_core = core.core_cols // bits", "outputs_per_core = core.core_cols // 8",
      "outputs per core at int8 width whatever the dtype"),
    m("M23", CIM, "psum_rows = int(core.psum_buffer // (outputs_per_core * shape.dtype.accumulator.bytes))",
      "psum_rows = int(core.psum_buffer // (outputs_per_core * shape.dtype.bytes))",
      "partial sums at the operand width, not the accumulator's"),
    m("M24", CIM, "per_unit = math.ceil(folds / slots)", "per_unit = math.ceil(folds / cfg.count)",
      "grid row groups not used as sub-units"),
    m("M25", CIM, "load = math.ceil(core.core_rows * outputs_per_core * bits / core.weight_write_bits_per_cycle)",
      "load = math.ceil(core.core_rows * outputs_per_core / core.weight_write_bits_per_cycle)",
      "weight load in weights, not bits"),
    # -- vector unit, timing ---------------------------------------------------------------
    m("M26", VEC, "return math.ceil(alu + special / config.lanes)",
      "return math.ceil(alu + work.special / config.lanes)", "transcendental cost dropped"),
    m("M27", VEC, "alu = work.alu / (config.lanes * config.alu_ops_per_lane_per_cycle)",
      "alu = work.alu / config.lanes", "ALU ops per lane dropped"),
    m("M28", TIMING, "return latency + np.maximum(t_mem, t_mem / np.maximum(steps, 1) + t_compute)",
      "return latency + np.maximum(t_mem, t_compute)", "first piece's transfer not exposed"),
    m("M29", TIMING, "return latency + np.maximum(t_mem, t_mem / np.maximum(steps, 1) + t_compute)",
      "return np.maximum(t_mem, t_mem / np.maximum(steps, 1) + t_compute)", "access latency dropped"),
    m("M30", TIMING, "return max((level_config(hw, lv).latency for lv in levels), default=0.0)",
      "return min((level_config(hw, lv).latency for lv in levels), default=0.0)", "latency: max -> min"),
    m("M31", TIMING, "moved = traffic.total(level)", "moved = traffic.read(level)", "channel time ignores writes"),
    # -- energy, area ----------------------------------------------------------------------
    m("M32", ENERGY, "static=self.static_power * latency_s,", "static=0.0,", "op static energy dropped"),
    m("M33", ENERGY, "mac={d: e * mxu_scale for d, e in hw.mxu.mac_energy.items()},",
      "mac={d: e for d, e in hw.mxu.mac_energy.items()},", "MAC energy not node-scaled"),
    m("M34", ENERGY, "weight_write=(cim.weight_write_energy if cim is not None else hw.mxu.weight_load_energy) * mxu_scale,",
      "weight_write=cim.weight_write_energy if cim is not None else hw.mxu.weight_load_energy,",
      "weight-write energy not node-scaled"),
    m("M35", ENERGY, "vpu=vector.alu * self.vpu_alu + vector.special * self.vpu_special,",
      "vpu=vector.alu * self.vpu_alu,", "special-op energy dropped"),
    m("M36", ENERGY, "vmem, cmem, hbm = (traffic.read(lv) * read.get(lv, 0.0) + traffic.write(lv) * write.get(lv, 0.0)",
      "vmem, cmem, hbm = (traffic.read(lv) * read.get(lv, 0.0)", "writes cost no energy"),
    m("M37", ENERGY,
      "return getattr(technology.factors(technology.node), quantity) / getattr(technology.factors(stated_at), quantity)",
      "return getattr(technology.factors(stated_at), quantity) / getattr(technology.factors(technology.node), quantity)",
      "node scaling inverted"),
    m("M38", ENERGY, "s = scale_factor(hw, cfg.stated_at, \"energy\")", "s = 1.0",
      "memory energies not node-scaled"),
    m("M39", ENERGY, "ici=hw.ici.energy_per_byte * scale_factor(hw, hw.ici.stated_at, \"energy\"),",
      "ici=hw.ici.energy_per_byte,", "link energy not node-scaled"),
    m("M40", AREA, "mxu=mxu.count * mxu.unit_area * scaled(technology, mxu.stated_at, \"area\"),",
      "mxu=mxu.unit_area * scaled(technology, mxu.stated_at, \"area\"),", "area of one MXU only"),
    m("M41", AREA, "return cfg.capacity * cfg.area_per_byte * scaled(technology, cfg.stated_at, \"area\")",
      "return cfg.capacity * cfg.area_per_byte * scaled(technology, cfg.stated_at, \"energy\")",
      "SRAM area scaled by the energy factor"),
    # -- memory, tiling --------------------------------------------------------------------
    m("M42", WALK, "self.total[name] += count * (saved - self.once.get((i, name), 0.0))",
      "self.total[name] += saved - self.once.get((i, name), 0.0)", "placement: repeats not counted"),
    m("M43", PLACE, "ok = 0 < footprint <= reserve", "ok = 0 < footprint", "activations in CMEM beyond its reserve"),
    m("M44", WALK, "return [_Item(n, usage[n].tensor.total_bytes, s, not usage[n].born_on_chip)",
      "return [_Item(n, usage[n].tensor.bytes, s, not usage[n].born_on_chip)", "knapsack weighs one layer's copy of a stack"),
    m("M45", PLACE, "return analysis.hbm_floor + rung.spilled + sum(size for n, size in analysis.created if n not in promoted)",
      "return analysis.hbm_floor + sum(size for n, size in analysis.created if n not in promoted)",
      "HBM capacity ignores spilled activations"),
    m("M46", MEMORY, "values[at], values[at + 1] = read, write", "values[at], values[at + 1] = write, read",
      "a level's reads and writes swapped"),
    m("M47", TILING, "footprint = 2 * (m * k * ea + k * n * eb + m * n * acc_bytes_per_element)",
      "footprint = (m * k * ea + k * n * eb + m * n * acc_bytes_per_element)", "tiles not double-buffered"),
    m("M48", TILING, "spills = acc_bytes * (refetch[:, 2] - 1)", "spills = out_bytes * (refetch[:, 2] - 1)",
      "partial sums spilled at the output width"),
    m("M49", TILING, "vmem_read = out_bytes + spills + a_reads + b_reads", "vmem_read = spills + a_reads + b_reads",
      "VMEM read of the drained output dropped"),
    m("M50", TILING, "writes[out_level] = writes[out_level] + out_bytes + spills",
      "writes[out_level] = writes[out_level] + out_bytes", "spilled partial sums not written"),
    # -- engine, run totals ----------------------------------------------------------------
    m("M51", ENGINE, "steps = math.ceil(elements / max(vpu.lanes, row))", "steps = math.ceil(elements / vpu.lanes)",
      "vector blocks ignore whole rows"),
    m("M52", ENGINE, "traffic = Traffic.of(Level.HBM, read=moved) + Traffic.of(Level.CMEM, write=moved)",
      "traffic = Traffic.of(Level.HBM, read=moved)", "preload writes nothing into CMEM"),
    m("M53", ENGINE, "energy = self.energy.op_energy(latency, traffic, vector=work) + Energy(ici=transfer.energy_j / op.group)",
      "energy = self.energy.op_energy(latency, traffic, vector=work) + Energy(ici=transfer.energy_j)",
      "collective: every chip pays the group's link energy"),
    m("M54", ENGINE, "latency = max(transfer.time_s, memory_s, compute_s)", "latency = transfer.time_s",
      "collective time ignores its memory and adds"),
    m("M55", ENGINE, "traffic = Traffic.of(placement.level(table), read=out.elements * table.dtype.bytes)",
      "traffic = Traffic.of(placement.level(table), read=table.bytes)", "embedding reads its whole table"),
    m("M56", MATMUL, "energy=sim.energy.op_energy(time, tiling.traffic, op.macs, dtype, array.weight_write_bytes, convert),",
      "energy=sim.energy.op_energy(compute_s, tiling.traffic, op.macs, dtype, array.weight_write_bytes, convert),",
      "matmul static energy over compute time only"),
    m("M57", ENGINE, "traffic += Traffic.of(Level.VMEM, read=t.bytes * scale, write=t.bytes * scale)",
      "pass", "vector inputs bypass VMEM", nth=1),
    m("M58", RESULT, "total += repeat * once", "total += once", "run latency drops phase repeats"),
    m("M59", RESULT, "out[c.phase] = (repeat, once + c.latency_s * c.copies)",
      "out[c.phase] = (repeat, once + c.latency_s)", "phase time drops layer copies"),
    m("M60", RESULT, "return self._ops_energy.replaced(static=static_power(self.hw) * self.latency_s)",
      "return self._ops_energy.replaced(static=0.0)", "run static energy dropped"),
    # -- topology --------------------------------------------------------------------------
    m("M61", TOPO, "neighbours = 1 if self.chips <= 2 else 2", "neighbours = 2",
      "ring of 2 chips splits its links as if it had 2 neighbours (link count halved)"),
    m("M62", TOPO, "return self.link_bandwidth * max(1, self.links // neighbours)",
      "return self.link_bandwidth * max(1, self.links // 2 // neighbours)", "ring: link count halved"),
    m("M63", TOPO, "steps = passes * (n - 1)", "steps = passes * n", "ring collective: one step too many"),
    m("M64", TOPO, "time = steps * (max(edges) * self.alpha + chunk / (directions * self.neighbour_bandwidth()))",
      "time = steps * (min(edges) * self.alpha + chunk / (directions * self.neighbour_bandwidth()))",
      "ring step latency: max -> min edge"),
    m("M65", TOPO, "energy = steps * chunk * sum(edges) * self.energy_per_byte",
      "energy = steps * chunk * max(edges) * self.energy_per_byte", "ring energy over one edge"),
    m("M66", TOPO, "return Transfer(hops * self.alpha + size / self.neighbour_bandwidth(), size, size * hops * self.energy_per_byte)",
      "return Transfer(self.alpha + size / self.neighbour_bandwidth(), size, size * hops * self.energy_per_byte)",
      "send: one hop's latency whatever the path", nth=1),
    m("M67", TOPO, "return along_x + self._ring(size / self.x, [row[0] for row in rows], 2).in_parallel(self.x) + along_x",
      "return along_x + self._ring(size, [row[0] for row in rows], 2).in_parallel(self.x) + along_x",
      "torus: the column all-reduce moves everything, not 1/x"),
    m("M68", TOPO, "neighbours = sum(0 if n == 1 else 1 if n == 2 else 2 for n in (self.x, self.y))",
      "neighbours = 4", "torus: always 4 neighbours"),
    m("M69", TOPO, "sent = (n - 1) / n * size  # per chip per phase, to all the others at once",
      "sent = size", "switch: every chip sends all the bytes"),
    m("M70", TOPO, "time = passes * (2 * self.alpha + self.switch_latency + sent / self.neighbour_bandwidth())",
      "time = passes * (2 * self.alpha + sent / self.neighbour_bandwidth())", "switch collective: switch latency dropped"),
    m("M71", TOPO, "return Transfer(base.time_s + self.switch_latency, size, base.energy_j + size * self.switch_energy)",
      "return Transfer(base.time_s, size, base.energy_j + size * self.switch_energy)", "switch send: latency dropped"),
    m("M72", TOPO, "return self.link_bandwidth * self.links  # every link goes to the switch",
      "return self.link_bandwidth  # every link goes to the switch", "switch: one link per chip"),
    # -- schedule, system result, system simulator -----------------------------------------
    m("M73", SCHED, "step = max(trip + feedback_s, m * period)", "step = max(trip, m * period)",
      "repeats ignore the feedback send"),
    m("M74", SCHED, "return max(self.total_s - self.collective_s, self.collective_s)",
      "return self.total_s - self.collective_s", "overlapped collectives are free"),
    m("M75", SCHED, "total = repeat * step + (trip + (m - 1) * period - step)", "total = repeat * step",
      "first execution's fill and drain dropped"),
    m("M76", SCHED, "trip += sends[s]", "pass", "a micro-batch's trip ignores the links"),
    m("M77", SYSRES, "return dataclasses.replace(dynamic, static=self.chips * static_power(self.hw) * self.latency_s)",
      "return dataclasses.replace(dynamic, static=static_power(self.hw) * self.latency_s)",
      "static power of one chip only"),
    m("M78", SYSRES, "dynamic = dynamic.scaled(self.chips_per_stage) + Energy(ici=self.boundary_transfers[1])",
      "dynamic = dynamic + Energy(ici=self.boundary_transfers[1])", "replicas' dynamic energy not counted"),
    m("M79", SYSRES, "return cost.count * (1 if cost.phase == PRELOAD else self.micro_batches)",
      "return cost.count", "micro-batches not counted in work"),
    m("M80", SYSRES, "returns = (phase.repeat - 1) * self.micro_batches * self.hw.system.parallelism.data",
      "returns = (phase.repeat - 1) * self.hw.system.parallelism.data", "feedback sent once, not per micro-batch"),
    m("M81", SYSSIM, "send = self.topology.send(size, cut * tp + tp - 1, (cut + 1) * tp)",
      "send = self.topology.send(size, cut * tp, (cut + 1) * tp)", "stage boundary sent from the group's first chip"),
    m("M82", SYSSIM, "return self.topology.send(size, p.pipeline * p.tensor - 1, 0)", "return NO_TRANSFER",
      "no feedback from the last stage"),
    # -- added after the first run ---------------------------------------------------------
    m("M83", TILING, "t_mem, time = _times(table.busy_bytes, table.levels, bw, np.minimum(table.tiles, folds), compute_s, latency_s)",
      "t_mem, time = _times(table.busy_bytes, table.levels, bw, np.maximum(table.tiles, folds), compute_s, latency_s)",
      "op steps: the finer of folds and tiles, not the coarser (a table's first use)"),
    m("M83b", TILING, "t_mem, time = _times(busy, table.levels, bw, np.minimum(tiles, folds), compute_s, latency_s)",
      "t_mem, time = _times(busy, table.levels, bw, np.maximum(tiles, folds), compute_s, latency_s)",
      "op steps: the finer of folds and tiles, not the coarser (a table's later uses, ranked)"),
    m("M84", MATMUL, "rank = (tiling.time_s, tiling.traffic.moved)", "rank = (tiling.traffic.moved, tiling.time_s)",
      "units' mapping chosen by bytes before time"),
    m("M85", MATMUL, "batch, m = (op.batch, op.m) if op.b_batched else (1, op.batch * op.m)",
      "batch, m = (op.batch, op.m)", "a shared weight's batch not folded into M"),
    m("M86", PIPE, "for k in range(src, last[op.name]):", "for k in range(src, min(src + 1, last[op.name])):",
      "an activation crosses only the first cut to its reader"),
    m("M87", SYSRES, "runs = phase.repeat * self.micro_batches * self.hw.system.parallelism.data",
      "runs = phase.repeat * self.micro_batches", "boundary sends of one replica only"),
    m("M88", SYSRES, "return per_chip.scaled(self.chips_per_stage)", "return per_chip",
      "memory traffic of one chip per stage"),
    m("M89", SYSRES, "return max((s.phase_times.get(PRELOAD, (1, 0.0))[1] for s in self.stages), default=0.0)",
      "return sum((s.phase_times.get(PRELOAD, (1, 0.0))[1] for s in self.stages), 0.0)",
      "stages preload one after another"),
    m("M90", SYS, "stream_cycles=per_unit * mapping.stream,", "stream_cycles=mapping.stream,",
      "systolic: streaming of one fold only (fill overstated)"),
    m("M91", CIM, "stream_cycles=per_unit * chunk * row_cycles / ratio,", "stream_cycles=per_unit * chunk / ratio,",
      "CIM: stream counted in rows, not cycles"),
    m("M92", COST, "if self.compute_s < self.memory_s:", "if self.compute_s > self.memory_s:",
      "bound label: memory and compute swapped"),
    # -- weight-only quantisation, placement estimates, TDP -----------------------------------
    m("M93", "archsim/hw/matrix/base.py", "return (self.batch if self.b_batched else 1) * self.k * self.n * self.b_dtype.bytes",
      "return (self.batch if self.b_batched else 1) * self.k * self.n * self.dtype.bytes",
      "weights moved at the compute width (the W4A8 bug)"),
    m("M94", MATMUL, "elements += array.b_reads / shape.b_dtype.bytes", "elements += array.b_reads / shape.dtype.bytes",
      "conversion counted per compute-width byte"),
    m("M95", MATMUL, "compute_s = max(array_s, vector_cycles(sim.hw.vpu, convert) / sim.hw.clock)",
      "compute_s = array_s", "conversion never bounds the op"),
    m("M96", TILING, "footprint = 2 * (m * k * ea + k * n * eb + m * n * acc_bytes_per_element)",
      "footprint = 2 * (m * k * ea + k * n * ea + m * n * acc_bytes_per_element)", "VMEM tiles of B at A's width"),
    m("M97", KNAPSACK, "(_, _, _, p), g, _, names = max(fitting, key=lambda e: (e[1] - (latency if e[0][3] else 0.0), -e[0][0]))",
      "(_, _, _, p), g, _, names = max(fitting, key=lambda e: (e[1], -e[0][0]))", "placement: the preload's latency ignored in the choice"),
    m("M98", KNAPSACK, "for (b, _, _, p), g, f, names in front if b + size <= budget]  # the sets grown by the item",
      "for (b, _, _, p), g, f, names in front]", "knapsack overfills CMEM"),
    m("M100", KNAPSACK, "freed = 0.0 if preloaded else size", "freed = size",
      "a preloaded tensor counted as freeing its HBM copy"),
    m("M258", KNAPSACK, "rank = (g - (latency if p else 0.0), -size)", "rank = (g, -size)",
      "shared knapsack list: the preload's latency ignored in the choice"),
    m("M259", KNAPSACK, "within = bisect_right(sizes, budget)", "within = len(sizes)",
      "shared knapsack list: sets beyond the budget picked"),
    m("M260", "archsim/hw/placement.py", "home[name] = Level.CMEM", "home[name] = Level.HBM",
      "placement: a plan's promoted tensors left in HBM"),
    m("M261", "archsim/hw/placement.py",
      "return analysis.hbm_floor + rung.spilled + sum(size for n, size in analysis.created if n not in promoted)",
      "return analysis.hbm_floor + rung.spilled + sum(size for n, size in analysis.created)",
      "placement: a promoted created tensor still needs its HBM"),
    m("M262", "archsim/sim/result.py", "seconds = added * (c.repeat * c.copies)  # c.count",
      "seconds = added * c.repeat  # c.count", "a row's time by unit and bound: copies not counted"),
    m("M263", "archsim/sim/result.py", "bounds[bound] = bounds.get(bound, 0.0) + seconds",
      "bounds[unit] = bounds.get(unit, 0.0) + seconds", "a row's time by bound grouped by unit"),
    m("M264", "archsim/additive.py", "values[name] = value", "pass", "a record replaced keeps its old value"),
    m("M265", "archsim/sim/family.py", "if made != cost.latency_s:", "if False:",
      "family: a full cost's time not compared with the arrays'"),
    m("M266", "archsim/sim/family.py", "return values[mine]", "return values[0]",
      "family: the asking member given the first member's time"),
    m("M267", "archsim/memo.py", "value = instance.__dict__[self.name] = self.func(instance)",
      "value = self.func(instance)", "cached_property: the value made at every access, never kept"),
    m("M268", "archsim/hw/placement_walk.py",
      "added = np.array(counts, dtype=np.float64)[:, None] * (self._rows(now) - self._rows(before))",
      "added = self._rows(now) - self._rows(before)", "family walk: a rung's op times not counted by executions"),
    m("M269", "archsim/hw/placement_walk.py", "np.add.at(self.totals, [self.rows[name] for _, name in pairs], added)",
      "np.add.at(self.totals, [self.rows[name] for _, name in pairs], saved)",
      "family walk: a tensor's saving added whole at every rung, not its change"),
    m("M270", "archsim/hw/placement_walk.py", "return self.family.base(index, self.times)[self.member]",
      "return self.family.base(index, self.times)[0]", "family walk: every member reads the first member's rung times"),
    m("M271", "archsim/sim/family.py",
      "latency = access_latency(sim.hw, times) + np.maximum(memory, memory / steps + cost.compute_s)",
      "latency = np.maximum(memory, memory / steps + cost.compute_s)",
      "family: a flash-attention kernel's access latency dropped"),
    m("M272", "archsim/sim/family.py",
      "return plan.mappings[j], candidate_tiling(tables[j], flat[mine], memory[mine], time[mine])",
      "return plan.mappings[j], candidate_tiling(tables[j], flat[mine], time[mine], time[mine])",
      "family: a member's picked tiling given its time as its busiest channel's"),
    m("M273", "archsim/memo.py", "if key not in items and key not in new:  # a key met twice keeps its first value, as ``get`` would",
      "if key not in new:", "put_absent: a held key's value replaced"),
    m("M274", "archsim/sim/result.py", "total += value", "total = value", "a run's traffic and energy: the last op's alone"),
    m("M275", "archsim/dse/point_config.py", "mixed.update(recipe.untouched)", "pass",
      "a point's untouched sections validated anew, not the ones kept"),
    m("M276", "archsim/hw/tiling.py", "dominated |= (columns[:, u:u + 1] <= columns).all(axis=0)  # u itself and earlier ones too:",
      "dominated |= (columns[:, u:u + 1] <= columns).any(axis=0)", "tiling: a candidate better at one level taken as dominating"),
    m("M277", "archsim/passes/flash.py",
      "entry = _KEYS[id(compiler)] = (compiler, compiler.passes_key if compiler.flash or compiler.rules else None)",
      "entry = _KEYS[id(compiler)] = (compiler, compiler.passes_key if compiler.flash else None)",
      "compile_for: a compiler fusing without flash attention compiles nothing"),
    m("M278", "archsim/dse/chunks.py", "if k >= 0 and starts[k] > at + (3 * size) // 4:",
      "if k >= 0 and starts[k] > at + size // 2:", "chunks: cut at a family beginning in a chunk's last half"),
    m("M279", "archsim/dse/chunks.py", "if k >= 0 and starts[k] > at + (3 * size) // 4:",
      "if k >= 0 and starts[k] >= at + (3 * size) // 4:", "chunks: a family beginning at the last quarter's edge cut at"),
    m("M280", "archsim/dse/chunks.py", "at_families = size is None", "at_families = True",
      "chunks: a chunk size the user asks for cut at families"),
    m("M281", "archsim/sim/family.py", 'return path == "hbm.bandwidth" or CostFingerprint.unread(path)',
      "return CostFingerprint.unread(path)", "families: HBM's bandwidth taken as a family's own value"),
    m("M282", "archsim/dse/plan.py", "if not all(free(path) for path, _ in options[0]):", "if True:",
      "family starts: every axis value kept, the free ones too"),
    m("M283", "archsim/dse/plan.py",
      "1 if beside is not None and all(beside(path) for path, _ in f[0]) else 0 for f in self.factors]",
      "0 for f in self.factors]", "grouped: the bandwidth axes left in their declared place"),
    m("M284", "archsim/sim/family_timing.py", "begin = np.where(end[j] > begin, end[j], begin)", "begin = end[j]",
      "family run times: an op starts when its last dependency ends, not the latest"),
    m("M285", "archsim/sim/family_timing.py", "free[resource] = np.where(present, done, free.get(resource, 0.0))",
      "free[resource] = done", "family run times: a resource a member's op lacks taken as held by it"),
    m("M286", "archsim/sim/family_timing.py", "fixed = np.where(fixed > 0.0, fixed, 0.0)", "pass",
      "family run times: an op's negative fixed time kept"),
    m("M287", "archsim/sim/family_timing.py", "at = np.where(previous_start > at, previous_start, at)", "pass",
      "family run times: a prefetch issued before the op before it started"),
    m("M288", "archsim/sim/family_timing.py", "once = parts[0][5]", "once = parts[0][1]",
      "family run times: a lone op's phase timed by its unit's time, not its latency"),
    m("M289", "archsim/sim/family_timing.py", "share = seconds * copies * np.minimum(1.0, ahead[level] / moved)",
      "share = seconds * copies * (ahead[level] / moved)", "family run times: a batched op's prefetch not capped at its transfer"),
    m("M290", "archsim/sim/family_timing.py",
      "fetch.append((channel, seconds * copies * min(1.0, ahead[channel] / moved), True))",
      "fetch.append((channel, seconds * min(1.0, ahead[channel] / moved), True))",
      "family run times: an on-chip op's prefetch of one copy only"),
    m("M99", RESULT, "return self.tdp_w is not None and self.power_w > self.tdp_w",
      "return self.tdp_w is not None and self.power_w > 2 * self.tdp_w", "TDP flag at twice the TDP"),
    # -- issue 16: dispatch ----------------------------------------------------------------
    m("M101", COST, "new.__dict__.update(self.__dict__, latency_s=self.latency_s + dispatch_s, dispatch_s=self.dispatch_s + dispatch_s,",
      "new.__dict__.update(self.__dict__, dispatch_s=self.dispatch_s + dispatch_s,",
      "dispatch recorded but not added to the op's time"),
    m("M102", ENGINE, "cost = body.with_dispatch(self.hw.dispatch.exposed(self.dispatch, op.kind, body.latency_s),",
      "cost = body.with_dispatch(2 * self.hw.dispatch.exposed(self.dispatch, op.kind, body.latency_s),",
      "dispatch paid twice per op"),
    m("M103", COST, "energy=self.energy + Energy(static=static_power_w * dispatch_s))", "energy=self.energy)",
      "a launch draws no static power (the ops' energies no longer sum to the run's)"),
    m("M104", SCHEMA, "table = self.call if mode == \"call\" else self.program", "table = self.program",
      "dispatch mode ignored (program costs for calls)"),
    m("M105", SCHEMA, "return table.get(kind, table[\"default\"])", "return table[\"default\"]",
      "dispatch kind ignored (the default for every op)"),
    m("M106", ENGINE, "key = (self._fingerprint.key(levels), self.dispatch, op.signature, levels)",
      "key = (self._fingerprint.key(levels), op.signature, levels)",
      "shared-cost key ignores the dispatch mode"),
    # -- issue 16: achievable bandwidth ------------------------------------------------------
    m("M107", TIMING, "times[level] = moved / level_config(hw, level).achievable_bandwidth",
      "times[level] = moved / level_config(hw, level).bandwidth", "channel times at peak bandwidth (efficiency ignored)"),
    m("M108", ENGINE, "bandwidth=tuple((lv, getattr(self.hw, lv.value).achievable_bandwidth) for lv in levels),",
      "bandwidth=tuple((lv, getattr(self.hw, lv.value).bandwidth) for lv in levels),",
      "tiling's channels at peak bandwidth (efficiency ignored)"),
    m("M109", PLACE, "per_byte = 1 / min(hw.hbm.achievable_bandwidth, hw.cmem.achievable_bandwidth) if hw.cmem is not None else 0.0",
      "per_byte = 1 / min(hw.hbm.bandwidth, hw.cmem.bandwidth) if hw.cmem is not None else 0.0",
      "placement: preload estimated at peak bandwidth"),
    m("M110", SCHEMA, "return self.bandwidth * self.efficiency", "return self.bandwidth",
      "memory levels' efficiency ignored"),
    m("M111", TOPO, "self.link_bandwidth = hw.ici.achievable_bandwidth", "self.link_bandwidth = hw.ici.link_bandwidth",
      "ICI efficiency ignored"),
    # -- issue 16: systolic weight load ------------------------------------------------------
    m("M112", SYS, "later = s + swap - load_overlap * min(s, swap)", "later = s + swap + load_overlap * min(s, swap)",
      "weight-load overlap adds time instead of hiding it"),
    m("M113", SYS, "load = math.ceil(rows / load_rows_per_cycle) if mapping.preload else 0",
      "load = rows if mapping.preload else 0", "weight load's rows per cycle ignored"),
    m("M114", SYS, "swap = rows if not mapping.preload else load", "swap = load",
      "pipelined os: the output unload between folds dropped"),
    m("M115", SYS, "cfg.weight_load_rows_per_cycle, cfg.weight_load_overlap)",
      "cfg.weight_load_rows_per_cycle, 1.0)", "the config's weight-load overlap ignored (always hidden)"),
    # -- issue 16: vector ops as passes --------------------------------------------------------
    m("M116", ENGINE, "inputs, outputs = (op.inputs, op.outputs) if i == last else (op.inputs[:1], ())",
      "inputs, outputs = (op.inputs, op.outputs) if i == last else (op.inputs, ())",
      "a reduction pass reads every input, not the data input"),
    m("M117", ENGINE, "inputs, outputs = (op.inputs, op.outputs) if i == last else (op.inputs[:1], ())",
      "inputs, outputs = (op.inputs, ()) if i == last else (op.inputs[:1], ())", "the last pass writes no outputs"),
    m("M118", ENGINE, "moved = self._stream_traffic(inputs, outputs, placement, through_vmem=True, scale=scale)",
      "moved = self._stream_traffic(inputs, outputs, placement, through_vmem=True)", "lane padding moves no bytes"),
    m("M119", ENGINE, "elements = op.rows * row", "elements = op.rows * op.row_length",
      "lane padding costs the lanes no work"),
    m("M120", ENGINE, "if i != last:  # a reduction: each row's lanes folded into one value", "if True:",
      "the last (output) pass folds rows across lanes too"),
    m("M121", VEC, "return row_length if width is None else math.ceil(row_length / width) * width",
      "return row_length if width is None else max(1, row_length // width) * width", "padded row rounded down"),
    m("M122", VEC, "return vector_cycles(config, work) + math.ceil(config.pass_cycles_per_vreg * elements / config.lanes)",
      "return vector_cycles(config, work) + math.ceil(config.pass_cycles_per_vreg * elements)",
      "pass cost per element, not per register"),
    m("M123", VEC, "steps = math.ceil(math.log2(width)) if width > 1 else 0",
      "steps = math.ceil(math.log2(width)) + 1 if width > 1 else 0", "reduction: log2 steps off by one"),
    m("M124", VEC, "rows_per_register = max(1, config.lanes // width)", "rows_per_register = 1",
      "reduction: one row per register, not lanes / lane width"),
    m("M125", VEC, "special += count * config.special_cycles.get(function, config.special_cycles_per_op)",
      "special += count * config.special_cycles_per_op", "per-function transcendental cycles ignored"),
    m("M126", OPS, "counts[name] = counts.get(name, 0) + n", "counts[name] = n",
      "VectorWork sum: a function's count replaced, not added"),
    m("M127", OPS, "counts[name] = counts.get(name, 0) + n * rows", "counts[name] = counts.get(name, 0) + n * elements",
      "per-row transcendentals counted per element"),
    # -- issue 16: collectives -----------------------------------------------------------------
    m("M128", TOPO, "directions = 2 if self.bidirectional and n > 2 and max(edges) == 1 else 1",
      "directions = 2 if self.bidirectional else 1", "bidirectional ring halves a 2-chip ring's (and a line's) time too"),
    m("M130", TOPO, "directions = 2 if self.bidirectional and n > 2 and max(edges) == 1 else 1",
      "directions = 2 if self.bidirectional and n > 2 else 1", "a group along a line of a larger ring doubled too"),
    m("M129", TOPO, "self.bidirectional = hw.system.collective_algorithm == \"bidirectional_ring\"",
      "self.bidirectional = True", "collective_algorithm ignored (always bidirectional)"),
    # -- the GPU model (archsim/gpu; tests/test_gpu_model.py, tests/test_gpu_config.py) --------
    m("M131", GEMM, "compute_s = ((waves - 1) * per_sm + math.ceil(rest / sm.count)) * tile_macs / rate",
      "compute_s = waves * per_sm * tile_macs / rate", "gemm: the last, partial wave takes a full wave's time"),
    m("M132", GEMM, "k_steps = math.ceil(k_split / gemm.k_tile)", "k_steps = k_split / gemm.k_tile",
      "gemm: K not rounded up to whole k_tile steps"),
    m("M133", GEMM, "staged = gemm.stages * (bm + bn) * gemm.k_tile * shape.dtype.bytes",
      "staged = (bm + bn) * gemm.k_tile * shape.dtype.bytes", "gemm ranking: blocks per SM ignore the pipeline stages",
      nth=1),
    m("M133b", GEMM, "staged = gemm.stages * (bm + bn) * gemm.k_tile * shape.dtype.bytes",
      "staged = (bm + bn) * gemm.k_tile * shape.dtype.bytes", "gemm plan: blocks per SM ignore the pipeline stages",
      nth=2),
    m("M134", GEMM, "rate = sm.tensor_macs_per_cycle[shape.dtype] * sm.tensor_efficiency * hw.clock  # MACs/s of one SM",
      "rate = sm.tensor_macs_per_cycle[shape.dtype] * hw.clock", "gemm: tensor_efficiency ignored"),
    m("M135", GEMM, "w_m = min(tm, math.ceil(wave / w_n))", "w_m = min(tm, w_n)",
      "gemm: a wave's group of tiles square whatever the wave's size"),
    m("M136", GEMM, "a_reads = 0 if shape.a_warm else 1 if a <= half else math.ceil(tn / w_n)",
      "a_reads = 0 if shape.a_warm else 1 if a < half else math.ceil(tn / w_n)",
      "gemm: an operand of exactly half the usable L2 re-read"),
    m("M137", GEMM, "b_reads = 0 if shape.b_warm else 1 if b <= half else math.ceil(tm / w_m)",
      "b_reads = 1 if b <= half else math.ceil(tm / w_m)", "gemm: a warm B read from HBM anyway"),
    m("M138", GEMM, "spill = partials > hw.l2.usable_capacity", "spill = False",
      "gemm ranking: split-K partials never spill to HBM", nth=1),
    m("M138b", GEMM, "spill = partials > hw.l2.usable_capacity", "spill = False",
      "gemm plan: split-K partials never spill to HBM", nth=2),
    m("M139", GEMM, "time_s = max(compute_s, l2_s, hbm_s) + latency_s + reduce_s",
      "time_s = max(compute_s, l2_s, hbm_s) + latency_s", "gemm: the split-K reduction takes no time"),
    m("M140", GEMM, "fetched = shape.batch * (a * tn / cn + b * tm / cm)", "fetched = shape.batch * (a * tn + b * tm)",
      "gemm ranking: clusters multicast nothing", nth=1),
    m("M140b", GEMM, "fetched = shape.batch * (a * tn / cn + b * tm / cm)", "fetched = shape.batch * (a * tn + b * tm)",
      "gemm plan: clusters multicast nothing", nth=2),
    m("M141", GENGINE, "warm = l2_resident(workload, self.hw.l2.resident_capacity)",
      "warm = l2_resident(workload, self.hw.l2.usable_capacity)", "gpu run: activations warm up to the whole usable L2"),
    m("M142", GENGINE, "warm = sum(t.bytes for t in op.tensors) <= self.hw.l2.resident_capacity",
      "warm = sum(t.bytes for t in op.inputs) <= self.hw.l2.resident_capacity",
      "benchmark placement: the working set without the outputs"),
    m("M143", GENGINE, "long_row = kernel.row_limit is not None and op.row_length > kernel.row_limit",
      "long_row = kernel.row_limit is not None and op.row_length >= kernel.row_limit",
      "vector kernel: a row of row_limit elements read as a long row"),
    m("M144", GENGINE, "per_input = [t.bytes * (reads if i == 0 else 1) for i, t in enumerate(op.inputs)]",
      "per_input = [t.bytes * reads for t in op.inputs]", "vector kernel: every input re-read, not the main one"),
    m("M145", GENGINE, "work.special / (hw.sm.count * hw.sm.special_ops_per_cycle * hw.clock))",
      "work.special / (hw.sm.count * hw.sm.alu_ops_per_cycle * hw.clock))",
      "vector op: transcendentals at the lanes' rate"),
    m("M146", GENGINE, "latency = max(transfer.time_s, streamed.latency_s)", "latency = transfer.time_s",
      "gpu collective: its buffers' HBM traffic ignored"),
    m("M147", GENGINE, "cost = _COSTS.put(key, body.with_dispatch(self.hw.dispatch.exposed(self.dispatch, op.kind, body.latency_s),",
      "cost = _COSTS.put(key, body.with_dispatch(self.hw.dispatch.exposed(self.dispatch, op.kind, 0.0),",
      "gpu dispatch: the kernel's work hides none of a call's cost"),
    m("M148", GENGINE, "if i >= 0 and sizes[name] <= capacity and readers.get(name) == {(p, i + 1)})",
      "if i >= 0 and sizes[name] <= capacity and (p, i + 1) in readers.get(name, ()))",
      "l2_resident: a later reader does not cool an activation"),
    m("M149", GCOLL, "bus = min(bus, p.max_bus_bandwidth)", "pass", "nccl: the protocol's bus bandwidth cap ignored"),
    m("M150", GCOLL, "bandwidth, latency = bus * cfg.tree_bandwidth_share, p.base_latency + 2 * (n - 1) * p.hop_latency",
      "bandwidth, latency = bus * cfg.tree_bandwidth_share, p.base_latency + (n - 1) * p.hop_latency",
      "nccl tree: latency of the way up only"),
    m("M151", GCOLL, "best = CollectiveTime(algorithm, protocol, latency, bandwidth, time, steps / n * size)",
      "best = CollectiveTime(algorithm, protocol, latency, bandwidth, time, size)",
      "nccl: each GPU sends the whole buffer (link energy)"),
    m("M152", GPOWER, "mxu=(hw.sm.on_die or hw.sm.count) * hw.sm.area * scale_factor(hw, hw.sm.stated_at, \"area\"),",
      "mxu=hw.sm.count * hw.sm.area * scale_factor(hw, hw.sm.stated_at, \"area\"),", "gpu area: enabled SMs only"),
    m("M153", GPOWER, "mac={d: e * sm for d, e in hw.sm.mac_energy.items()},",
      "mac={d: e for d, e in hw.sm.mac_energy.items()},", "gpu energy: MAC energy not node-scaled"),
    m("M154", GCONFIG, "return self.bandwidth * (self.efficiency if self.write_efficiency is None else self.write_efficiency)",
      "return self.bandwidth * self.efficiency", "gpu hbm: write_efficiency ignored"),
    m("M155", GCONFIG, "staged = gemm.stages * (rows + cols) * gemm.k_tile * max(d.bytes for d in self.sm.tensor_macs_per_cycle)",
      "staged = (rows + cols) * gemm.k_tile * max(d.bytes for d in self.sm.tensor_macs_per_cycle)",
      "gpu config: the shared-memory check ignores the stages"),
    m("M156", SCHEMA, "return cost - min(self.overlap(kind), work_s, cost)", "return cost - min(self.overlap(kind), cost)",
      "call_overlap hides more than the call's work"),
    # -- the GPU model's review fixes (issue 17) -------------------------------------------
    m("M157", GEMM, "fetched = shape.batch * (a * tn / cn + b * tm / cm)",
      "fetched = shape.batch * (a * tn / cm + b * tm / cn)",
      "gemm ranking: a cluster's A shared along M, B along N (cm, cn swapped)", nth=1),
    m("M157b", GEMM, "fetched = shape.batch * (a * tn / cn + b * tm / cm)",
      "fetched = shape.batch * (a * tn / cm + b * tm / cn)",
      "gemm plan: a cluster's A shared along M, B along N (cm, cn swapped)", nth=2),
    m("M158", GEMM, "cm, cn = min(cluster[0], tm), min(cluster[1], tn)", "cm, cn = min(cluster[1], tm), min(cluster[0], tn)",
      "gemm: cluster shape read as N x M"),
    m("M159", GEMM, "w_m = min(tm, math.ceil(wave / w_n))", "w_m = min(tm, wave // w_n)",
      "gemm: a wave's rows of tiles rounded down"),
    m("M160", GEMM, "spill = partials > hw.l2.usable_capacity", "spill = partials > hw.l2.usable_capacity / 2",
      "gemm ranking: split-K partials spill beyond half the usable L2", nth=1),
    m("M160b", GEMM, "spill = partials > hw.l2.usable_capacity", "spill = partials > hw.l2.usable_capacity / 2",
      "gemm plan: split-K partials spill beyond half the usable L2", nth=2),
    m("M161", GEMM, "spill = partials > hw.l2.usable_capacity", "spill = partials >= hw.l2.usable_capacity",
      "gemm ranking: partials exactly filling the usable L2 spill", nth=1),
    m("M161b", GEMM, "spill = partials > hw.l2.usable_capacity", "spill = partials >= hw.l2.usable_capacity",
      "gemm plan: partials exactly filling the usable L2 spill", nth=2),
    m("M162", GEMM, "staged = shape.batch * (a * tn + b * tm)  # every block still holds its whole tiles",
      "staged = fetched", "gemm: shared memory receives a cluster's shared tile once"),
    m("M163", GEMM, "l2_read = fetched + partials", "l2_read = shape.batch * (a * tn + b * tm) + partials",
      "gemm: the L2 reads every block's tiles, multicast or not"),
    m("M164", GEMM, "return time_s, hbm_read + hbm_write, fetched",
      "return time_s, hbm_read + hbm_write, shape.batch * (a * tn + b * tm)",
      "gemm ranking: ties broken by shared-memory bytes, not the L2's"),
    m("M165", GENGINE, "+ Traffic.of(Level.VMEM, read=plan.smem_bytes, write=plan.smem_bytes))",
      "+ Traffic.of(Level.VMEM, read=plan.fetched, write=plan.fetched))", "gpu matmul: shared memory traffic at the L2's bytes"),
    m("M166", FIT, "return work + d - np.minimum(np.minimum(overlap, work), d)", "return work + d - np.minimum(overlap, d)",
      "calibrate fit: call_overlap hides more than a row's work"),
    m("M167", GCONFIG, "accumulators = rows * cols * 4  # fp32 (int32) accumulators, held in registers",
      "accumulators = rows * cols * 2", "gpu config: accumulators checked at 2 bytes"),
    m("M168", GCONFIG, "if accumulators > self.sm.registers:", "if accumulators >= self.sm.registers:",
      "gpu config: a tile exactly filling the registers refused"),
    m("M169", GENGINE, "elements += batch * op.k * op.n * math.ceil(m / tile[0])", "elements += batch * op.k * op.n",
      "gpu conversion: a narrow B converted once, not once per row of tiles"),
    m("M170", GENGINE, "elements += batch * m * op.k * math.ceil(op.n / tile[1])",
      "elements += batch * m * op.k * math.ceil(op.n / tile[0])", "gpu conversion: A's loads counted per tile row height"),
    m("M171", GENGINE, "latency = plan.time_s + max(0.0, convert_s - plan.compute_s)", "latency = plan.time_s + convert_s",
      "gpu conversion: never hidden by the tensor cores"),
    m("M172", GENGINE, "latency = plan.time_s + max(0.0, convert_s - plan.compute_s)", "latency = plan.time_s",
      "gpu conversion: never adds time"),
    m("M173", GENGINE, "return ops.VectorWork(elements * per_element, 0)", "return ops.VectorWork(elements, 0)",
      "gpu conversion: one op an element whatever convert_ops_per_element"),
    m("M174", GENGINE, "links = self.topology.send(transfer.sent_per_gpu, 0, 1).energy_j",
      "links = transfer.sent_per_gpu * self.energy.ici", "gpu collective: one link's energy, no switch"),
    m("M175", TOPO, "return Transfer(base.time_s + self.switch_latency, size, base.energy_j + size * self.switch_energy)",
      "return Transfer(base.time_s + self.switch_latency, size, base.energy_j)", "switch send: the switch's energy dropped"),
    m("M176", SWEEP_KEYS, "if tables and i + 1 < len(parts):", "if False:",
      "sweep axes: a table of sections' key read as a field"),
    m("M177", SWEEP_KEYS, "models, i = tables, i + 2", "models, i = tables, i + 1",
      "sweep axes: a table's key not skipped"),
    # -- flash attention (issue 18): the kernel's work, the pass, its two costs -------------
    m("M178", OPS, "keys = min(self.kv_len, -(-last // self.block) * self.block) if self.causal else self.kv_len",
      "keys = min(self.kv_len, (last // self.block) * self.block) if self.causal else self.kv_len",
      "flash: a causal query block's key blocks rounded down"),
    m("M179", OPS, "first = self.kv_len - self.q_len  # the first query's position", "first = 0",
      "flash: causal queries at the first key positions, not the last"),
    m("M180", OPS, "return sum(rows * -(-keys // self.block) for rows, keys in self._query_blocks())",
      "return sum(rows * (keys // self.block) for rows, keys in self._query_blocks())",
      "flash: key blocks a row passes rounded down"),
    m("M181", OPS, "return 2 * self.batch * self.group * self.pairs * self.dh",
      "return self.batch * self.group * self.pairs * self.dh", "flash: MACs of Q K^T only, not P V"),
    m("M182", OPS, "alu = 3 * scores + rescales * (2 + self.dh) + rows * self.dh",
      "alu = scores + rescales * (2 + self.dh) + rows * self.dh", "flash vector work: 1 ALU op a score, not 3"),
    m("M183", OPS, "alu = 3 * scores + rescales * (2 + self.dh) + rows * self.dh",
      "alu = 3 * scores + rows * (2 + self.dh) + rows * self.dh", "flash vector work: rescale once a row, not per key block"),
    m("M184", OPS, "alu = 3 * scores + rescales * (2 + self.dh) + rows * self.dh",
      "alu = 3 * scores + rescales * self.dh + rows * self.dh", "flash vector work: the running sum's 2 ops dropped"),
    m("M185", OPS, "alu = 3 * scores + rescales * (2 + self.dh) + rows * self.dh",
      "alu = 3 * scores + rescales * (2 + self.dh)", "flash vector work: the final 1 / sum scaling dropped"),
    m("M186", OPS, 'counts = (("exp", scores + rescales), ("reciprocal", rows))',
      'counts = (("exp", scores), ("reciprocal", rows))', "flash vector work: no exp for the rescale factors"),
    m("M187", OPS, 'counts = (("exp", scores + rescales), ("reciprocal", rows))',
      'counts = (("exp", scores + rescales),)', "flash vector work: the reciprocals dropped"),
    m("M188", FLASH, "if len(after) != 1 or not isinstance(after[0], ops.Softmax):",
      "if not isinstance(after[0], ops.Softmax):", "flash pass: scores read by another op fused anyway"),
    m("M189", FLASH, "if len(then) != 1 or not isinstance(then[0], ops.AttentionContext):",
      "if not isinstance(then[0], ops.AttentionContext):", "flash pass: probabilities read by another op fused anyway"),
    m("M190", FLASH, "q_len = op.causal_queries or op.m", "q_len = op.m",
      "flash pass: a causal group's query heads taken for queries"),
    m("M191", FLASHCOST, KV_KEEP,
      "kv_reads = 1 if (k.bytes + v.bytes) / op.batch <= sim.hw.vmem.capacity else q_blocks",
      "tpu flash: K and V kept when they fit all of VMEM, not a quarter"),
    m("M192", FLASHCOST, KV_KEEP,
      KV_KEEP.replace("<=", "<"),
      "tpu flash: K and V exactly filling a quarter of VMEM re-read"),
    m("M193", FLASHCOST, KV_KEEP,
      KV_KEEP.replace(" / op.batch", ""),
      "tpu flash: every KV head's K and V must fit, not one's"),
    m("M194", FLASHCOST, KV_KEEP,
      "kv_reads = 1", "tpu flash: K and V never re-read"),
    m("M195", FLASHCOST, "compute_s = max(array_s, vector_s)", "compute_s = array_s",
      "tpu flash: the online softmax never bounds the kernel"),
    m("M196", FLASHCOST, "steps = op.batch * op.group * op.tiles", "steps = op.batch * op.group",
      "tpu flash: one overlap step per head, not per tile"),
    m("M197", FLASHCOST, "keys = -(-op.pairs // op.q_len)  # keys per query row, on average over the blocks computed",
      "keys = op.kv_len", "tpu flash: the arrays compute the masked key blocks too"),
    m("M198", GENGINE, "tensor_s = math.ceil(tiles / sm.count) * (op.macs / tiles) / rate",
      "tensor_s = op.macs / (sm.count * rate)", "gpu flash: no wave quantisation"),
    m("M199", GENGINE, "q_blocks = -(-(op.group * op.q_len) // op.block)", "q_blocks = -(-op.q_len // op.block)",
      "gpu flash: a KV head's query heads not in its query blocks"),
    m("M200", GENGINE, "l2_read = q.bytes + (k.bytes + v.bytes) * q_blocks", "l2_read = q.bytes + k.bytes + v.bytes",
      "gpu flash: K and V read from L2 once, not per query block"),
    m("M201", GENGINE, "from_hbm = sum(b for b, hot in zip(per_input, warm) if not hot)", "from_hbm = sum(per_input)",
      "gpu flash: warm inputs read from HBM anyway", nth=1),
    m("M202", GENGINE, FLASH_VECTOR, "vector_s = work.alu / hw.vector_ops_per_second",
      "gpu flash: the special units never bound the softmax"),
    m("M203", GENGINE, FLASH_VECTOR, "vector_s = work.special / (sm.count * sm.special_ops_per_cycle * hw.clock)",
      "gpu flash: the ALUs never bound the softmax"),
    # -- fusion (issue 18): the pass, the fused op's work, its cost on both chip kinds -----------
    m("M204", FUSION, "return t.role is Role.ACTIVATION and readers.get(t.name) == {op.name}",
      "return t.role is Role.ACTIVATION", "fusion: an intermediate with a second reader fused anyway"),
    m("M205", FUSION, "if host.main.copies != op.copies or host.tail is None:", "if host.tail is None:",
      "fusion: ops of other layers (copies) fused"),
    m("M206", FUSION, "return passes * read <= read + h.bytes + passes * h.bytes", "return True",
      "fusion: a vector prologue fused even when it moves more bytes"),
    m("M207", FUSION, "and isinstance(op, ops.Activation) and op.function in _CUBLASLT)",
      "and isinstance(op, ops.Activation))", "fusion: gemm_activation takes any activation (silu)"),
    m("M208", FUSION, "if after and all(isinstance(g, ops.Gemm) and g.inputs[0].name == norm.outputs[0].name",
      "if after and any(isinstance(g, ops.Gemm) and g.inputs[0].name == norm.outputs[0].name",
      "fusion: a norm split when only some of its readers are GEMMs"),
    m("M209", FUSION, "if host is None or not isinstance(host.main, ops.MatMul) or not single(op.inputs[0], op) \\",
      "if host is None or not single(op.inputs[0], op) \\", "fusion: a cache write fused into a vector op"),
    m("M210", FUSED_IR, "return len(self.main.passes)", "return 1",
      "fused: a vector prologue run once, not once per pass of its consumer"),
    m("M211", FUSED_IR, "total = total + op.passes[-1].work(op.elements, op.rows)", "total = total + op.vector_work",
      "fused: a norm prologue recomputes the whole norm, not its normalise pass"),
    m("M212", FUSED_IR, "return self.main.vector_work + self.epilogue_work", "return self.epilogue_work",
      "fused: the main op's vector work left out"),
    m("M213", FUSED_IR, "where = tuple(tuple(index.get(t.name, -1) for t in op.tensors) for op in self.members)",
      "where = ()", "fused: the signature ignores where each member's tensors sit"),
    m("M214", FUSED_TPU, "compute = main.compute_s + epi_s if on_vector else max(main.compute_s, epi_s)",
      "compute = max(main.compute_s, epi_s)", "fused cost: a vector op's epilogue overlapped, not after its work"),
    m("M215", FUSED_TPU, "latency = main.latency_s + max(0.0, max(compute, memory) - max(main.compute_s, main_memory))",
      "latency = main.latency_s", "fused cost: the epilogue and extra reads always hidden"),
    m("M216", FUSED_TPU, "ch[level.value] = ch.get(level.value, 0.0) + seconds",
      "ch[level.value] = max(ch.get(level.value, 0.0), seconds)", "fused cost: extra reads overlap the main op's"),
    m("M217", FUSED_TPU, "extra += sim._stream_traffic((tensor,), (), placement, through_vmem=True, scale=scale).scaled(times)",
      "extra += sim._stream_traffic((tensor,), (), placement, through_vmem=False, scale=scale).scaled(times)",
      "tpu fused: extra inputs not through VMEM"),
    m("M218", FUSED_TPU, "extra += sim._stream_traffic((tensor,), (), placement, through_vmem=True, scale=scale).scaled(times)",
      "extra += sim._stream_traffic((tensor,), (), placement, through_vmem=True, scale=scale)",
      "tpu fused: a prologue's extra inputs read once, not once per pass"),
    m("M219", FUSED_TPU, "energy=main.energy + energy.op_energy(latency - main.latency_s, extra, vector=work),",
      "energy=main.energy,", "fused cost: the epilogue's energy left out"),
    m("M220", FUSED_IR, "out = Tensor(final.name, shape, final.dtype, final.role, copies=final.copies)",
      "out = Tensor(final.name, shape, self.main.outputs[0].dtype, final.role, copies=final.copies)",
      "fused cost: the group's output written at the main op's dtype (a bf16 GEMM into an int8 cache)"),
    m("M221", FUSED_TPU, "held = (held[0], held[1] + epi_s if on_vector else max(held[1], epi_s))",
      "held = (held[0], held[1])", "fused cost: the held vector unit's busy time without the epilogue"),
    m("M222", FUSED_GPU, "from_hbm += 0.0 if hot else tensor.bytes * times", "from_hbm += tensor.bytes * times",
      "gpu fused: warm extra inputs read from HBM anyway"),
    m("M223", FUSED_GPU, "work.special / (hw.sm.count * hw.sm.special_ops_per_cycle * hw.clock))", "0.0)",
      "gpu fused: the special-function units never bound the epilogue"),
    m("M224", FUSED_GPU,
      "extra_ch = {Level.HBM: from_hbm / hw.hbm.achievable_bandwidth, Level.CMEM: read / hw.l2.achievable_bandwidth}",
      "extra_ch = {Level.CMEM: read / hw.l2.achievable_bandwidth}", "gpu fused: extra HBM reads take no HBM time"),
    # the overlap scheduler (issue 18): tests/test_schedule.py, test_engine.py
    m("M225", SCHEDULE, 'SEQUENCER = {"mxu": "core", "vpu": "core"}', "SEQUENCER = {}",
      "schedule: the MXUs and the vector unit run ops of their own at once"),
    m("M226", SCHEDULE, "at = previous_start", "at = begin",
      "schedule: prefetch issued when its op starts (no fetch ahead)"),
    m("M227", SCHEDULE, "done = at + seconds - fetched.get(resource, 0.0)", "done = at + seconds",
      "schedule: prefetched bytes moved again"),
    m("M228", SCHEDULE, "stop = finish + fixed", "stop = finish", "schedule: the fill and launch time dropped"),
    m("M229", SCHEDULE, "for j in (*needs, holder.get(lane, -1)):", "for j in needs:",
      "schedule: a unit runs two ops at once"),
    m("M230", SCHEDULE, "for j in (*needs, holder.get(lane, -1)):", "for j in (holder.get(lane, -1),):",
      "schedule: an op starts before its inputs are made"),
    m("M231", SCHEDULE, "span = (schedule.end[i] - schedule.start[i]) / cost.copies if i in chain else 0.0",
      "span = cost.latency_s", "static power charged over every op's own latency"),
    m("M232", SCHEDULE, "fetched = min(t.bytes, room)", "fetched = t.bytes", "prefetch not limited by the buffer"),
    m("M236", COMPILER_CFG, "flash_kv_share: float = 0.25", "flash_kv_share: float = 0.5",
      "flash kernels keep K and V in half of VMEM, not a quarter"),
    m("M237", GEMM, "half = hw.l2.resident_capacity", "half = hw.l2.usable_capacity",
      "gemm ranking: an operand stays in L2 up to all of its usable capacity, not the resident share", nth=1),
    m("M237b", GEMM, "half = hw.l2.resident_capacity", "half = hw.l2.usable_capacity",
      "gemm plan: an operand stays in L2 up to all of its usable capacity, not the resident share", nth=2),
    m("M238", "archsim/hw/matrix/cim.py", "compute_cycles=cycles if ratio == 1 else math.ceil(cycles / ratio),",
      "compute_cycles=cycles,", "cim: the cores' clock ignored"),
    m("M239", "archsim/config/schema.py", "return self.cim.cores * self.cim.macs_per_cycle[dtype] * self.cim.clock_ratio",
      "return self.cim.cores * self.cim.macs_per_cycle[dtype]", "cim: the peak at the chip's clock whatever the cores'"),
    m("M240", LEAKAGE, "per_area = {f.name: getattr(area, f.name) * (leak.sram if f.name in SRAM_COMPONENTS else leak.logic)",
      "per_area = {f.name: getattr(area, f.name) * leak.logic", "leakage: SRAM at the logic density"),
    m("M241", LEAKAGE, "return StaticPower(**per_area, always_on=leak.always_on)", "return StaticPower(**per_area)",
      "leakage: always-on power dropped"),
    m("M242", SYS, "loaded = b_reads  # the stationary tiles, each shifted into the PEs' weight registers", "loaded = 0.0",
      "systolic: weight loads into the PEs cost no energy"),
    m("M243", SYS, "loaded = b_reads  # the stationary tiles, each shifted into the PEs' weight registers",
      "loaded = b_bytes",
      "systolic: a split stream's replicated weight tiles loaded once"),
    m("M244", "archsim/ir/transformer.py", "expected = local * (1 - (1 - k / e) ** (tokens * ranks))",
      "expected = local * (1 - (1 - k / e) ** tokens)", "moe: a chip's experts see only its own tokens under EP"),
    m("M245", TOPO, "time = max(hops) * self.alpha + max(inject, spread)", "time = max(hops) * self.alpha + inject",
      "all-to-all: link contention ignored"),
    m("M246", "archsim/workloads/hf.py", "dense = [i for i in range(n) if i in only or (i + 1) % step]",
      "dense = [i for i in range(n) if i in only]", "qwen-moe: decoder_sparse_step ignored"),
    m("M247", "archsim/ir/transformer.py", "keys = kept = min(tokens.kv_len, shape.window + tokens.q_len - 1)",
      "keys = kept = min(tokens.kv_len, shape.window)", "sliding window: several new queries read one window"),
    m("M248", "archsim/ir/transformer.py", "kept = min(tokens.kv_len, shape.window)", "kept = tokens.kv_len",
      "sliding window: a long prompt's cache not capped at the window"),
    m("M249", "archsim/hw/placement.py", "need[name] = max(need.get(name, footprint), footprint)",
      "need[name] = min(need.get(name, footprint), footprint)", "placement ladder: an activation enters at its smallest op"),
    m("M250", "archsim/sim/serving.py", "ttft = wall.get(PRELOAD_PHASE, 0.0) + wall[generation.first_token_phase]",
      "ttft = wall[generation.first_token_phase]", "serving: TTFT without the CMEM preload"),
    m("M251", "archsim/sim/serving.py", "tpot = sum(wall[name] for name in generation.step_phases) / steps if steps else None",
      "tpot = sum(wall[name] for name in generation.step_phases) / (steps + 1) if steps else None",
      "serving: TPOT over one step too many"),
    m("M252", "archsim/gpu/gemm.py", "a_reads = 0 if shape.a_warm else 1 if a <= half else np.ceil(tn / w_n)",
      "a_reads = 0 if shape.a_warm else 1", "GPU kernel ranking: a large A read once"),
    m("M253", "archsim/workloads/llm_schedules_inputs.py", "return 1.0 + float(np.dot(np.arange(p.size), p))",
      "return float(np.dot(np.arange(p.size), p))", "speculation: the verifier's own token not counted"),
    m("M254", "archsim/workloads/llm_schedules_inputs.py",
      "reach = np.concatenate(([1.0], np.cumprod(rates)))  # P(accepted >= j)",
      "reach = np.concatenate(([1.0], rates))  # P(accepted >= j)", "speculation: acceptance not chained"),
    m("M255", "archsim/workloads/llm_schedules_lower.py",
      "verify = [Segment(Tokens(b, q, context + q, kv_cache=True, causal=True))]",
      "verify = [Segment(Tokens(b, q, context, kv_cache=True, causal=True))]",
      "speculation: the verify pass does not see its own keys"),
    m("M256", "archsim/workloads/llm_schedules_lower.py",
      "mean = context + (k + 1) / 2  # draft step i (0..k-1) attends to context + i + 1 keys",
      "mean = context  # draft step i (0..k-1) attends to context + i + 1 keys",
      "speculation: draft steps at the round's first context"),
    m("M257", "archsim/sim/serving.py",
      "steps = generation.step_tokens or sum(p.repeat for p in result.workload.phases if p.name in generation.step_phases)",
      "steps = sum(p.repeat for p in result.workload.phases if p.name in generation.step_phases)",
      "serving: a speculative round's TPOT over rounds, not tokens"),
    m("M233", COMPILER_CFG, '"xla": ProfileDefaults(("gemm_epilogue", "vector_chain"), True, False, 512, True, 0.5),',
      '"xla": ProfileDefaults(("gemm_epilogue", "vector_chain"), True, False, 512, True, 1.0),',
      "xla profile: prefetch into all of VMEM"),
    m("M234", COMPILER_CFG, '"xla": ProfileDefaults(("gemm_epilogue", "vector_chain"), True, False, 512, True, 0.5),',
      '"xla": ProfileDefaults(("gemm_epilogue", "vector_chain"), True, True, 512, True, 0.5),',
      "xla profile: decode steps run flash attention too"),
    m("M235", FLASH, "if not isinstance(op, ops.AttentionScore) or (not decode and op.causal_queries == 1):",
      "if not isinstance(op, ops.AttentionScore):", "flash pass: decode steps flashed whatever the profile"),
)


# -- the copy ------------------------------------------------------------------------------

def make_copy(dest: Path, ref: str | None, overlay: tuple[str, ...]) -> None:
    dest.mkdir(parents=True)
    if ref is None:  # the working tree's tracked files
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
        for name in filter(None, files.decode().split("\0")):
            src = ROOT / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:
        archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    for name in overlay:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)


def env_for(copy: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", PYTHONWARNINGS="ignore",
               PYTHONHASHSEED="0")
    env.pop("PYTHONSTARTUP", None)
    return env


def check_imports(copy: Path) -> None:
    out = subprocess.run([sys.executable, "-c", "import archsim, tests.conftest as c; print(archsim.__file__); print(c.ROOT)"],
                         cwd=copy, env=env_for(copy), capture_output=True, text=True)
    paths = out.stdout.split()
    if out.returncode or len(paths) != 2 or not all(Path(p).resolve().is_relative_to(copy.resolve()) for p in paths):
        sys.exit(f"the copy in {copy} is not what gets imported: {out.stdout!r} {out.stderr[-2000:]!r}")


# -- one mutant ----------------------------------------------------------------------------

@dataclass
class Outcome:
    id: str
    file: str
    what: str
    status: str  # killed, survived, not applied
    line: int = 0
    seconds: float = 0.0
    by: str = ""  # the first failing test, or why not applied
    tests: list[str] = field(default_factory=list)


def locate(text: str, mutant: Mutant) -> tuple[int, str] | str:
    """The index of the line whose stripped text is the original (the one, or the n-th), or
    why there is none."""
    hits = [i for i, line in enumerate(text.splitlines()) if line.strip() == mutant.original.strip()]
    if mutant.nth:
        return (hits[mutant.nth - 1], "") if len(hits) >= mutant.nth else f"line found {len(hits)} times, not {mutant.nth}"
    if len(hits) == 1:
        return hits[0], ""
    return "line not found" if not hits else f"line found {len(hits)} times"


def tests_for(mutant: Mutant, suite: str, root: Path = ROOT) -> list[str]:
    tests = [] if suite == "existing" else list(VALUE_TESTS)
    if suite in ("related", "existing"):
        for prefix, extra in RELATED.items():
            if mutant.file.startswith(prefix):
                tests += [t for t in extra if t not in tests and (root / t).is_file()]
    return tests


def run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[bool, str, float]:
    """(passed, first failure, seconds) of ``pytest -x`` over ``tests`` in the copy."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", "-rf", *tests]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=copy, env=env_for(copy), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # this run's own process group only
        proc.communicate()
        return False, f"timeout after {timeout:.0f} s", time.perf_counter() - start
    seconds = time.perf_counter() - start
    if proc.returncode == 0:
        return True, "", seconds
    failed = [line.split(" - ")[0].removeprefix("FAILED ").removeprefix("ERROR ")
              for line in out.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return False, failed[0] if failed else out.strip().splitlines()[-1][:200], seconds


def try_mutant(mutant: Mutant, copy: Path, suite: str, timeout: float) -> Outcome:
    path = copy / mutant.file
    text = path.read_text()
    where = locate(text, mutant)
    if isinstance(where, str):
        return Outcome(mutant.id, mutant.file, mutant.what, "not applied", by=where)
    index, _ = where
    lines = text.splitlines(keepends=True)
    line = lines[index]
    indent = line[: len(line) - len(line.lstrip())]
    ending = line[len(line.rstrip("\r\n")):]
    lines[index] = indent + mutant.replacement + ending
    tests = tests_for(mutant, suite, copy)
    path.write_text("".join(lines))
    try:
        passed, failure, seconds = run_tests(copy, tests, timeout)
    finally:
        path.write_text(text)
    return Outcome(mutant.id, mutant.file, mutant.what, "survived" if passed else "killed", index + 1,
                   seconds, failure, tests)


# -- the run -------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", default="HEAD", help="commit to copy (default HEAD)")
    parser.add_argument("--worktree", action="store_true", help="copy the working tree's tracked files instead")
    parser.add_argument("--overlay", nargs="*", default=list(OVERLAY),
                        help="files copied from the working tree over the copy (default: the value tests and "
                             "the GPU tests' files)")
    parser.add_argument("--only", nargs="*", default=None, help="mutant ids to run")
    parser.add_argument("--suite", choices=("values", "related", "existing"), default="related",
                        help="values: the value tests; related (default): then the area's existing tests; "
                             "existing: the area's existing tests alone (what the mutants faced before)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant")
    parser.add_argument("--list", action="store_true", help="list the mutants and whether each applies")
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the copies")
    args = parser.parse_args(argv)

    mutants = [mu for mu in MUTANTS if args.only is None or mu.id in args.only]
    work = Path(tempfile.mkdtemp(prefix="archsim-mutation-"))
    ref = None if args.worktree else args.ref
    overlay = tuple(o for o in args.overlay if (ROOT / o).is_file())
    try:
        copies = [work / f"copy{j}" for j in range(max(1, args.jobs))]
        for copy in copies:
            make_copy(copy, ref, overlay)
        check_imports(copies[0])
        source = "working tree" if ref is None else subprocess.run(
            ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        print(f"copy of {source} (+ {', '.join(overlay) or 'nothing'} from the working tree) in {work}")
        if args.list:
            for mu in mutants:
                where = locate((copies[0] / mu.file).read_text(), mu)
                state = f"line {where[0] + 1}" if not isinstance(where, str) else where
                print(f"{mu.id}  {mu.file:32s} {state:20s} {mu.what}")
            return 0
        union = sorted({t for mu in mutants for t in tests_for(mu, args.suite, copies[0])}, key=lambda t: (t not in VALUE_TESTS, t))
        passed, failure, seconds = run_tests(copies[0], union, args.timeout * 4)
        print(f"baseline: {len(union)} test files {'pass' if passed else 'FAIL: ' + failure} ({seconds:.1f} s)")
        if not passed:
            return 2
        free: Queue[Path] = Queue()
        for copy in copies:
            free.put(copy)

        def one(mu: Mutant) -> Outcome:
            copy = free.get()
            try:
                outcome = try_mutant(mu, copy, args.suite, args.timeout)
            finally:
                free.put(copy)
            print(f"  {outcome.id} {outcome.status:11s} {outcome.seconds:6.1f} s  {outcome.by}", flush=True)
            return outcome

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(copies)) as pool:
            outcomes = list(pool.map(one, mutants))
        elapsed = time.perf_counter() - start
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'id':4s}  {'file:line':36s} {'status':11s} {'s':>6s}  {'mutation':58s} killed by / reason")
    for o in outcomes:
        where = f"{o.file.removeprefix('archsim/')}:{o.line}" if o.line else o.file.removeprefix("archsim/")
        print(f"{o.id:4s}  {where:36s} {o.status:11s} {o.seconds:6.1f}  {o.what[:58]:58s} {o.by}")
    applied = [o for o in outcomes if o.status != "not applied"]
    survived = [o for o in applied if o.status == "survived"]
    print()
    print(f"{len(applied)} of {len(outcomes)} mutants applied; {len(applied) - len(survived)} killed, "
          f"{len(survived)} survived: surviving fraction {len(survived)}/{len(applied)}"
          f" = {len(survived) / max(1, len(applied)):.1%}; {elapsed:.0f} s with {len(copies)} job(s)")
    not_applied = [o.id for o in outcomes if o.status == "not applied"]
    if not_applied:
        print(f"not applied (the line is not in the copy): {', '.join(not_applied)}")
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
