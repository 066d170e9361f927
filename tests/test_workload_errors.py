"""Workload inputs (L2C masks, model configs, dLLM traces) and the workload summary: each
defect of issue 15, reproduced and pinned."""

import json
import os
import resource
import subprocess
import sys

import pytest

from archsim.config.loader import parse_overrides
from archsim.errors import ConfigError
from archsim.ir.summary import summarize
from archsim.workloads import load_workload
from archsim.workloads import schedules
from archsim.workloads.dit import DiTWorkload
from tests.conftest import ROOT, WORKLOADS

D, T = 1152, 256  # DiT-XL/2 at 256x256: hidden size, tokens
ATTN = 4 * T * D * D + 2 * T * T * D  # q, k, v, o and the score and context matmuls of one block
MLP = 8 * T * D * D  # fc1 (d -> 4d) and fc2 of one block
ADALN = 6 * D * D  # one block's adaLN projection, on the one conditioning row
# one forward, batch 1 without CFG: patch embedding (2 x 2 x 4 -> d), timestep MLP (256 -> d -> d),
# 28 blocks, final adaLN (d -> 2d) and linear (d -> 2 x 2 x 8)
FORWARD = 16 * T * D + 256 * D + D * D + 28 * (ADALN + ATTN + MLP) + 2 * D * D + 32 * T * D
# weights one forward reads besides the blocks' (bf16 elements): patch and timestep embeddings,
# the class table's one row, the sin-cos position table, the final layer
TOP_WEIGHTS = 16 * D + 256 * D + D * D + D + T * D + 2 * D * D + 32 * D


def dit(schedule, steps):
    return DiTWorkload(kind="dit", name="dit", steps=steps, schedule=schedule).build(None)


def mask(tmp_path, rows, name="mask.csv"):
    path = tmp_path / name
    path.write_text("step,block,attn,mlp\n" + "".join(f"{r}\n" for r in rows))
    return path


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))  # a regression fails, not the machine


def cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-c", "from archsim.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout, preexec_fn=_limit_memory)


# -- 1. L2C masks ------------------------------------------------------------------------

def test_l2c_mask_caching_different_blocks_per_step(tmp_path):
    # step 1 serves block 0's attention and block 1's MLP from cache, step 3 the attention of
    # blocks 0-2: two plans, two phases (refused before as "phase names must be unique")
    path = mask(tmp_path, ["1,0,1,0", "1,1,0,1", "3,0,1,0", "3,1,1,0", "3,2,1,0"])
    w = dit(f"l2c:mask={path}", 4)
    assert [(p.name, p.repeat) for p in w.phases] == [
        ("full+outputs cache", 2), ("l2c cached attn 0 mlp 1", 1), ("l2c cached attn 0-2", 1)]
    assert summarize(dit(None, 1)).macs == FORWARD  # the hand count is right
    macs = {p.name: p.graph.macs for p in w.phases}
    assert macs["l2c cached attn 0 mlp 1"] == FORWARD - ATTN - MLP
    assert macs["l2c cached attn 0-2"] == FORWARD - 3 * ATTN
    assert w.macs == 4 * FORWARD - 4 * ATTN - MLP


def test_phase_names_are_distinct_for_distinct_plans():
    a = schedules.StepPlan("l2c", skip=((0,), ()))
    b = schedules.StepPlan("l2c", skip=((1,), ()))
    assert schedules.phase_names([a, b, a]) == {a: "l2c cached attn 0", b: "l2c cached attn 1"}
    # a label two different plans share is numbered, never repeated
    q, k = (schedules.StepPlan("icc", ranks=((layer, 128),)) for layer in "qk")
    assert q.label == k.label and schedules.phase_names([q, k, q]) == {q: "icc r128", k: "icc r128 #2"}


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_l2c_mask_fifo_and_device_refused_not_read(tmp_path, special):
    # in a child process: before the fix a FIFO blocked forever and /dev/zero was read until
    # memory ran out
    path = tmp_path / "mask.csv" if special == "fifo" else special
    if special == "fifo":
        os.mkfifo(path)
    proc = cli("workload", "workloads/dit_xl_2.yaml", "--schedule", f"l2c:mask={path}")
    assert proc.returncode == 2, proc.stderr
    assert f"{path}: is not a regular file, expected an L2C mask CSV" in proc.stderr


