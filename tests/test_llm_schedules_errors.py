"""LLM decode schedules: inputs that cannot be modelled are one-line errors naming the workload
file and the key (exit 2 through the CLI), and the files a schedule names (draft models,
acceptance and layer-skip traces) are found relative to the workload file that names them."""

from __future__ import annotations

import pytest
import yaml

from archsim import api
from archsim.errors import ConfigError

from conftest import HW, run_cli

TOY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
       "num_key_value_heads": 2, "vocab_size": 100, "rms_norm_eps": 1e-5}
DRAFT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
         "vocab_size": 100, "rms_norm_eps": 1e-5}


def workload(folder, schedule, name="w.yaml", **extra):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"kind": "llm", "name": "toy", "model": TOY, "batch": 1, "prompt_len": 8, "output_len": 9,
            "decode_groups": 1, "schedule": schedule, **extra}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def error_of(path) -> str:
    with pytest.raises(ConfigError) as info:
        api.load_workload(path)
    text = str(info.value)
    assert len(text.splitlines()) == 1, text
    return text


BAD = [
    # a chain of k and a tree: the tree would silently win
    ({"name": "draft", "model": DRAFT, "k": 3, "tree": [[0], [1]]}, {}, "schedule.tree",
     "give k (a chain of k drafts) or a tree, not both"),
    ({"name": "draft", "model": DRAFT, "tree": []}, {}, "schedule.tree", "an empty tree drafts nothing"),
    # a rate per draft position: 2 heads of a chain draft 2
    ({"name": "medusa", "heads": 2, "tree": "chain", "acceptance": [0.5]}, {}, "schedule.acceptance",
     "the acceptance curve has 1 positions; the schedule drafts 2"),
    ({"name": "medusa", "heads": 2, "tree": "chain", "acceptance": [0.5, 0.5, 0.5]}, {}, "schedule.acceptance",
     "the acceptance curve has 3 positions; the schedule drafts 2"),
    # EAGLE scores top_k + depth x top_k^2 = 2 + 1 x 4 = 6 candidates: at most 6 drafts and the root
    ({"name": "eagle", "depth": 1, "top_k": 2, "total_tokens": 8}, {}, "schedule.total_tokens",
     "8 tokens is the root and 7 drafts, but top_k 2 and depth 1 score 6 candidates"),
    ({"name": "eagle", "total_tokens": 0}, {}, "schedule.total_tokens", "greater than or equal to 2"),
    ({"name": "medusa", "acceptance": True}, {}, "schedule.acceptance", "not true or false"),
    ({"name": "medusa", "heads": 2, "tree": "chain", "acceptance": [True, 0.5]}, {}, "schedule.acceptance",
     "not true or false"),
    ({"name": "draft", "model": {**DRAFT, "vocab_size": 50}}, {}, "schedule.model.vocab_size",
     "the draft model has a vocabulary of 50 tokens, the target 100"),
    ({"name": "draft", "model": {**DRAFT, "hidden_size": "wide"}}, {}, "schedule.model.hidden_size",
     "Input should be a valid integer"),
    ({"name": "draft", "model": {**DRAFT, "depth": 3}}, {}, "schedule.model.depth", "unknown key"),
    ({"name": "draft", "model": "."}, {}, "schedule.model", "is a directory"),
    ({"name": "draft", "model": "no_such_draft.json"}, {}, "schedule.model", "file not found"),
    ({"name": "medusa", "acceptance": "0"}, {}, "schedule.acceptance", "file not found, expected an acceptance trace"),
    ({"name": "medusa", "acceptance": ""}, {}, "schedule.acceptance", "is a directory"),
    ({"name": "layer_skip", "trace": "no_such_skips.csv"}, {}, "schedule.trace", "file not found"),
    # a batch verified in lock-step ends each round with its slowest sequence: batch 1 only
    ({"name": "medusa"}, {"batch": 2}, "batch", "medusa verifies a batch in lock-step"),
    ({"name": "draft", "model": DRAFT}, {"batch": 4}, "batch", "draft verifies a batch in lock-step"),
]


@pytest.mark.parametrize("schedule, extra, key, message", BAD)
def test_inputs_that_cannot_be_modelled_name_file_and_key(tmp_path, schedule, extra, key, message):
    path = workload(tmp_path, schedule, **extra)
    text = error_of(path)
    assert text.startswith(f"{path}: {key}: "), text
    assert message in text, text


def test_the_draft_model_errors_name_schedule_model_once_per_problem(tmp_path):
    path = workload(tmp_path, {"name": "draft", "model": {"hidden_size": 32, "vocab_size": 100}})
    with pytest.raises(ConfigError) as info:
        api.load_workload(path)
    lines = str(info.value).splitlines()
    assert lines and all(line.startswith(f"{path}: schedule.model.") for line in lines), lines
    assert f"{path}: schedule.model.num_hidden_layers: required key is missing" in lines


def test_layer_skipping_keeps_batches(tmp_path):
    api.load_workload(workload(tmp_path, {"name": "layer_skip", "skip_ratio": 0.25}, batch=4))


def test_through_the_cli_exit_2_in_one_line(tmp_path):
    path = workload(tmp_path, {"name": "eagle", "depth": 1, "top_k": 2, "total_tokens": 8})
    proc = run_cli("run", str(HW / "tpuv4i.yaml"), str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {path}: schedule.total_tokens: 8 tokens is the root and 7 drafts, but top_k 2 and depth 1 score "
        "6 candidates (top_k + depth x top_k^2)"]


def test_files_named_by_a_schedule_are_relative_to_the_workload_file(tmp_path, monkeypatch):
    folder = tmp_path / "spec"
    folder.mkdir()
    (folder / "draft.yaml").write_text(yaml.safe_dump(DRAFT))
    # 4 verifications accepting 0, 0, 3, 1 drafts: 1 on average, 2 tokens a round
    (folder / "accept.csv").write_text("accepted,count\n0,2\n3,1\n1,1\n")
    (folder / "skip.csv").write_text("layer,skip\n0,0.5\n1,0\n")
    draft = workload(folder, {"name": "draft", "model": "draft.yaml", "k": 3, "acceptance": "accept.csv"}, "d.yaml")
    skip = workload(folder, {"name": "layer_skip", "trace": "skip.csv"}, "s.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    w = api.load_workload(draft)
    # 8 decode tokens at 2 a round: 4 rounds (3 at 8 + 2 x 1 = 10 keys, the last at 8 + 2 x 3 = 14)
    assert {p.name: p.repeat for p in w.phases if p.name.startswith("verify")} == {"verify@10": 3, "verify@14": 1}
    # 1.5 layers a token: 4 of the 7 steps at 12 keys with 2 layers, 3 with 1
    s = api.load_workload(skip)
    assert {p.name: p.repeat for p in s.phases} == {"prefill": 1, "decode@12 1 layers": 3, "decode@12 2 layers": 4,
                                                   "decode@16 2 layers": 1}
    # an error inside the trace names its line, and the workload key that names it
    (folder / "accept.csv").write_text("accepted\n7\n")
    text = error_of(draft)
    assert text == (f"{folder / 'accept.csv'}:2: accepted: 7 drafts accepted, but the schedule drafts 3 per "
                    f"verification (the acceptance trace named by {draft}, key schedule.acceptance)")
