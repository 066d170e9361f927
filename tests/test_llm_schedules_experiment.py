"""The speculative-decoding study (experiments/speculative_decoding.py) in its quick mode: its
outputs, and the properties its argument rests on."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import speculative_decoding
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    out = tmp_path_factory.mktemp("speculative")
    assert speculative_decoding.main(["--out", str(out), "--quick"]) == 0
    return out


def test_outputs_written(study):
    for name in ("speculative.csv", "speculative_breakeven.csv", "speculative_passes.csv", "speculative.md",
                 "speculative_speedup.png", "speculative_passes.png"):
        assert (study / name).stat().st_size > 0, name


def test_overhead_at_zero_and_gain_with_acceptance(study):
    frame = pd.read_csv(study / "speculative.csv")
    spec = frame[frame["label"] != "vanilla"]
    assert set(spec["chip"]) == {"TPUv4i", "CIM Design B", "A100 80GB"}
    for _, curve in spec.groupby(["label", "chip"]):
        speedup = curve.sort_values("acceptance")["speedup_vs_vanilla"].to_numpy()
        assert speedup[0] < 1.0 and (np.diff(speedup) > 0).all()
    # tokens per round from the i.i.d. model: k = 4 at a = 0.6: (1 - 0.6^5) / 0.4
    draft = spec[(spec["label"] == "draft k=4") & (spec["acceptance"] == 0.6)]
    assert np.allclose(draft["tokens_per_round"], (1 - 0.6 ** 5) / 0.4)


def test_a_one_token_pass_is_a_decode_step_and_wider_passes_cost_at_least_as_much(study):
    passes = pd.read_csv(study / "speculative_passes.csv")
    for _, sub in passes.groupby("chip"):
        ratio = sub.sort_values("q")["pass_over_step"].to_numpy()
        assert ratio[0] == pytest.approx(1.0) and (ratio[1:] >= 0.99).all()


def test_markdown_has_the_tables_and_findings(study):
    text = (study / "speculative.md").read_text()
    for heading in ("## Vanilla decoding", "## One verification pass", "## Speed-up over vanilla by acceptance rate",
                    "## Break-even acceptance", "## Findings"):
        assert heading in text