def test_l2c_mask_directory_refused(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path}: is a directory, expected an L2C mask CSV"):
        schedules.L2C(mask=str(tmp_path)).plans(4)


def test_l2c_mask_size_is_bounded(tmp_path):
    big = tmp_path / "big.csv"
    with big.open("wb") as f:  # sparse: no disk used, and refused before any read
        f.truncate(schedules.MAX_MASK_BYTES + 1)
    with pytest.raises(ConfigError, match=r"big.csv: file is 16,777,217 bytes; archsim reads L2C masks of at "
                                          r"most 16,777,216 bytes \(16 MiB\)"):
        schedules.L2C(mask=str(big)).plans(4)


def test_l2c_mask_rows_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(schedules, "MAX_MASK_ROWS", 3)
    path = mask(tmp_path, [f"{s},0,1,0" for s in range(4)])
    with pytest.raises(ConfigError, match=r"mask.csv:5: more than 3 rows; archsim's limit for an L2C mask"):
        schedules.L2C(mask=str(path)).plans(4)
    schedules.L2C(mask=str(mask(tmp_path, [f"{s},0,1,0" for s in range(3)]))).plans(4)  # at the limit


@pytest.mark.parametrize("rows, where, message", [
    (["1,0,1"], ":2", "the row has 3 cells, expected 4 (step, block, attn, mlp)"),
    (["1,0,1,0,1"], ":2", "the row has 5 cells, expected 4 (step, block, attn, mlp)"),
    (["1,0,2,0"], ":2: attn", "expected 0 (computed) or 1 (from cache), got '2'"),
    (["-1,0,1,0"], ":2: step", "expected a whole number from 0, got '-1'"),
    (["1,x,1,0"], ":2: block", "expected a whole number from 0, got 'x'"),
    (["１,0,1,0"], ":2: step", "expected a whole number from 0, got '１'"),  # a full-width digit
    (["1,1_0,1,0"], ":2: block", "expected a whole number from 0, got '1_0'"),
    (["1,0,1,0", "", "1,0,0,1"], ":4", "a second row for step 1, block 0 (the first is at line 2); "
     "expected one row per step and block"),
    (["1,28,1,0"], ": block", "step 1 caches the attn of block 28; the model has 28 blocks, 0 to 27"),
])
def test_l2c_mask_bad_rows(tmp_path, rows, where, message):
    path = mask(tmp_path, rows)
    with pytest.raises(ConfigError) as exc:
        dit(f"l2c:mask={path}", 4)
    assert str(exc.value) == f"{path}{where}: {message}"


def test_l2c_mask_bad_header(tmp_path):
    for header, message in [("step,block,attn,mlp,extra", "unknown column 'extra'"),
                            ("step,block,attn", "missing column 'mlp'"),
                            ("step,block,attn,attn,mlp", "repeated column 'attn'")]:
        path = tmp_path / "h.csv"
        path.write_text(header + "\n")
        with pytest.raises(ConfigError, match=f"h.csv:1: {message}; expected the columns step, block, attn, mlp"):
            schedules.L2C(mask=str(path)).plans(4)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ConfigError, match="the mask is empty"):
        schedules.L2C(mask=str(tmp_path / "empty.csv")).plans(4)


# -- 2. a phase's weights: only the copies its ops touch ----------------------------------

def test_speca_verify_phase_reads_one_block_of_weights():
    phases = {p.name: p for p in summarize(dit("speca", 12)).phases}
    full, verify = phases["full+taylor2 cache"], phases["speca m2 verify1"]
    assert full.weight_bytes_read == 2 * (TOP_WEIGHTS + 28 * (ADALN + 12 * D * D))
    # the forecast recomputes every block's adaLN; one block runs in full to verify
    assert verify.weight_bytes_read == 2 * (TOP_WEIGHTS + 28 * ADALN + 12 * D * D)
    assert verify.intensity == verify.macs / verify.min_bytes


