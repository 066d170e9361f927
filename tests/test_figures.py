"""The figures of a sweep, of compare-schedules and of the per-operator comparison: drawn
without layout warnings or overprinting labels, and saying what the results say (the Pareto
front over every objective, latency by bound, energy, designs that coincide)."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from archsim import api
from archsim.dse import compare, plots, report
from archsim.dse.figures_ops import op_frame
from tests.conftest import HW, TPUV4I, WORKLOADS, run_cli

OBJECTIVES = ["latency", "energy", "area"]  # the bundled CIM sweep's (sweep: objectives)
LAYOUT_WORDS = ("tight_layout", "constrained_layout", "layout", "overlap")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The README's main job: ``archsim sweep hw_configs/cim_*.yaml``."""
    out = tmp_path_factory.mktemp("sweep")
    proc = run_cli("sweep", *sorted(str(p) for p in HW.glob("cim_*.yaml")), "--out", str(out), "--jobs", "2",
                   "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return report.enrich(pd.read_parquet(out / "results.parquet"), OBJECTIVES)


@pytest.fixture
def drawn(monkeypatch):
    """Every figure handed to ``plots._save``, checked for overprinting before it is saved."""
    figures = []
    save = plots._save

    def checked(fig, stem):
        assert_no_overprinting(fig)
        figures.append(fig)
        return save(fig, stem)

    monkeypatch.setattr(plots, "_save", checked)
    return figures


def all_axes(fig):
    """The axes of a figure and of its subfigures, each once."""
    return list(dict.fromkeys([*fig.axes, *(ax for sub in fig.subfigs for ax in all_axes(sub))]))


def assert_no_overprinting(fig) -> None:
    """No two tick labels of one axis intersect, nor two panels' titles."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titles = []
    for ax in all_axes(fig):
        for axis, labels in (("x", ax.get_xticklabels()), ("y", ax.get_yticklabels())):
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels if t.get_visible() and t.get_text()]
            for i, (a, box_a) in enumerate(boxes):
                for b, box_b in boxes[i + 1:]:
                    assert not box_a.overlaps(box_b), f"{axis} tick labels {a!r} and {b!r} overprint ({ax.get_title()})"
        if ax.get_title():
            titles.append((ax.get_title(), ax.title.get_window_extent(renderer)))
    for i, (a, box_a) in enumerate(titles):
        for b, box_b in titles[i + 1:]:
            assert not box_a.overlaps(box_b), f"titles {a!r} and {b!r} overprint"


def layout_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if any(word in str(w.message).lower() for word in LAYOUT_WORDS)]


def test_every_sweep_figure_draws_without_layout_warnings(sweep, drawn, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = plots.plot_pareto(sweep, "latency", "energy", tmp_path / "pareto_latency_energy", None, OBJECTIVES)
        paths += plots.plot_pareto(sweep, "latency", "energy", tmp_path / "pareto_as_called", None)
        paths += plots.plot_pareto(sweep, "latency", "area", tmp_path / "pareto_color", "set.mxu.count", OBJECTIVES)
        paths += plots.plot_breakdowns(sweep, tmp_path / "breakdown")
        paths += plots.plot_breakdowns(sweep, tmp_path / "breakdown_objectives", objectives=OBJECTIVES)
    assert not layout_warnings(caught), layout_warnings(caught)
    assert len(drawn) == 5 and all(p.is_file() for p in paths)
    for fig in drawn:  # short design names: no 90-character labels squash the panels
        for ax in all_axes(fig):
            assert all(len(t.get_text()) <= 16 for t in ax.get_yticklabels()), ax.get_title()


def test_a_long_design_key_on_one_workload_leaves_the_breakdown_its_panels(sweep, drawn, tmp_path):
    # one workload, every design named at length (as a 10,000-point sweep names them): the key
    # at the figure's foot runs to one column of 9 lines, which once squeezed the panels to nothing
    one = sweep[sweep["workload_id"] == sorted(sweep["workload_id"])[0]].copy()
    one["design"] = [f"{d} " + "cmem.capacity=256 MiB vmem.capacity=8 MiB bandwidth=1.867 TB/s " * 2
                     for d in one["design"]]
    one["pareto"] = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots.plot_breakdowns(one, tmp_path / "breakdown")
    assert not layout_warnings(caught), layout_warnings(caught)
    (fig,) = drawn
    key = [t for t in fig.legends[-1].get_texts()]
    assert len(key) == 9 and all(len(t.get_text()) > 130 for t in key)
    panels = [ax for ax in all_axes(fig) if ax.get_title() == "latency by bound"]
    assert panels and panels[0].get_position().height > 0.2  # of the figure: the panels keep their room


def test_thinned_keeps_the_front_and_the_baseline_and_samples_the_rest_by_latency():
    # 10 rows, 2 on the front, one baseline: a limit of 6 keeps those 3 and 3 others evenly
    # spaced in latency order (linspace over the 7 others: positions 0, 3, 6)
    frame = pd.DataFrame({"key": [f"k{i}" for i in range(10)], "role": ["point"] * 9 + ["baseline"],
                          "pareto": [False, True, False, False, True, False, False, False, False, False],
                          "latency_s": [9.0, 1.0, 8.0, 7.0, 2.0, 6.0, 5.0, 4.0, 3.0, 5.5]})
    got = report.thinned(frame, 6)
    # others by latency: k8 (3), k7 (4), k6 (5), k5 (6), k3 (7), k2 (8), k0 (9) -> k8, k5, k0
    assert got["key"].tolist() == ["k0", "k1", "k4", "k5", "k8", "k9"]
    assert report.thinned(frame, 10) is frame


def test_reports_of_many_designs_draw_a_sample_and_say_so(sweep, drawn, tmp_path, monkeypatch):
    from archsim.dse import html_report

    monkeypatch.setattr(report, "SHOWN_DESIGNS", 5)
    monkeypatch.setattr(html_report, "SHOWN_DESIGNS", 5)
    monkeypatch.setattr(html_report, "thinned", lambda g: report.thinned(g, 5))
    monkeypatch.setattr(plots, "thinned", lambda g: report.thinned(g, 5))
    monkeypatch.setattr(html_report, "MAX_TABLE_ROWS", 4)
    page = html_report.render_html(sweep, OBJECTIVES)
    one = sweep[sweep["workload_id"] == sorted(sweep["workload_id"])[0]]
    front = int(one["pareto"].sum())
    assert f"{max(5, front + 1):,} of {len(one):,} designs drawn (at most 5)" in page
    assert "of 12 designs: the Pareto-optimal ones, the baseline and the fastest others" in page
    plots.plot_pareto(sweep, "latency", "energy", tmp_path / "p", None, OBJECTIVES)
    titles = {ax.get_title() for ax in drawn[0].axes if ax.get_title()}
    assert any("designs drawn: the front and a sample" in t for t in titles), titles


def test_pareto_marks_the_front_over_every_objective_in_every_plane(sweep, drawn, tmp_path):
    plots.plot_pareto(sweep, "latency", "energy", tmp_path / "p", None, OBJECTIVES)
    fig = drawn[0]
    planes = {(ax.get_xlabel().split(" (")[0], ax.get_ylabel().split(" (")[0]) for ax in fig.axes if ax.get_xlabel()}
    assert planes == {("latency", "energy"), ("latency", "area"), ("energy", "area")}  # area appears
    ok = sweep[sweep["status"] == "ok"]
    for ax in fig.axes:
        if not ax.get_xlabel():
            continue
        g = ok[ok["workload"] == ax.get_title()]
        front = [c for c in ax.collections if np.allclose(c.get_facecolor()[:, :3], (0.863, 0.078, 0.235), atol=0.01)]
        assert sum(len(c.get_offsets()) for c in front) == g["pareto"].sum(), ax.get_title()  # the table's stars
        # every design is a point or counted at one: "n designs" says how many a point hides
        texts = [t.get_text() for t in ax.texts]
        counted = sum(int(m.group(1)) for t in texts if (m := re.match(r"(\d+) designs", t)))
        single = sum(1 for t in texts if re.fullmatch(r"D\d+", t))
        points = {(round(x, 9), round(y, 9)) for c in ax.collections for x, y in c.get_offsets()}
        assert counted + single <= len(g) and len(points) <= len(g)
    decode = [ax for ax in fig.axes if ax.get_title() == "gpt3-30b-layer-decode" and ax.get_xlabel().startswith("latency")
              and ax.get_ylabel().startswith("area")][0]
    assert any(t.get_text().startswith("3 designs") for t in decode.texts)  # three designs at one dot, said so
    legend = " ".join(t.get_text() for leg in fig.legends for t in leg.get_texts())
    assert "Pareto front over latency, energy, area" in legend and "D1: TPUv4i" in legend
    tagged = sweep.copy()
    tagged.attrs["objectives"] = OBJECTIVES  # as archsim.api's tables carry them
    plots.plot_pareto(tagged, "latency", "energy", tmp_path / "tagged")
    assert len([ax for ax in drawn[1].axes if ax.get_xlabel()]) == 3 * 3  # three workloads x three planes
    key = (tmp_path / plots.KEY_FILE).read_text()
    assert all(design in key for design in ok["design"].unique())


def test_breakdown_shows_latency_by_bound_and_energy(sweep, drawn, tmp_path):
    decode = sweep[(sweep["workload"] == "gpt3-30b-layer-decode") & (sweep["hardware"] == "CIM-Design-B")].iloc[0]
    bounds = [c for c in sweep.columns if c.startswith("bound_") and c.endswith("_s")]
    assert {"bound_memory_s", "bound_compute_s"} <= set(bounds)
    assert decode[bounds].fillna(0).sum() == pytest.approx(decode["latency_s"], rel=1e-9)
    assert decode["bound_memory_s"] > 0.9 * decode["latency_s"]  # HBM-bound, whatever unit its ops run on
    plots.plot_breakdowns(sweep, tmp_path / "b", objectives=OBJECTIVES)
    fig = drawn[0]
    rows = [sub for sub in fig.subfigs if sub.axes and sub.axes[0].get_title() == "latency by bound"]
    assert len(rows) == 3
    for sub in rows:
        assert [ax.get_title() for ax in sub.axes] == ["latency by bound", "latency by unit", "energy by component"]
        by_bound, by_unit = sub.axes[0], sub.axes[1]
        assert sum(p.get_width() for p in by_bound.patches) == pytest.approx(sum(p.get_width() for p in by_unit.patches))
    # CIM-Design-B on the decode (off the front: shown as a config's own design): its time is
    # HBM's, drawn so, though its ops run on the MXU
    row = next(sub for sub in rows if "gpt3-30b-layer-decode" in sub._suptitle.get_text())
    by_bound = row.axes[0]
    labels = [t.get_text() for t in by_bound.get_yticklabels()]
    at = labels.index(decode["design_id"])
    bars = [p for p in by_bound.patches if abs(p.get_y() + p.get_height() / 2 - at) < 1e-9]
    memory = sum(p.get_width() for p in bars if np.allclose(p.get_facecolor(), to_rgba("tab:purple")))
    assert memory > 0.9 * sum(p.get_width() for p in bars) > 0
    legends = " ".join(t.get_text() for sub in fig.subfigs for ax in sub.axes if ax.get_legend()
                       for t in ax.get_legend().get_texts())
    assert "memory" in legends and "array-fill" in legends and "hbm" in legends


def test_redrawn_figures_are_the_same_bytes(sweep, tmp_path):
    for name in ("one", "two"):
        plots.plot_pareto(sweep, "latency", "energy", tmp_path / name / "p", None, OBJECTIVES)
        plots.plot_breakdowns(sweep, tmp_path / name / "b")
    for name in ("p.svg", "b.svg", "p.png", plots.KEY_FILE):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_compare_schedules_figure_has_energy_and_a_readable_step_view(drawn, tmp_path):
    chips = [api.load_hardware(TPUV4I), api.load_hardware(HW / "cim_design_b.yaml")]
    from archsim.config.loader import parse_overrides

    schedules = ["reuse", "icc", "teacache", "toca"]
    frame, runs = compare.compare(chips, WORKLOADS / "dit_xl_2.yaml", schedules, parse_overrides(["steps=8"], "--wset"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = compare.plot(frame, runs, tmp_path / "schedules")
    assert not layout_warnings(caught), layout_warnings(caught)
    assert all(p.is_file() for p in paths)
    axes = all_axes(drawn[0])
    titles = [ax.get_title() for ax in axes]
    assert "generation energy" in titles and "generation latency" in titles
    energy = next(ax for ax in axes if ax.get_title() == "generation energy")
    assert len(energy.patches) == len(frame)  # a bar per schedule and chip
    maps = [ax for ax in axes if ax.get_title().startswith("per-step time on ")]
    assert [ax.get_title().split(" (")[0] for ax in maps] == ["per-step time on TPUv4i", "per-step time on CIM-Design-B"]
    assert "dot: the step runs the whole network" in maps[0].get_title()  # what the dots say, said
    for ax in maps:  # schedules x steps, one cell each, no overlapping lines
        image = ax.get_images()[0].get_array()
        assert image.shape == (1 + len(schedules), 8) and not ax.lines
        assert np.allclose(image[0], 1.0)  # 'none': every step is a full step
        assert image[1].min() < 0.5  # reuse: its cached steps cost a fraction of one


def test_op_comparison_groups_ops_across_designs(drawn, tmp_path):
    workload = api.load_workload(WORKLOADS / "gpt3_30b_layer_decode.yaml")
    results = [api.simulate(api.load_hardware(f), workload) for f in (TPUV4I, HW / "cim_design_b.yaml")]
    frame = op_frame(results)
    assert {"QKV projection", "attention", "attention output", "FFN", "norms"} <= set(frame.index)
    for r in results:
        table = r.table()
        assert frame["latency_s"][r.hw.name].sum() == pytest.approx(table["total_latency_s"].sum())
        assert frame["energy_j"][r.hw.name].sum() == pytest.approx((table["energy_j"] * table["count"]).sum())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = plots.plot_op_comparison(results, tmp_path / "ops")
        paths += plots.plot_op_comparison({"TPU": results[0], "CIM": results[1]}, tmp_path / "kinds", by="kind")
    assert not layout_warnings(caught) and all(p.is_file() for p in paths)
    assert [ax.get_title().split(" of ")[0] for ax in drawn[0].axes] == ["latency", "energy"]
    assert len(drawn[0].axes[0].patches) == 2 * len(frame)  # side by side: a bar per group and design
    with pytest.raises(ValueError, match="by='unit'"):
        op_frame(results, by="unit")


@pytest.mark.parametrize("name, kind, group", [
    ("block.attn.q", "gemm", "QKV projection"), ("blocks.attn.to_k", "gemm", "QKV projection"),
    ("layers.self_attn.q_proj", "gemm", "QKV projection"), ("block.attn.o", "gemm", "attention output"),
    ("attn.to_out", "gemm", "attention output"), ("block.attn.score", "attn_score", "attention"),
    ("blocks.attn.flash", "attention", "attention"), ("block.attn.k_append", "cache_write", "KV cache"),
    ("block.mlp.fc1", "gemm", "FFN"), ("layers.mlp.gate_proj", "gemm", "FFN"), ("ff.net.0.proj", "gemm", "FFN"),
    ("block.norm1", "rmsnorm", "norms"), ("blocks.adaLN", "gemm", "modulation (adaLN)"),
    ("norm1.linear", "gemm", "modulation (adaLN)"), ("patch_embed", "gemm", "embedding"),
    ("final.linear", "gemm", "output head"), ("lm_head", "gemm", "output head"),
])
def test_op_groups(name, kind, group):
    assert plots.op_group(name, kind) == group


def test_roofline_draws_without_layout_warnings(drawn, tmp_path):
    from archsim.ir.summary import summarize

    hw = api.load_hardware(HW / "cim_design_b.yaml")
    workload = api.load_workload(WORKLOADS / "dit_xl_2_block_512.yaml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = plots.plot_roofline(api.simulate(hw, workload), summarize(workload), tmp_path / "roof")
    assert not layout_warnings(caught) and all(p.is_file() for p in paths) and len(drawn) == 1
