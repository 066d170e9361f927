"""TeaCache, MagCache and HarmoniCa: plans by their code's rules and costs counted by hand on a
small DiT (docs/sources/schedules.md)."""

import pytest

from archsim.errors import ConfigError
from archsim.ir.summary import summarize
from archsim.workloads.dit import DiTWorkload
from archsim.workloads.schedules import parse_schedule

# The small DiT of tests/test_schedules.py: 2 blocks of hidden 64, 4 heads, 16 tokens, batch 1,
# no guidance, bf16.
DEPTH, D, T = 2, 64, 16
P_IN, P_OUT = 2 * 2 * 4, 2 * 2 * 8
EMBED = T * P_IN * D + 256 * D + D * D  # patch embedding; timestep MLP
FINAL = D * 2 * D + T * D * P_OUT  # final adaLN and linear
ADALN = D * 6 * D  # a block's adaLN on the one conditioning row
ATTN = 4 * T * D * D + 2 * T * T * D
MLP = 2 * T * D * 4 * D
FULL = EMBED + FINAL + DEPTH * (ADALN + ATTN + MLP)
OUTSIDE = EMBED + FINAL  # a step that skips every block
OUT = T * D * 2  # one [tokens, hidden] tensor, bytes


def small(schedule, steps):
    return DiTWorkload(kind="dit", name="dit", family="S", depth=DEPTH, hidden=D, heads=4, resolution=64,
                       steps=steps, schedule=schedule)


def labels(spec):
    return [p.label for p in spec.plans()]


def phases(spec):
    return {p.name: p for p in summarize(spec.build(None)).phases}


def op_named(workload, phase, suffix):
    graph = next(p.graph for p in workload.phases if p.name == phase)
    return next(op for op in graph.ops() if op.name.endswith(suffix))


def csv_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_teacache_accumulates_the_rescaled_distance_as_its_code(tmp_path):
    # teacache_flux.py: the first and last steps compute (and reset); otherwise the rescaled
    # distance accumulates and the blocks run once it reaches the threshold. Coefficients [1, 0]
    # rescale x to x. Distances 0.2, 0.2, 0.2, 0.6 at steps 1-4, threshold 0.5: 0.2, 0.4 skip;
    # 0.6 computes (reset); 0.6 computes; the last computes: C S S C C C.
    metric = csv_file(tmp_path, "m.csv", "step,rel_l1\n0,9\n1,0.2\n2,0.2\n3,0.2\n4,0.6\n5,9\n")
    spec = small(f"teacache:metric={metric},rel_l1_thresh=0.5,coefficients=[1,0]", 6)
    assert labels(spec) == ["teacache full (no distance) +modulated+residual cache", "teacache reuse +modulated cache",
                            "teacache reuse +modulated cache", "teacache full +modulated cache", "teacache full",
                            "teacache full (no distance)"]
    w = spec.build(None)
    # every step runs block 0's adaLN again to probe (its norm1 and modulate are vector work)
    assert w.macs == 4 * FULL + 2 * OUTSIDE + 6 * ADALN
    by_name = phases(spec)
    first = by_name["teacache full (no distance) +modulated+residual cache"]
    reuse = by_name["teacache reuse +modulated cache"]
    assert first.cache_bytes_written == 2 * OUT  # the modulated input and the residual
    assert reuse.repeat == 2 and reuse.macs == OUTSIDE + ADALN
    assert reuse.cache_bytes_read == 2 * OUT  # the residual added, the previous modulated input compared
    assert reuse.cache_bytes_written == OUT
    assert summarize(w).cache_bytes == 2 * OUT
    # the distance: |p| summed, then |m - p| summed: 5 operations per element
    assert op_named(w, "teacache reuse +modulated cache", "teacache.rel_l1").vector_work.alu == 5 * T * D
    assert op_named(w, "teacache full", "teacache.input_clone").vector_work.alu == T * D  # inp = hidden.clone()
    assert op_named(w, "teacache full", "teacache.residual").vector_work.alu == T * D  # output - input clone
    residual_add = op_named(w, "teacache reuse +modulated cache", "teacache.residual_add")
    assert residual_add.vector_work.alu == T * D
    assert summarize(w).params == summarize(small(None, 6).build(None)).params  # block 0's own adaLN weights
    # a recorded trace of the same decisions gives the same plans
    trace = csv_file(tmp_path, "d.csv", "step,compute\n0,1\n1,0\n2,0\n3,1\n4,1\n5,1\n")
    assert small(f"teacache:decisions={trace}", 6).plans() == spec.plans()


def test_teacache_bundled_curve_at_the_readme_thresholds():
    # The illustrative FLUX.1-dev curve (0.13 + 0.55 exp(-k/3)) with FLUX's coefficients on 28
    # steps: 19, 16, 13 and 11 steps compute at 0.25, 0.4, 0.6 and 0.8 (the README's 1.5x,
    # 1.8x, 2.0x and 2.25x latency).
    sequences = {t: "".join("C" if c else "s" for c in parse_schedule(f"teacache:rel_l1_thresh={t}").computes(28))
                 for t in (0.25, 0.4, 0.6, 0.8)}
    assert sequences[0.6] == "CCCCsCssCssCssCssCssCssCssCC"
    assert [s.count("C") for s in sequences.values()] == [19, 16, 13, 11]
    assert parse_schedule("teacache:rel_l1_thresh=0").computes(5) == [True] * 5


