"""The ODB-dLLM study (experiments/odb_dllm.py) in its quick mode: its outputs and the
properties the study's argument rests on."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import odb_dllm
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    out = tmp_path_factory.mktemp("odb")
    assert odb_dllm.main(["--out", str(out), "--quick"]) == 0
    return out


def test_outputs_written(study):
    for name in ("odb.csv", "odb_phases.csv", "odb_sensitivity.csv", "odb.md", "odb_roofline.png"):
        assert (study / name).stat().st_size > 0, name


def test_each_scheme_is_faster_than_the_one_it_improves(study):
    main = pd.read_csv(study / "odb.csv")
    assert main["feasible"].all()
    tpu = main[main["chip"] == "TPUv4i"].set_index("mode")["latency_s"]
    assert tpu["Fast-dLLM"] < tpu["vanilla"]
    assert tpu["ODB"] < tpu["Fast-dLLM"]


def test_phase_intensity_and_bounds_on_tpuv4i(study):
    phases = pd.read_csv(study / "odb_phases.csv")
    tpu = phases[phases["chip"] == "TPUv4i"]
    decode = tpu[tpu["kind"] == "decode"]
    jump = tpu[tpu["kind"] == "jump"]
    refresh = tpu[tpu["kind"] == "refresh"]
    assert len(decode) and len(jump) and len(refresh)
    # four copies of the block per forward reuse each weight byte four times as often
    assert jump["intensity"].min() > 3 * decode["intensity"].max()
    assert (refresh["bound"] == "compute").all() and (refresh["intensity"] > refresh["ridge"]).all()
    assert (decode["bound"] == "memory").all() and (decode["intensity"] < decode["ridge"]).all()
    # nothing beats the roof: achieved MAC/s under the peak
    assert (tpu["fraction_of_peak"] <= 1).all()


def test_sensitivity_moves_the_right_way(study):
    sens = pd.read_csv(study / "odb_sensitivity.csv")
    tps = sens[sens["assumption"] == "tokens_per_step"].sort_values("value")
    assert tps["Fast/vanilla"].is_monotonic_increasing
    accept = sens[sens["assumption"] == "odb.jump_acceptance"].sort_values("value")
    assert accept["ODB/Fast"].is_monotonic_increasing


def test_markdown_has_the_tables_and_findings(study):
    md = (study / "odb.md").read_text()
    for heading in ("## Latency and speedups", "## Phases", "## Sensitivity", "## Findings"):
        assert heading in md
    assert "16.5-25.7x" in md and "2.63-6.3x" in md  # the paper's ranges beside archsim's
    assert md.count("\n- ") >= 3
