"""The ICC study (experiments/icc.py) in quick mode: its numbers, not just its files."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def icc():
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import icc
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    return icc


@pytest.fixture(scope="module")
def out(icc, tmp_path_factory):
    path = tmp_path_factory.mktemp("icc")
    assert icc.main(["--out", str(path), "--quick"]) == 0
    return path


@pytest.fixture(scope="module")
def frame(out):
    return pd.read_csv(out / "icc.csv")


@pytest.fixture(scope="module")
def parts(out):
    return pd.read_csv(out / "icc_breakdown.csv")


def test_every_schedule_on_every_chip(frame, icc):
    assert len(frame) == len(icc.runs(quick=True)) * len(icc.CHIPS)
    assert set(frame.chip) == set(icc.CHIPS)
    assert (frame.latency_s > 0).all() and (frame.energy_j > 0).all()


def test_icc_does_less_work_than_ddim_at_the_same_steps(frame, icc):
    ddim = frame[frame.schedule == "none"].set_index(["chip", "steps"]).macs
    cached = frame[frame.schedule != "none"]
    assert (cached.macs.to_numpy() < ddim.loc[list(zip(cached.chip, cached.steps))].to_numpy()).all()
    assert (cached.cached_steps > 0).all() and (frame[frame.schedule == "none"].cached_steps == 0).all()


def test_per_forward_macs_match_the_closed_form(frame, icc):
    icc_rows = frame[frame.schedule == icc.DEFAULT]
    assert icc_rows.full_forward_macs.to_numpy() == pytest.approx(icc.PAPER["full_forward_macs"], rel=0.005)
    assert icc_rows.cached_forward_macs.to_numpy() == pytest.approx(icc.PAPER["cached_forward_macs_r128"], rel=0.005)


def test_latency_and_energy_fall_less_than_macs_on_both_chips(frame, icc):
    ref = icc.STEPS[True][1]
    rows = frame[(frame.schedule == icc.DEFAULT) & (frame.steps == ref)]
    assert len(rows) == len(icc.CHIPS)
    assert (rows.mac_saving > 0).all()
    assert (rows.latency_saving < rows.mac_saving).all()
    assert (rows.energy_saving < rows.mac_saving).all()


def test_breakdown_explains_the_cached_step(parts, icc):
    assert "other" not in set(parts.category), "an op no category claims"
    shares = parts.groupby(["chip", "step"]).share.sum()
    assert shares.to_numpy() == pytest.approx(1.0)
    for chip in icc.CHIPS:
        steps = parts[parts.chip == chip].groupby("step")
        # the categories with ops in the step (every category has a row; an empty one no energy)
        cats = {step: set(g.category[g.energy_j > 0]) for step, g in steps}
        assert "low-rank GEMMs A, B" in cats["ICC cached step"] and "full linear layers" not in cats["ICC cached step"]
        assert "cache writes" in cats["ICC full step"] and "cache writes" not in cats["DDIM step"]
        total = steps[["latency_s", "macs"]].sum()
        cached, full = total.loc["ICC cached step"], total.loc["DDIM step"]
        # the whole point: a cached step keeps much more of the time than of the MACs
        assert cached.latency_s / full.latency_s > cached.macs / full.macs
        assert total.loc["ICC full step"].latency_s > full.latency_s  # filling the cache costs time


def test_markdown_and_figures(out):
    text = (out / "icc.md").read_text()
    assert "| schedule | chip | latency |" in text and "## Findings" in text
    assert "not reported" in text and "45%" in text
    for name in ("icc_savings.png", "icc_breakdown.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