def test_magcache_accumulates_the_magnitude_error_as_its_code(tmp_path):
    # magcache_flux.py: the first int(0.25 x 8 + 0.5) = 2 steps run; then ratio *= r, err +=
    # |1 - ratio|, skip while err <= 0.3 and at most 2 in a row. Ratios 1.1, 1, 1, 1.2, 1, 1
    # at steps 2-7: err 0.1, 0.2 skip; a third skip: compute; 0.2 skip; 0.4 compute; 0 skip.
    ratios = csv_file(tmp_path, "r.csv", "step,mag_ratio\n0,1\n1,1.5\n2,1.1\n3,1.0\n4,1.0\n5,1.2\n6,1.0\n7,1.0\n")
    base = f"magcache:mag_ratios={ratios},thresh=0.3,max_skips=2,retention_ratio=0.25"
    spec = small(base + ",keep_full=[]", 8)
    assert labels(spec) == ["magcache full (retained)", "magcache full (retained) +residual cache", "magcache reuse",
                            "magcache reuse", "magcache full +residual cache", "magcache reuse",
                            "magcache full +residual cache", "magcache reuse"]
    w = spec.build(None)
    assert w.macs == 4 * FULL + 4 * OUTSIDE  # deciding is scalar work: no MACs
    by_name = phases(spec)
    assert by_name["magcache reuse"].repeat == 4 and by_name["magcache reuse"].cache_bytes_read == OUT
    assert by_name["magcache full +residual cache"].cache_bytes_written == OUT
    assert by_name["magcache full (retained)"].cache_bytes_written == 0  # the next step computes
    assert summarize(w).cache_bytes == OUT  # the residual
    assert op_named(w, "magcache reuse", "magcache.decide").vector_work.alu == 10  # host-side scalars
    with pytest.raises(StopIteration):  # the retained steps decide nothing
        op_named(w, "magcache full (retained)", "magcache.decide")
    # keep_full: curve point 5 never skips; the reset lets steps 6 and 7 skip
    kept = "".join("C" if c else "s" for c in parse_schedule(base + ",keep_full=[5]").computes(8))
    assert kept == "CCssCCss"


def test_magcache_published_flux_curve_and_recorded_trace():
    # MagCache4FLUX defaults (E024K5R01) on its 28 FLUX.1-dev steps: 3 retained, 9 compute
    # (28 / 9 = 3.1x of the transformer's work; the README reports 2.8x latency); step 11 is
    # forced; the last step reuses (MagCache forces no last step)
    computes = parse_schedule("magcache").computes(28)
    assert "".join("C" if c else "s" for c in computes) == "CCCssCsssCsCsssssCsssssCssCs"
    assert computes[11]
    bundled = small("magcache:decisions=schedules/magcache_flux_dev_28_decisions.csv", 28).plans()
    assert bundled == small("magcache", 28).plans()  # the bundled trace is the rule's output
    # other step counts read the curve at the nearest point, as nearest_interp
    assert len(parse_schedule("magcache").computes(50)) == 50


def harmonica_table(tmp_path):
    # routers by countdown: router 3 (step 0) is ignored, every layer runs in the first step;
    # router 2 (step 1): block 0's attention and block 1's MLP below 0; router 1 (step 2): all
    # run; router 0 (step 3): block 0's attention below 0. thres 0.5: runs iff logit > 0.
    rows = ["router,block,attn,mlp", "3,0,-1,-1", "3,1,-1,-1", "2,0,-1,1", "2,1,1,-1", "1,0,1,1", "1,1,1,1",
            "0,0,-1,0.5", "0,1,2,3"]
    return csv_file(tmp_path, "router.csv", "\n".join(rows) + "\n")


def test_harmonica_routes_blocks_as_its_code(tmp_path):
    spec = small(f"harmonica:router={harmonica_table(tmp_path)},thres=0.5", 4)
    # a run layer is kept when a later step reuses it before it runs again: block 0's attention
    # at steps 0 and 2, block 1's MLP at step 0
    assert labels(spec) == ["harmonica full +router +cache attn 0 mlp 1", "harmonica cached attn 0 mlp 1",
                            "harmonica full +cache attn 0", "harmonica cached attn 0"]
    w = spec.build(None)
    assert w.macs == 4 * FULL - 2 * ATTN - MLP
    s = summarize(w)
    assert s.params == summarize(small(None, 4).build(None)).params + 4 * 4  # the routers: 4 x 2 x depth logits
    assert s.cache_bytes == 2 * OUT  # one attention output (block 0) and one MLP output (block 1) are kept
    by_name = phases(spec)
    assert by_name["harmonica full +router +cache attn 0 mlp 1"].cache_bytes_written == 2 * OUT
    assert by_name["harmonica cached attn 0 mlp 1"].cache_bytes_read == 2 * OUT
    assert by_name["harmonica full +cache attn 0"].cache_bytes_written == OUT
    rank = op_named(w, "harmonica full +router +cache attn 0 mlp 1", "harmonica.load_ranking")
    assert (rank.vector_work.alu, rank.vector_work.special) == (4 * 4 * 4, 2 * 4 * 4)  # sigmoid, compare, count
    # thres 0.1 (the README's): logit -1 has sigmoid 0.27 > 0.1, so every layer runs
    assert all(p.skip == ((), ()) for p in small(f"harmonica:router={harmonica_table(tmp_path)}", 4).plans())


