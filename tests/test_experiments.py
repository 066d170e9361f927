"""The studies in experiments/, each in its reduced (--quick) mode: they run, and what they
conclude holds in the numbers they write."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "experiments"))

import cache_codesign
import cim_tpu
import compiler

# [CIM] Table II: the CIM-MXU is 9.43x as energy-efficient as the systolic MXU, per MAC.
TABLE_II_RATIO = 9.43


@pytest.fixture(scope="module")
def cim_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("cim_tpu")
    assert cim_tpu.main(["--out", str(out), "--quick"]) == 0
    return out


def test_cim_tpu_writes_its_tables_and_figures(cim_out):
    for name in ("cim_tpu_designs.csv", "cim_tpu_multichip.csv", "cim_tpu_attribution.csv", "cim_tpu.md",
                 "cim_tpu_design_space.png", "cim_tpu_multichip.png"):
        assert (cim_out / name).stat().st_size > 0, name
    text = (cim_out / "cim_tpu.md").read_text()
    designs = pd.read_csv(cim_out / "cim_tpu_designs.csv")
    decode = designs[(designs.workload == "GPT-3-30B decode") & (designs.grid == "16x8") & (designs["count"] == 4)].iloc[0]
    # The headline row carries this run's figures, not only the paper's.
    assert (f"| LLM decode, CIM-TPU: latency | -29.9% | {decode.latency_change_pipelined * 100:+.1f}% | "
            f"{decode.latency_change_scalesim * 100:+.1f}% |") in text
    assert "### Findings" in text and "decode latency changes by" in text


def test_cim_tpu_per_mac_energy_is_bounded_by_the_macro_ratio(cim_out):
    designs = pd.read_csv(cim_out / "cim_tpu_designs.csv")
    assert (designs.mxu_energy_reduction <= TABLE_II_RATIO * 1.001).all()
    attr = pd.read_csv(cim_out / "cim_tpu_attribution.csv")
    free = attr[attr.variant == "weight placement free"].archsim
    # With weights placed for free on both (CIM's writes, the systolic loads), MXU energy is MACs x per-MAC energy on both sides: the macro ratio.
    np.testing.assert_allclose(free, TABLE_II_RATIO, rtol=2e-3)


def test_cim_tpu_fold_models_bracket_the_papers_decode_figure(cim_out):
    designs = pd.read_csv(cim_out / "cim_tpu_designs.csv")
    decode = designs[designs.workload == "GPT-3-30B decode"].iloc[0]
    assert decode.tpuv4i_scalesim_latency_s > decode.tpuv4i_pipelined_latency_s  # SCALE-Sim pays fill per fold
    assert decode.latency_change_scalesim < cim_tpu.PAPER["decode_a"] < decode.latency_change_pipelined < 0


def test_cim_tpu_design_b_beats_tpuv4i_on_the_dit_block_on_every_chip_count(cim_out):
    multi = pd.read_csv(cim_out / "cim_tpu_multichip.csv")
    b = multi[(multi.chip == "CIM Design B") & (multi.workload == "DiT-XL/2 block")]
    assert list(b.chips) == [1, 2] and (b.speedup_vs_tpuv4i > 1).all()


@pytest.fixture(scope="module")
def codesign_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("codesign")
    assert cache_codesign.main(["--out", str(out), "--quick"]) == 0
    return out


def test_codesign_pairs_and_front(codesign_out):
    frame = pd.read_csv(codesign_out / "codesign.csv")
    assert len(frame) == 4 * 4 and frame.feasible.all()  # 4 chips x 4 schedules
    none = frame[frame.schedule == "none"]
    np.testing.assert_array_equal(none.speedup_vs_none, 1.0)
    cached = frame[frame.schedule != "none"]
    assert (cached.macs_vs_none < 1).all()
    # Skipping whole blocks (reuse, TaylorSeer) is faster; ICC's calibration adds vector work,
    # which on the calibrated TPU family's vector unit can cost more than the MACs it saves
    # (experiments/README.md, issue 16): no sign is asserted for it.
    assert (cached[cached.schedule != "icc"].speedup_vs_none > 1).all()
    # Caching never saves more time than work: attention, adaLN and cache traffic remain.
    assert (cached.speedup_vs_none < 1 / cached.macs_vs_none).all()
    front = frame[frame.pareto_latency_energy]
    assert len(front) >= 1
    for r in front.itertuples():  # nothing on the front is dominated
        dominated = (frame.latency_s <= r.latency_s) & (frame.energy_j <= r.energy_j) & (
            (frame.latency_s < r.latency_s) | (frame.energy_j < r.energy_j))
        assert not dominated.any()
    text = (codesign_out / "codesign.md").read_text()
    assert "### Pareto front over latency, energy and MACs computed" in text
    assert (codesign_out / "codesign_pareto.png").stat().st_size > 0


def test_codesign_is_deterministic(codesign_out, tmp_path):
    assert cache_codesign.main(["--out", str(tmp_path), "--quick"]) == 0
    for name in ("codesign.csv", "codesign.md"):
        assert (tmp_path / name).read_bytes() == (codesign_out / name).read_bytes()


def test_compiler_study_shows_each_piece_and_the_default(tmp_path):
    # 4 x A100 GPT-3 layer prefill, the TPUv4i LLaMA-2-7B int8 4096-token prompt, the TPUv4i DiT block
    assert compiler.main(["--out", str(tmp_path), "--quick"]) == 0
    frame = pd.read_csv(tmp_path / "compiler.csv")
    assert set(frame.compiler) == {"none", "fusion", "flash attention", "overlap", "default (xla)", "default (cuda)"}
    llama = frame[frame.workload.str.startswith("LLaMA-2-7B int8")].set_index("compiler")
    # the dense score matrices do not fit the 8 GiB HBM; flash attention stores none
    assert not llama.loc["none", "feasible"] and llama.loc["flash attention", "feasible"]
    assert llama.loc["default (xla)", "feasible"]
    for _, run in frame.groupby(["chip", "workload"]):
        run = run.set_index("compiler")
        ok = run[run.feasible]
        # the default is the fastest, fusion and flash attention never add HBM traffic
        assert ok.latency_s.min() == pytest.approx(ok.latency_s.filter(like="default").iloc[0])
        if "none" in ok.index:
            assert (ok.hbm_bytes <= ok.loc["none", "hbm_bytes"] * (1 + 1e-12)).all()
    assert "| chip | workload | compiler |" in (tmp_path / "compiler.md").read_text()
