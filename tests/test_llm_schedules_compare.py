"""``archsim compare-schedules`` on a language model: rows, serving figures, the speed-up against
acceptance per chip, the plots, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from archsim.dse.compare_llm import ACCEPTANCE_GRID, break_even

from conftest import HW, WORKLOADS, run_cli

WORKLOAD = f"""kind: llm
name: small
model: {{from: {WORKLOADS / "models" / "llama2_7b.json"}, num_hidden_layers: 4}}
batch: 1
prompt_len: 128
output_len: 33
decode_groups: 2
precision: {{weights: int8, activations: int8, kv: int8}}
"""


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    (folder / "small.yaml").write_text(WORKLOAD)
    proc = run_cli("compare-schedules", str(HW / "tpuv4i.yaml"), str(HW / "a100_80gb.yaml"), "--workload",
                   str(folder / "small.yaml"), "--schedule", "medusa:heads=3,tree=chain,acceptance=0.5",
                   "--schedule", "self_spec:exit_layer=1,k=3,acceptance=0.5", "--out", str(folder / "out"), "--json")
    assert proc.returncode == 0, proc.stderr
    return folder / "out", pd.DataFrame(json.loads(proc.stdout))


def test_rows_per_schedule_and_chip_with_vanilla_as_reference(compared):
    out, frame = compared
    assert list(frame["schedule"]) == ["vanilla", "medusa:heads=3,tree=chain,acceptance=0.5",
                                       "self_spec:exit_layer=1,k=3,acceptance=0.5"] * 2
    vanilla = frame[frame["schedule"] == "vanilla"]
    assert (vanilla["speedup_vs_vanilla"] == 1.0).all() and (vanilla["tokens_per_round"] == 1.0).all()
    # a = 0.5, 3 drafts: (1 - 0.5^4) / 0.5 = 1.875 tokens a round; P(accepted = 0..3) = .5/.25/.125/.125
    spec = frame[frame["schedule"] != "vanilla"]
    assert np.allclose(spec["tokens_per_round"], 1.875)
    assert set(spec["accepted_distribution"]) == {"0.500/0.250/0.125/0.125"}
    for _, row in frame.iterrows():
        # 33 tokens: tokens/s over the whole run, energy per token over the whole energy
        assert row["tokens_per_s"] == pytest.approx(33 / row["latency_s"])
        assert row["energy_per_token_j"] == pytest.approx(row["energy_j"] / 33)
        assert 0 < row["tpot_s"] < row["latency_s"] / 32  # the decode time (prefill excluded) over 32 tokens
    assert (out / "schedules.csv").exists() and (out / "schedules.parquet").exists()


def test_the_speedup_against_acceptance_per_chip(compared):
    out, frame = compared
    curves = pd.read_csv(out / "speedup_vs_acceptance.csv")
    assert len(curves) == 2 * 2 * len(ACCEPTANCE_GRID)
    for (_, _), curve in curves.groupby(["schedule", "hardware"]):
        assert list(curve["acceptance"]) == list(ACCEPTANCE_GRID)
        speedup = curve["speedup_vs_vanilla"].to_numpy()
        assert speedup[0] < 1.0 and (np.diff(speedup) >= 0).all()
        # a = 1: every draft accepted, k + 1 = 4 tokens a round
        assert curve["tokens_per_round"].iloc[-1] == pytest.approx(4.0)
    # the curve at 0.5 is the row run at 0.5
    for _, row in frame[frame["schedule"] != "vanilla"].iterrows():
        point = curves[(curves["schedule"] == row["schedule"]) & (curves["hardware"] == row["hardware"])
                       & (curves["acceptance"] == 0.5)]
        assert point["speedup_vs_vanilla"].iloc[0] == pytest.approx(row["speedup_vs_vanilla"])
    for name in ("speedup_vs_acceptance.png", "speedup_vs_acceptance.svg", "schedules.png"):
        assert (out / name).stat().st_size > 1000


def test_break_even_interpolates_between_grid_points():
    curve = pd.DataFrame({"acceptance": [0.0, 0.5, 1.0], "speedup_vs_vanilla": [0.6, 0.8, 1.2]})
    assert break_even(curve) == pytest.approx(0.75)  # 0.8 at 0.5, 1.2 at 1: 1 at 0.5 + 0.2/0.4 x 0.5
    assert np.isnan(break_even(curve.assign(speedup_vs_vanilla=[0.5, 0.6, 0.9])))


@pytest.mark.parametrize("schedule, message", [
    ("medusa:heads=0", "schedule.heads"),
    ("medusa:acceptance=1.2", "an acceptance rate is a probability in [0, 1]"),
    ("draft:k=2", "schedule.model"),
    ("icc", "feature-caching schedules apply only to diffusion transformers"),
    ("medusa:heads=2,tree=chain,acceptance=no_such_trace.csv", "no_such_trace.csv: file not found"),
])
def test_bad_schedules_exit_2_in_one_line(tmp_path, schedule, message):
    (tmp_path / "small.yaml").write_text(WORKLOAD)
    proc = run_cli("compare-schedules", str(HW / "tpuv4i.yaml"), "--workload", str(tmp_path / "small.yaml"),
                   "--schedule", schedule, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr, proc.stderr


def test_the_workload_files_own_schedule_keeps_its_relative_paths(tmp_path):
    # a draft model and an acceptance trace beside the workload, run from another folder: the
    # file's own schedule is run as the file says; the acceptance sweep changes only acceptance
    folder = tmp_path / "spec"
    folder.mkdir()
    (folder / "draft.yaml").write_text(
        "model_type: llama\nhidden_size: 2048\nintermediate_size: 5504\nnum_hidden_layers: 1\n"
        "num_attention_heads: 16\nnum_key_value_heads: 16\nvocab_size: 32000\nrms_norm_eps: 1.0e-5\n")
    # 4 verifications accepting 0, 0, 3, 1 drafts: 1 on average, 2 tokens a round
    (folder / "accept.csv").write_text("accepted,count\n0,2\n3,1\n1,1\n")
    (folder / "small.yaml").write_text(WORKLOAD + "schedule: {name: draft, model: draft.yaml, k: 3, "
                                       "acceptance: accept.csv}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # no --schedule: the default list, the file's own schedule first
    run = run_cli("compare-schedules", str(HW / "tpuv4i.yaml"), "--workload", str(folder / "small.yaml"),
                  "--out", str(tmp_path / "out2"), "--json", cwd=elsewhere)
    assert run.returncode == 0, run.stderr
    frame = pd.DataFrame(json.loads(run.stdout))
    own = frame[frame["schedule"] == "draft (workload file)"].iloc[0]
    assert own["tokens_per_round"] == pytest.approx(2.0)
    assert own["accepted_distribution"] == "0.500/0.250/0.000/0.250"
    curves = pd.read_csv(tmp_path / "out2" / "speedup_vs_acceptance.csv")
    draft = curves[curves["schedule"] == "draft (workload file)"]
    assert list(draft["acceptance"]) == list(ACCEPTANCE_GRID)
    # a = 0.5, k = 3: (1 - 0.5^4) / 0.5 = 1.875 tokens a round; a = 1: 4
    assert draft[draft["acceptance"] == 0.5]["tokens_per_round"].iloc[0] == pytest.approx(1.875)
    assert draft["tokens_per_round"].iloc[-1] == pytest.approx(4.0)