def test_l2c_phase_reads_the_weights_of_what_it_computes(tmp_path):
    path = mask(tmp_path, ["1,0,1,0", "1,1,1,0", "1,2,1,0", "1,5,0,1"])
    phases = {p.name: p for p in summarize(dit(f"l2c:mask={path}", 2)).phases}
    step = phases["l2c cached attn 0-2 mlp 5"]
    # every block's adaLN; the attention of 25 blocks and the MLP of 27
    assert step.weight_bytes_read == 2 * (TOP_WEIGHTS + 28 * ADALN + 25 * 4 * D * D + 27 * 8 * D * D)
    assert step.cache_bytes_read == 2 * 4 * T * D  # the four cached outputs, not all 28 blocks' two


def test_full_stacks_still_read_every_copy():
    s = summarize(load_workload(WORKLOADS / "llama2_7b.yaml"))
    layer = 4 * 4096 * 4096 + 3 * 4096 * 11008
    prefill = s.phases[0]
    assert prefill.weight_bytes_read == 2 * (32 * layer + 32000 * 4096 + 1024 * 4096)  # + the looked-up rows


# -- 3 and 4. model configs -----------------------------------------------------------------

def model_workload(tmp_path, config: str, model="model.json"):
    (tmp_path / "model.json").write_text(config)
    path = tmp_path / "w.yaml"
    path.write_text(f"extends: {WORKLOADS / 'llama2_7b.yaml'}\nmodel: {model}\n")
    return path


LLAMA = (WORKLOADS / "models" / "llama2_7b.json").read_text()


def load_error(path):
    with pytest.raises(ConfigError) as exc:
        load_workload(path)
    return str(exc.value)


def test_config_json_duplicate_key(tmp_path):
    w = model_workload(tmp_path, LLAMA.replace('"hidden_size": 4096,', '"hidden_size": 4096, "hidden_size": 5120,'))
    assert load_error(w).startswith(f"{tmp_path}/model.json: hidden_size: duplicate key")
    nested = LLAMA.replace('"rope_scaling": null', '"rope_scaling": {"type": "linear", "type": "dynamic"}')
    message = load_error(model_workload(tmp_path, nested))
    assert message.startswith(f"{tmp_path}/model.json: rope_scaling.type: duplicate key")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_config_json_non_finite_value(tmp_path, value):
    w = model_workload(tmp_path, LLAMA.replace('"rms_norm_eps": 1e-05', f'"rms_norm_eps": {value}'))
    message = load_error(w)
    assert message.startswith(f"{tmp_path}/model.json: rms_norm_eps: Input should be a finite number"), message
    assert message.endswith(f"(the model config named by {w}, key model)")


def test_config_json_missing_key_blames_the_json(tmp_path):
    config = json.loads(LLAMA)
    del config["vocab_size"]
    w = model_workload(tmp_path, json.dumps(config))
    assert load_error(w) == (f"{tmp_path}/model.json: vocab_size: required key is missing "
                             f"(the model config named by {w}, key model)")
    # through ``from:``, the config's own key, not the workload's model.vocab_size
    w = model_workload(tmp_path, json.dumps(config), "{from: model.json, hidden_size: 4096}")
    assert load_error(w) == (f"{tmp_path}/model.json: vocab_size: required key is missing "
                             f"(the model config named by {w}, key model.from)")


@pytest.mark.parametrize("fields, key, message", [
    ({"num_attention_heads": 33, "num_key_value_heads": 33}, "num_attention_heads",
     "hidden_size (4096) is not divisible by num_attention_heads (33)"),
    ({"num_key_value_heads": 5}, "num_key_value_heads",
     "num_attention_heads (32) must be a multiple of num_key_value_heads (5)"),
])
def test_heads_blame_the_right_field(tmp_path, fields, key, message):
    w = model_workload(tmp_path, json.dumps(json.loads(LLAMA) | fields))
    assert load_error(w).startswith(f"{tmp_path}/model.json: {key}: {message}")
    inline = ", ".join(f"{k}: {v}" for k, v in fields.items())
    w = model_workload(tmp_path, LLAMA, f"{{from: model.json, {inline}}}")
    assert load_error(w).startswith(f"{w}: model.{key}: {message}")
    # with head_dim given, heads need not divide the hidden size
    if key == "num_attention_heads":
        load_workload(model_workload(tmp_path, json.dumps(json.loads(LLAMA) | fields | {"head_dim": 128})))


