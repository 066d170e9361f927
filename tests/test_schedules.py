"""Feature-caching schedules for DiT: counts against the ICC paper and code, and behaviour."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.config.loader import parse_overrides
from archsim.ir import ops
from archsim.ir.summary import summarize
from archsim.ir.tensor import Role
from archsim.workloads import load_workload
from archsim.workloads.dit import DiTWorkload
from tests.conftest import TPUV4I, WORKLOADS, run_cli


def dit(schedule=None, steps=2, resolution=256, cfg=False):
    return DiTWorkload(kind="dit", name="dit", resolution=resolution, steps=steps, cfg=cfg, schedule=schedule).build(None)


def phase_macs(workload):
    return {p.name: p.graph.macs for p in workload.phases}


# A small DiT for counts by hand: 2 blocks of hidden 64 with 4 heads; 64 x 64 images, an 8 x 8
# latent of 4 channels in 2 x 2 patches: 16 tokens; batch 1, no guidance; bf16 (2 bytes).
DEPTH, D, HEADS, T = 2, 64, 4, 16
P_IN, P_OUT = 2 * 2 * 4, 2 * 2 * 8  # a patch's latent values in; out, with the learned sigma
# One network evaluation's MACs, from DiT's models.py, layer by layer:
EMBED = T * P_IN * D + 256 * D + D * D  # patch embedding; timestep MLP (256 -> D -> D)
FINAL = D * 2 * D + T * D * P_OUT  # final layer's adaLN (D -> 2D) and linear
ADALN = D * 6 * D  # a block's adaLN on the one conditioning row
ATTN = 4 * T * D * D + 2 * T * T * D  # q, k, v, out-projection; Q K^T and P V
MLP = 2 * T * D * 4 * D  # fc1 and fc2
FULL = EMBED + FINAL + DEPTH * (ADALN + ATTN + MLP)
REUSE = EMBED + FINAL + DEPTH * ADALN  # blocks apply cached outputs: only their adaLN runs
OUT = T * D * 2  # one block's attention (or MLP) output, bytes


def small(schedule=None, steps=6, **kwargs):
    return DiTWorkload(kind="dit", name="dit", family="S", depth=DEPTH, hidden=D, heads=HEADS, resolution=64,
                       steps=steps, schedule=schedule, **kwargs)


def labels(spec):
    return [p.label for p in spec.plans()]


def phases(spec):
    return {p.name: p for p in summarize(spec.build(None)).phases}


def test_fora_chooses_steps_as_its_code():
    # FORA src/models.py: full when step == numstep - 1 or step % N == 0, the step counting
    # down. 6 steps, N = 3: 5 (the first), 4, 3 (full), 2, 1, 0 (full)
    spec = small("reuse:period=3", 6)
    assert labels(spec) == ["full+outputs cache", "reuse", "full+outputs cache", "reuse", "reuse", "full"]
    assert spec.build(None).macs == 3 * FULL + 3 * REUSE
    by_name = phases(spec)
    assert by_name["full+outputs cache"].repeat == 2
    assert by_name["full+outputs cache"].cache_bytes_written == DEPTH * 2 * OUT  # attn and MLP outputs
    assert by_name["reuse"].cache_bytes_read == DEPTH * 2 * OUT and by_name["reuse"].cache_bytes_written == 0
    assert by_name["full"].cache_bytes_written == 0  # the last step: nothing reads its outputs
    # N = 2: step 5 is full because it is the first, though 5 % 2 != 0
    assert [p.kind for p in small("reuse:period=2", 6).plans()] == ["full", "full", "reuse", "full", "reuse", "full"]
    assert small("reuse:period=2", 6).build(None).macs == 4 * FULL + 2 * REUSE


@pytest.mark.parametrize("resolution, full, cached", [(256, 118.62, 23.50), (512, 524.54, 144.03)])
def test_icc_step_macs_match_the_icc_code(resolution, full, cached):
    # docs/sources/papers.md#icc: per forward, full vs cached (rank 128), from the ICC repo's
    # formulas
    macs = phase_macs(dit("icc", resolution=resolution))
    assert abs(macs["full+icc cache"] / 1e9 / full - 1) < 0.005
    assert abs(macs["icc r128"] / 1e9 / cached - 1) < 0.005


def test_icc_parameters_and_cache():
    plain, icc = summarize(dit()), summarize(dit("icc"))
    assert abs((icc.params - plain.params) / 1e6 - 74.3) < 0.1  # 28 blocks x 128 x (4 x 2304 + 2 x 5760)
    assert abs(icc.cache_bytes / 1e6 - 264.2) < 0.5  # q/k/v share one input: 16 x 1152 per token, bf16
    full, cached = (p.graph for p in icc_workload().phases)
    writes = [op for op in full.ops() if isinstance(op, ops.CacheWrite)]
    assert sum(op.written_bytes * op.copies for op in writes) == icc.cache_bytes  # each entry written once
    reads = {t.name for op in cached.ops() for t in op.inputs if t.role is Role.FEATURE_CACHE}
    assert {t.name for op in writes for t in op.outputs} == reads  # written at full steps, read at cached


def icc_workload():
    return dit("icc")


# ToCa and DuCa have no such setting: their code resets the period to 2 in the steps from 20%
# to 40% of the countdown, and their full steps compute the attention map.
@pytest.mark.parametrize("schedule", ["none", "icc:period=1", "reuse:period=1", "icc:period=1,rank=64",
                                      "taylorseer:interval=1"])
def test_period_one_and_none_equal_plain_dit(schedule):
    plain = dit(None, steps=5)
    scheduled = dit(schedule, steps=5)
    assert [(p.name, p.repeat) for p in scheduled.phases] == [("full", 5)]
    assert [op for op in scheduled.phases[0].graph.ops()] == [op for op in plain.phases[0].graph.ops()]
    assert summarize(scheduled).as_dict() == summarize(plain).as_dict() | {"name": "dit"}


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(1, 8), st.integers(1, 8), st.sampled_from(["icc", "reuse"]))
def test_larger_period_never_costs_more_macs(steps, p1, p2, kind):
    small, large = sorted((p1, p2))
    assert dit(f"{kind}:period={large}", steps).macs <= dit(f"{kind}:period={small}", steps).macs


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 512), st.integers(1, 512))
def test_larger_rank_never_costs_fewer_macs(r1, r2):
    small, large = sorted((r1, r2))
    assert dit(f"icc:rank={large}", 4).macs >= dit(f"icc:rank={small}", 4).macs


def test_per_layer_ranks_and_layer_subsets():
    only_mlp = phase_macs(dit("icc:layers=[fc1,fc2]"))
    every = phase_macs(dit("icc"))
    assert only_mlp["icc r128"] > every["icc r128"]  # attention projections run in full
    ranked = dit({"name": "icc", "rank": {"q": 64, "k": 64, "v": 64, "o": 64, "fc1": 256, "fc2": 256}})
    assert "icc r64/256" in phase_macs(ranked)


def test_icc_macs_against_35_step_ddim(capsys):
    """ICC's MACs over step counts and periods, relative to 35-step DDIM without caching, so the
    paper's headline ("over 45% less computation than 35-step DDIM") can be located."""
    macs = phase_macs(dit("icc"))
    full, cached = macs["full+icc cache"], macs["icc r128"]
    ddim35 = 35 * full
    lines = ["steps  " + "  ".join(f"p={p:<5d}" for p in range(1, 6))]
    for steps in (20, 25, 35, 50):
        cells = []
        for period in range(1, 6):
            n_full = math.ceil(steps / period)
            closed = n_full * full + (steps - n_full) * cached
            assert dit(f"icc:period={period}", steps).macs == closed
            cells.append(f"{1 - closed / ddim35:+6.1%}")
        lines.append(f"{steps:5d}  " + "  ".join(cells))
    with capsys.disabled():
        print("\nICC computation saved vs 35-step DDIM (rank 128, 256x256):\n" + "\n".join(lines))
    # 35 steps at period 3: 12 full + 23 cached steps, 52.7% less than 35 full steps: over 45%
    assert 1 - (12 * full + 23 * cached) / ddim35 > 0.45