def test_harmonica_bundled_example_and_other_step_counts():
    # 10 routers (the README's 10 sampling steps) for DiT-XL/2: the odd ones reuse attention in
    # blocks 8-27 and the MLP in 10-27; blocks 4-7's attention logits are -2 (sigmoid 0.12: run
    # at thres 0.1, reused at 0.5)
    w = DiTWorkload(kind="dit", name="dit", steps=10, schedule="harmonica").build(None)
    assert [(p.name, p.repeat) for p in w.phases] == [
        ("harmonica full +router", 1), ("harmonica full +cache attn 8-27 mlp 10-27", 4),
        ("harmonica cached attn 8-27 mlp 10-27", 4), ("harmonica full", 1)]
    stricter = DiTWorkload(kind="dit", name="dit", steps=10, schedule="harmonica:thres=0.5").plans()
    assert stricter[2].skip == (tuple(range(4, 28)), tuple(range(10, 28)))
    # 6 steps read router round(i x 9 / 5) at countdown i: 0, 2, 4, 5, 7, 9: the odd 5 and 7 at
    # countdowns 3 and 4, steps 2 and 1
    plans = DiTWorkload(kind="dit", name="dit", steps=6, schedule="harmonica").plans()
    assert [bool(p.skip[0]) for p in plans] == [False, True, True, False, False, False]


@pytest.mark.parametrize("schedule, text, where, message", [
    ("teacache:decisions", "step,compute\n0,1\n1,2\n", ":3: compute", "expected 1 (the blocks run) or 0"),
    ("teacache:decisions", "step,compute\n0,1\n2,1\n", ": step", "no row for step 1"),
    ("teacache:decisions", "step,compute\n0,0\n1,1\n", ": compute", "step 0 reuses the residual"),
    ("teacache:decisions", "step,compute\n0,1\n1,1\n0,1\n", ":4", "a second row for step 0 (the first is at line 2)"),
    ("teacache:decisions", "step,done\n0,1\n", ":1", "unknown column 'done'; expected the columns step, compute"),
    ("teacache:decisions", "step,compute\n0,1,1\n", ":2", "the row has 3 cells, expected 2"),
    ("teacache:metric", "step,rel_l1\n0,-0.1\n", ":2: rel_l1", "expected a number from 0"),
    ("teacache:metric", "step,rel_l1\n0,nan\n", ":2: rel_l1", "expected a decimal number, got 'nan'"),
    ("teacache:metric", "step,rel_l1\n1,0.1\n", ": step", "no row for step 0"),
    ("magcache:mag_ratios", "step,mag_ratio\n0,0\n", ":2: mag_ratio", "expected a number above 0"),
    ("magcache:mag_ratios", "", "", "the file is empty"),
    ("harmonica:router", "router,block,attn,mlp\n0,0,1,1\n1,1,1,1\n", ": router", "no row for router 0, block 1"),
    ("harmonica:router", "router,block,attn,mlp\n0,0,x,1\n", ":2: attn", "expected a decimal number, got 'x'"),
    ("harmonica:router", "router,block,attn,mlp\n0,0,1,1\n", ": block", "the model has 2 blocks"),
])
def test_bad_tables_name_the_file_row_and_column(tmp_path, schedule, text, where, message):
    path = csv_file(tmp_path, "t.csv", text)
    with pytest.raises(ConfigError) as exc:
        small(f"{schedule}={path}", 2).plans()
    assert f"{path}{where}: " in str(exc.value) and message in str(exc.value), str(exc.value)


def test_missing_table_and_bad_parameters(tmp_path):
    with pytest.raises(ConfigError, match="nope.csv: file not found, expected a TeaCache metric CSV"):
        small("teacache:metric=nope.csv", 4).plans()
    for text, key in [("teacache:rel_l1_thresh=-1", "schedule.rel_l1_thresh"),
                      ("magcache:max_skips=0", "schedule.max_skips"), ("harmonica:thres=2", "schedule.thres"),
                      ("magcache:retention_ratio=1.5", "schedule.retention_ratio")]:
        with pytest.raises(ConfigError, match=key):
            parse_schedule(text)


def test_every_adaptive_schedule_saves_work_and_states_its_cache():
    plain = summarize(DiTWorkload(kind="dit", name="dit", steps=20).build(None))
    for name in ("teacache", "magcache", "harmonica"):
        s = summarize(DiTWorkload(kind="dit", name="dit", steps=20, schedule=name).build(None))
        assert s.macs < plain.macs and s.cache_bytes > 0, name
