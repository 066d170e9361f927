"""The JSON Schemas of the config files (schemas/) and the config reference page: valid, in step
with the models, passed by every bundled file, strict about unknown keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from archsim.cli import cli
from archsim.config.json_schema import SCHEMA_NAMES, schema, schema_text, subschemas
from archsim.config.loader import load_layered
from archsim.config.reference import PAGE, REGENERATE, outputs
from archsim.config.yamlio import read_yaml_mapping
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
HARDWARE = sorted((ROOT / "hw_configs").rglob("*.yaml"))
WORKLOADS = sorted((ROOT / "workloads").glob("*.yaml"))


def _validator_class():
    return pytest.importorskip("jsonschema", reason="a dev dependency: pip install -e '.[dev]'").Draft202012Validator


@pytest.fixture(scope="module")
def validators() -> dict:
    return {name: _validator_class()(schema(name)) for name in SCHEMA_NAMES}


@pytest.fixture(scope="module")
def generated() -> dict[Path, str]:
    return outputs()


def problems(validator, data) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message[:300]}" for e in validator.iter_errors(data)]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_each_schema_is_valid_json_schema_2020_12(name):
    document = schema(name)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    _validator_class().check_schema(document)


def test_the_bundled_files_are_there():
    assert len(HARDWARE) >= 10 and any(p.parent.name == "systems" for p in HARDWARE)
    assert len(WORKLOADS) >= 10


@pytest.mark.parametrize("path", HARDWARE, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_bundled_hardware_config_passes_the_chip_schema(path, validators):
    """As written (a file with extends: gives part of the keys) and resolved (every key)."""
    raw = read_yaml_mapping(path)
    assert problems(validators["chip"], raw) == []
    resolved = load_layered(path).data
    assert "extends" not in resolved
    assert problems(validators["chip"], resolved) == []


@pytest.mark.parametrize("path", HARDWARE, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_bundled_system_and_sweep_section_passes_its_schema(path, validators):
    resolved = load_layered(path).data
    for section in ("system", "sweep"):
        if resolved.get(section) is not None:
            assert problems(validators[section], resolved[section]) == [], section


def test_the_bundled_explore_spec_passes_the_chip_and_explore_schemas_and_validates(validators):
    # an explore: section is a hardware config's key as sweep: is: archsim validate and run read
    # the file; its unknown keys are errors
    path = ROOT / "experiments" / "explore_cim_dit.yaml"
    resolved = load_layered(path).data
    assert problems(validators["chip"], resolved) == []
    assert problems(validators["explore"], resolved["explore"]) == []
    assert problems(validators["explore"], {**resolved["explore"], "bogus": 1})
    proc = run_cli("validate", str(path))
    assert proc.returncode == 0, proc.stderr


def test_the_bundled_systems_and_sweeps_are_checked():
    systems = [p for p in HARDWARE if "system" in load_layered(p).data]
    sweeps = [p for p in HARDWARE if (load_layered(p).data.get("sweep") or {}).get("axes")]
    assert len(systems) >= 5 and sweeps


@pytest.mark.parametrize("path", WORKLOADS, ids=lambda p: p.name)
def test_every_bundled_workload_passes_the_workload_schema(path, validators):
    assert problems(validators["workload"], read_yaml_mapping(path)) == []
    assert problems(validators["workload"], load_layered(path).data) == []


def _with(data: dict, path: str, value) -> dict:
    """A copy of ``data`` with ``value`` at the dotted ``path``."""
    data = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    target = data
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    return data


@pytest.mark.parametrize("file, key", [
    ("tpuv4i.yaml", "bogus"),
    ("tpuv4i.yaml", "hbm.bogus"),
    ("tpuv4i.yaml", "mxu.bogus"),
    ("tpuv4i.yaml", "system.parallelism.bogus"),
    ("tpuv4i.yaml", "dispatch.bogus"),
    ("cim_tpu.yaml", "mxu.cim.bogus"),
    ("cim_tpu.yaml", "sweep.bogus"),
    ("a100_80gb.yaml", "sm.bogus"),
    ("a100_80gb.yaml", "collectives.protocols.ll.bogus"),
    ("systems/tpuv4i_x4_tensor.yaml", "system.bogus"),  # as written: a file with extends:
])
def test_an_unknown_key_fails_the_chip_schema(file, key, validators):
    """additionalProperties is false, as the models forbid extra keys; in a file with extends:
    too."""
    path = ROOT / "hw_configs" / file
    data = read_yaml_mapping(path) if "systems" in file else load_layered(path).data
    errors = list(validators["chip"].iter_errors(_with(data, key, 1)))
    assert errors
    assert any("'bogus' was unexpected" in message for message in _messages(errors)), _messages(errors)


def _messages(errors) -> list[str]:
    """The errors' messages, and those of the union members each failed (a section of several
    kinds, a file with extends:)."""
    return [m for e in errors for m in [e.message] + _messages(e.context)]


def test_an_unknown_key_fails_the_section_and_workload_schemas(validators):
    assert problems(validators["system"], {"chips": 2, "bogus": 1})
    assert problems(validators["sweep"], {"axes": {"mxu.count": [2, 4]}, "bogus": 1})
    workload = load_layered(ROOT / "workloads" / "llama2_7b.yaml").data
    assert problems(validators["workload"], {**workload, "bogus": 1})
    assert problems(validators["workload"], {"extends": "llama2_7b.yaml", "bogus": 1})


def test_a_quantity_is_a_string_with_its_unit(validators):
    hw = load_layered(ROOT / "hw_configs" / "tpuv4i.yaml").data
    assert problems(validators["chip"], _with(hw, "hbm.bandwidth", "1.2 TB/s")) == []
    assert problems(validators["chip"], _with(hw, "hbm.bandwidth", 614))  # a number: no unit
    assert problems(validators["chip"], _with(hw, "hbm.bandwidth", "614"))
    bandwidth = schema("chip")["$defs"]["MemoryLevelConfig"]["properties"]["bandwidth"]
    assert bandwidth["type"] == "string" and bandwidth["examples"] == ["614 GB/s"]


def test_the_kind_picks_the_model(validators):
    a100 = load_layered(ROOT / "hw_configs" / "a100_80gb.yaml").data
    assert problems(validators["chip"], {**a100, "kind": "tpu"})
    assert problems(validators["chip"], {**a100, "kind": "npu"})
    assert problems(validators["workload"], {"kind": "npu", "name": "x"})


def test_defaults_are_written_as_a_file_writes_them():
    call = schema("chip")["$defs"]["DispatchConfig"]["properties"]["call"]
    assert call["default"] == {"default": "0 s"}  # not pydantic's SI float 0.0


def test_every_config_key_has_a_description():
    """Every key of archsim's files says what it means: the hardware configs', their sections'
    and the workload files' (every kind's)."""
    missing = [f"{name}: {model}.{key}" for name in SCHEMA_NAMES
               for model, definition in schema(name)["$defs"].items() if not model.startswith("Partial")
               for node in subschemas(definition) for key, prop in node.get("properties", {}).items()
               if not prop.get("description")]
    assert missing == []


def test_the_committed_schemas_and_page_are_generated_from_the_models(generated):
    stale = [str(path) for path, text in generated.items()
             if not (ROOT / path).is_file() or (ROOT / path).read_text(encoding="utf-8") != text]
    assert stale == [], f"{', '.join(stale)} differ from the models; regenerate them with {REGENERATE}"


def test_the_page_lists_nested_keys_with_units_and_defaults(generated):
    page = generated[PAGE]
    for line in ("| `hbm.bandwidth` | bandwidth | B/s (`614 GB/s`) | *required* |",
                 "| `mxu.count` (kind `systolic`) | integer > 0 |",
                 "| `system.parallelism.tensor` | integer > 0 |  | `1` |",
                 "# yaml-language-server: $schema=../schemas/chip.schema.json"):
        assert line in page
    for kind in ("tpu", "gpu", "llm", "dit", "diffusion_transformer", "dllm"):
        assert f"### kind: {kind}\n" in page


def test_archsim_schema_prints_and_writes_the_schemas(tmp_path):
    runner = CliRunner()
    printed = runner.invoke(cli, ["schema", "chip"])
    assert printed.exit_code == 0, printed.output
    assert printed.output == schema_text("chip")
    written = runner.invoke(cli, ["schema", "--out", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.schema.json" for n in SCHEMA_NAMES)
    assert (tmp_path / "workload.schema.json").read_text(encoding="utf-8") == schema_text("workload")


def test_archsim_schema_usage_errors():
    runner = CliRunner()
    nothing = runner.invoke(cli, ["schema"])
    assert nothing.exit_code == 2 and "--out DIR" in nothing.output
    assert runner.invoke(cli, ["schema", "npu"]).exit_code == 2
    assert runner.invoke(cli, ["schema", "chip", "--markdown"]).exit_code == 2