def test_bad_schedules_are_clear_errors():
    for text, message in [("icc:period=0", "schedule.period"), ("nope", "unknown schedule 'nope'"),
                          ("icc:rank", "expected key=value"), ("reuse:perod=2", "schedule.perod: unknown key")]:
        proc = run_cli("workload", str(WORKLOADS / "dit_xl_2.yaml"), "--schedule", text)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert message in proc.stderr, (text, proc.stderr)
    proc = run_cli("workload", str(WORKLOADS / "llama2_7b.yaml"), "--schedule", "icc")
    assert proc.returncode == 2 and "schedules apply only to diffusion transformers (kind: dit or diffusion_transformer); this workload is kind: llm" in proc.stderr


def test_compare_schedules_runs_every_builtin(tmp_path):
    proc = run_cli("compare-schedules", str(TPUV4I), "--workload", str(WORKLOADS / "dit_xl_2.yaml"),
                   "--wset", "steps=6", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for name in ("none", "icc", "reuse", "toca", "duca", "taylorseer", "speca", "l2c"):
        assert name in proc.stdout, name
    for f in ("schedules.csv", "schedules.parquet", "schedules.png", "schedules.svg"):
        assert (tmp_path / f).is_file()
    run = run_cli("run", str(TPUV4I), str(WORKLOADS / "dit_xl_2.yaml"), "--schedule", "icc", "--wset", "steps=4")
    assert run.returncode == 0 and "icc r128" in run.stdout


def test_bundled_workload_file_takes_a_schedule():
    w = load_workload(WORKLOADS / "dit_xl_2.yaml", parse_overrides(["schedule=reuse:period=3"]))
    # FORA's rule on 50 steps: the first (49) and the 17 with countdown % 3 == 0 (48, 45, ..., 0)
    # in full; 49 is followed by another full step and 0 is the last: neither writes a cache
    assert [(p.name, p.repeat) for p in w.phases] == [("full", 2), ("full+outputs cache", 16), ("reuse", 32)]


def test_every_builtin_saves_work_and_states_its_cache():
    plain = summarize(dit(None, steps=20))
    for name in ("reuse", "icc", "toca", "duca", "taylorseer", "speca", "l2c"):
        s = summarize(dit(name, steps=20))
        assert s.macs < plain.macs, name
        assert s.cache_bytes > 0, name  # the price: feature-cache capacity and traffic
        cached = [p for p in s.phases if not p.name.startswith("full")]
        assert cached and all(p.cache_bytes_read > 0 for p in cached), name


def test_taylorseer_stores_order_plus_one_tensors_per_layer():
    d, tokens = 1152, 256
    for order in (1, 2, 3):
        s = summarize(dit(f"taylorseer:order={order},interval=3", steps=12))
        assert s.cache_bytes == 28 * 2 * (order + 1) * tokens * d * 2  # blocks x (attn, mlp) x (m+1), bf16


def mlp_on(tokens):  # the MLP's GEMMs on some tokens
    return 2 * tokens * D * 4 * D


def test_toca_chooses_blocks_and_tokens_as_its_code():
    # DiT-ToCa cal_type / force_scheduler, 10 steps, N = 3, R = 0.07, ToCa-ddim50, by hand:
    # countdown 9 (first): full, threshold round(3 / (1.4 - 0.8 x 0.9)) = 4; 8: 8 % 4 == 0 full,
    # threshold round(3 / 0.76) = 4; 7, 6, 5: remainders 3, 2, 1: cached; 4: full at block 0,
    # whose reset threshold round(3 / 1.08) = 3 leaves 4 % 3 = 1 to block 1: cached; 3: full at
    # block 0 (3 % 3), threshold 2 (20-40% of the countdown: 2 and 3), block 1 cached; 2: full;
    # 1: cached; 0: full. MLP tokens int(0.07 x (0.8 + 0.4 block) x (3 - 0.4 countdown) x 2.5 x 16).
    spec = small("toca", 10)
    assert labels(spec) == ["full (toca)", "full+toca cache", "toca mlp 0-1 (0 tokens)",
                            "toca mlp 0-1 (1-2 tokens)", "toca mlp 0-1 (2-3 tokens)", "toca full 0, mlp 1 (4 tokens)",
                            "toca full 0, mlp 1 (6 tokens)", "full+toca cache", "toca mlp 0-1 (5-8 tokens)",
                            "full (toca)"]
    w = spec.build(None)
    # attention is never recomputed in a cached block; every block runs its adaLN
    assert w.macs == (4 * FULL + 6 * (EMBED + FINAL) + 4 * DEPTH * ADALN + 2 * (2 * ADALN + ATTN + MLP)
                      + mlp_on(1 + 2 + 2 + 3 + 5 + 8 + 4 + 6))
    s = summarize(w)
    block_caches = 2 * OUT + T * T * 2 + T * 4  # attn and MLP outputs, the map (bf16), counters (int32)
    assert s.cache_bytes == DEPTH * block_caches
    by_name = phases(spec)
    assert by_name["full+toca cache"].cache_bytes_written == DEPTH * (2 * OUT + T * T * 2)
    assert by_name["full (toca)"].cache_bytes_written == 0
    # scoring a cached block's tokens: the map summed per key, 11 adjustments per token, and a
    # bitonic sort of 16 scores: 4 x 5 / 2 stages, 2 operations per score per stage
    cached = "toca mlp 0-1 (1-2 tokens)"
    assert op_named(w, cached, "score.map_sum").vector_work.alu == T * T
    assert op_named(w, cached, "score.adjusted").vector_work.alu == 11 * T
    assert op_named(w, cached, "score.argsort").vector_work.alu == 2 * 10 * T
    assert op_named(w, cached, "toca1.mlp.fc1").m == 2  # block 1's two chosen tokens
    head_mean = op_named(w, "full (toca)", "attn_map")  # the heads' mean of the softmax
    assert (head_mean.copies, head_mean.vector_work.alu) == (DEPTH, HEADS * T * T)


def test_duca_skips_every_block_in_its_aggressive_steps():
    # DuCa-DiT cal_type: ToCa's rule, an even remainder skips the block ('aggressive': models.py
    # runs nothing, and block 27 returns the blocks' output of the step before). 10 steps as in
    # the ToCa test: countdown 6 has remainder 2: skipped; R = 0.05 for the tokens.
    spec = small("duca", 10)
    assert labels(spec) == ["full (duca)", "full+duca cache", "duca mlp 0-1 (0 tokens) +out cache",
                            "duca skipped 0-1", "duca mlp 0-1 (1-2 tokens)", "duca full 0, mlp 1 (3 tokens)",
                            "duca full 0, mlp 1 (4 tokens)", "full+duca cache", "duca mlp 0-1 (4-6 tokens)",
                            "full (duca)"]
    w = spec.build(None)
    assert w.macs == (4 * FULL + 6 * (EMBED + FINAL) + 3 * DEPTH * ADALN + 2 * (2 * ADALN + ATTN + MLP)
                      + mlp_on(1 + 2 + 3 + 4 + 4 + 6))  # the skipped step runs no adaLN either
    by_name = phases(spec)
    assert by_name["duca skipped 0-1"].macs == EMBED + FINAL
    assert by_name["duca skipped 0-1"].cache_bytes_read == OUT  # the blocks' output, whole
    # the blocks' output; each block steps its counter and the shared layer counter (models.py
    # calls cache_cutfresh in every block: layer_index += 1 there too)
    assert by_name["duca mlp 0-1 (0 tokens) +out cache"].cache_bytes_written == OUT + 2 * DEPTH * T * 4
    # a shared layer counter besides ToCa's per block, and the blocks' output
    assert summarize(w).cache_bytes == DEPTH * (2 * OUT + T * T * 2 + T * 4) + T * 4 + OUT


def op_named(workload, phase, suffix):
    graph = next(p.graph for p in workload.phases if p.name == phase)
    return next(op for op in graph.ops() if op.name.endswith(suffix))


def test_taylorseer_chooses_steps_and_orders_as_its_code():
    # TaylorSeer-DiT cal_type: full while step > n - 2 - 1 (the first two steps) or when the
    # counter of forecasts reaches interval - 1. 7 steps, interval 3: F F T T F T T. The f-th
    # full step keeps min(f - 1, order) differences (derivative_approximation).
    spec = small("taylorseer:interval=3,order=2", 7)
    assert labels(spec) == ["full+taylor0 cache", "full+taylor1 cache", "taylor m1", "taylor m1",
                            "full+taylor2 cache", "taylor m2", "taylor m2"]
    w = spec.build(None)
    assert w.macs == 3 * FULL + 4 * REUSE  # a forecast runs no GEMM but the adaLN
    by_name = phases(spec)
    assert by_name["full+taylor0 cache"].cache_bytes_written == DEPTH * 2 * OUT  # term 0 of attn and MLP
    assert by_name["full+taylor1 cache"].cache_bytes_read == DEPTH * 2 * OUT  # the old term 0
    assert by_name["full+taylor1 cache"].cache_bytes_written == DEPTH * 2 * 2 * OUT
    assert by_name["full+taylor2 cache"].cache_bytes_written == DEPTH * 2 * 3 * OUT
    assert by_name["taylor m2"].cache_bytes_read == DEPTH * 2 * 3 * OUT
    assert summarize(w).cache_bytes == DEPTH * 2 * 3 * OUT  # terms 0..2 per block and part
    # the forecast sum of d_k x^k / k!: a multiply-add per term above 0, per element
    for phase, m in (("taylor m1", 1), ("taylor m2", 2)):
        forecast = op_named(w, phase, "attn.forecast")
        assert (forecast.copies, forecast.vector_work.alu) == (DEPTH, 2 * m * T * D)
    refresh = op_named(w, "full+taylor2 cache", "mlp.taylor_refresh")  # (f - old) / distance per term
    assert (refresh.copies, refresh.vector_work.alu) == (DEPTH, 2 * 2 * T * D)


def test_taylorseer_readme_compression():
    # TaylorSeer-DiT.md: interval 4, max order 4 on 50 DDIM steps, "3.57x computation
    # compression": 14 full steps (0, 1, 5, ..., 49), 50 / 14 = 3.57
    plans = DiTWorkload(kind="dit", name="dit", steps=50, schedule="taylorseer").plans()
    assert [k for k, p in enumerate(plans) if p.kind == "full"] == [0, *range(1, 50, 4)]
    assert round(50 / 14, 2) == 3.57


def test_speca_chooses_steps_and_checks_as_its_code():
    # speca-dit cal_type: a full step is always followed by a forecast; otherwise full while
    # step > n - 3 - 1; checks from the third forecast after a full step (counter >= 2); a chain
    # ends after 5 forecasts or after a failed check. Acceptance 0.8: 3 + round(0.8 + 0.64) = 4.
    spec = small("speca", 12)
    assert labels(spec) == ["full+taylor0 cache", "taylor m0", "full+taylor1 cache", "taylor m1", "taylor m1",
                            "speca m1 verify1", "speca m1 verify1", "full+taylor2 cache", "taylor m2", "taylor m2",
                            "speca m2 verify1", "speca m2 verify1"]
    w = spec.build(None)
    # a check runs the last block's attention and MLP (its adaLN is the forecast's)
    assert w.macs == 3 * FULL + 9 * REUSE + 4 * (ATTN + MLP)
    error = op_named(w, "speca m1 verify1", "relative_l1")  # |x - y| / (|y| + eps), averaged
    assert (error.copies, error.vector_work.alu) == (1, 6 * T * D)
    clone = op_named(w, "speca m1 verify1", "input_clone")  # full_x = x.clone()
    assert (clone.copies, clone.vector_work.alu) == (1, T * D)
    assert summarize(w).cache_bytes == DEPTH * 2 * 3 * OUT  # order 2 reached by the third full step
    kinds = {a: "".join("F" if p.kind == "full" else "v" if p.kind == "speca" else "t"
                        for p in small(f"speca:acceptance={a}", 16).plans()) for a in (0, 1)}
    assert kinds[0] == "FtFttvFttvFttvFt"  # every check fails: chains of 3
    assert kinds[1] == "FtFttvvvFttvvvFt"  # every check passes: chains of 5, the cap
    # min_taylor_steps 5 of at most 5: no forecast is checked, every chain is 5 long
    assert [p.kind for p in small("speca:acceptance=0,min_taylor_steps=5", 9).plans()] == [
        "full", "taylor", "full", "taylor", "taylor", "taylor", "taylor", "taylor", "full"]


def test_l2c_mask_file():
    w = dit("l2c", steps=50)
    names = [(p.name, p.repeat) for p in w.phases]
    assert names == [("full+outputs cache", 25), ("l2c cached attn 8-27 mlp 14-27", 25)]
    assert summarize(w).params == summarize(dit(None)).params  # the groups run the stack's own weights
    proc = run_cli("workload", str(WORKLOADS / "dit_xl_2.yaml"), "--schedule", "l2c:mask=nope.csv")
    assert proc.returncode == 2 and "nope.csv: file not found, expected an L2C mask CSV" in proc.stderr


def parse(text):
    from archsim.workloads.schedules import parse_schedule

    return parse_schedule(text)