# -- 5. dLLM traces -------------------------------------------------------------------------

def trace_workload(tmp_path, rows):
    (tmp_path / "t.csv").write_text("kind,q_len,kv_len,count\n" + "".join(f"{r}\n" for r in rows))
    path = tmp_path / "w.yaml"
    path.write_text(f"extends: {WORKLOADS / 'llada_8b_trace.yaml'}\ntrace: t.csv\n")
    return path


@pytest.mark.parametrize("rows, line, cells", [
    (["refresh,1280,1280,1,99"], 2, 5),
    (["refresh,1280,1280,1", "", "jump,128,1376,6,1,2"], 4, 6),
    (["refresh,1280,1280"], 2, 3),
])
def test_trace_row_with_wrong_cell_count(tmp_path, rows, line, cells):
    assert load_error(trace_workload(tmp_path, rows)) == (
        f"{tmp_path}/t.csv:{line}: the row has {cells} cells, expected 4 (kind, q_len, kv_len, count)")


def test_trace_digits_are_ascii(tmp_path):
    # int() would read the full-width '１２８' as 128; it stays text, which validation refuses
    assert load_error(trace_workload(tmp_path, ["refresh,１２８,1280,1"])) == (
        f"{tmp_path}/t.csv:2: q_len: Input should be a valid integer")


def test_a_schedule_on_a_workload_other_than_dit_names_its_kind():
    from archsim.config.loader import parse_overrides

    with pytest.raises(ConfigError) as exc:
        load_workload(WORKLOADS / "llama2_7b.yaml", parse_overrides(["schedule=icc"], "--schedule"))
    assert str(exc.value) == ("--schedule schedule=icc: schedule: feature-caching schedules apply only to "
                              "diffusion transformers (kind: dit or diffusion_transformer); this workload is kind: llm; "
                              "its decode schedules: draft, eagle, firp, layer_skip, medusa, self_spec, ssd, vanilla")
    with pytest.raises(ConfigError) as exc:  # a kind with no schedule key
        load_workload(WORKLOADS / "gpt3_30b_layer_decode.yaml", parse_overrides(["schedule=icc"], "--schedule"))
    assert str(exc.value).endswith("kind: schedules apply only to diffusion transformers (feature caching: kind: dit "
                                   "or diffusion_transformer) and language models (decoding: kind: llm); this "
                                   "workload is kind: transformer_block")


def test_trace_empty_cell_is_an_absent_value(tmp_path):
    w = load_workload(trace_workload(tmp_path, ["refresh,1280,1280,"]))
    assert [(p.name, p.repeat) for p in w.phases] == [("refresh q1280 kv1280", 1)]


# -- 6. compare-schedules on a workload without schedules -------------------------------------

def test_compare_schedules_names_the_workload_kind(tmp_path):
    from archsim.dse.compare import compare

    with pytest.raises(ConfigError) as exc:  # a cache schedule given to a language model
        compare([], WORKLOADS / "llama2_7b.yaml", ["icc"], parse_overrides([]))
    assert str(exc.value) == (f"{WORKLOADS / 'llama2_7b.yaml'}: kind: feature-caching schedules apply only to "
                              "diffusion transformers (kind: dit or diffusion_transformer); this workload is kind: llm")
    with pytest.raises(ConfigError) as exc:  # a kind with no schedules at all
        compare([], WORKLOADS / "gpt3_30b_layer_decode.yaml", ["icc"], parse_overrides([]))
    assert str(exc.value) == (f"{WORKLOADS / 'gpt3_30b_layer_decode.yaml'}: kind: schedules apply only to diffusion "
                              "transformers (feature caching: kind: dit or diffusion_transformer) and language models "
                              "(decoding: kind: llm); this workload is kind: transformer_block")
    # a single layer has no schedules of either family (a language model's decode schedules run:
    # tests/test_llm_schedules_compare.py)
    proc = cli("compare-schedules", "hw_configs/tpuv4i.yaml", "--workload", "workloads/gpt3_30b_layer_decode.yaml",
               "--out", str(tmp_path))
    assert proc.returncode == 2 and "schedule=none" not in proc.stderr
    assert "kind: transformer_block" in proc.stderr and "Traceback" not in proc.stderr
