"""Results bit-identical to the recorded ones (issue 22): performance work must not change any
result. ``tests/golden_cases.py`` evaluates the cases (every point of the bundled sweeps, a
sample of a 10,000-point CIM-TPU space, bundled chips x fast workloads through ``archsim.api``)
and ``tests/data/golden_results.json`` holds what they gave; floats are compared bit for bit
(JSON keeps a float's repr, which round-trips)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REGENERATE = ("if the change is intended (a model change), run `python tests/golden_cases.py` and review the "
              "diff of tests/data/golden_results.json")
SHOWN_CASES, SHOWN_FIELDS = 10, 5


def _golden_cases():
    spec = importlib.util.spec_from_file_location("golden_cases", HERE / "golden_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


golden_cases = _golden_cases()


@pytest.fixture(scope="module")
def computed() -> dict:
    return golden_cases.compute()


@pytest.fixture(scope="module")
def stored() -> dict:
    return json.loads(golden_cases.GOLDEN.read_text())


def _text(value) -> str:
    """A value as JSON text: equal texts are equal bits (NaN included, 1 differs from 1.0)."""
    return json.dumps(value, sort_keys=True)


def _leaves(value, path: str = "") -> dict[str, object]:
    """Nested dicts and lists flattened to 'a.b[2].c' -> leaf value."""
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(_leaves(v, f"{path}.{k}" if path else str(k)))
        return out
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_leaves(v, f"{path}[{i}]"))
        return out
    return {path or "(value)": value}


def _field_diffs(old, new) -> list[str]:
    old_leaves, new_leaves = _leaves(old), _leaves(new)
    missing = object()
    out = []
    for field in sorted(old_leaves.keys() | new_leaves.keys()):
        a, b = old_leaves.get(field, missing), new_leaves.get(field, missing)
        if a is missing or b is missing or _text(a) != _text(b):
            shown = ["(absent)" if v is missing else _text(v) for v in (a, b)]
            out.append(f"{field}: {shown[0]} -> {shown[1]}")
    return out


def differences(stored: dict, computed: dict) -> list[str]:
    """Per differing case, a line naming it and its differing fields (old -> new)."""
    out = []
    for key in sorted(stored.keys() | computed.keys()):
        if key not in computed:
            out.append(f"{key}: stored, but no longer computed")
        elif key not in stored:
            out.append(f"{key}: computed, but not in the stored file")
        elif _text(stored[key]) != _text(computed[key]):
            fields = _field_diffs(stored[key], computed[key])
            more = f" (and {len(fields) - SHOWN_FIELDS} more fields)" if len(fields) > SHOWN_FIELDS else ""
            out.append(f"{key}:" + "".join(f"\n      {f}" for f in fields[:SHOWN_FIELDS]) + more)
    return out


def test_results_bit_identical_to_golden(stored, computed):
    diffs = differences(stored, computed)
    if diffs:
        shown = "\n".join(f"  {d}" for d in diffs[:SHOWN_CASES])
        more = f"\n  ... and {len(diffs) - SHOWN_CASES} more cases" if len(diffs) > SHOWN_CASES else ""
        pytest.fail(f"{len(diffs)} of {len(computed)} golden cases differ from tests/data/golden_results.json "
                    f"(old -> new):\n{shown}{more}\n{REGENERATE}", pytrace=False)


def test_golden_file_covers_every_case(stored, computed):
    missing = sorted(computed.keys() - stored.keys())
    assert not missing, (f"{len(missing)} cases compute() makes are not in tests/data/golden_results.json, e.g. "
                         f"{missing[:5]}; {REGENERATE}")
    # the file as golden_cases.py writes it (sorted, one line per case), and no machine's paths in it
    text = golden_cases.GOLDEN.read_text()
    assert text == golden_cases.dumps(stored), f"tests/data/golden_results.json was not written by golden_cases.py; {REGENERATE}"
    assert str(golden_cases.ROOT) not in text
    kinds = {key.split("|")[0] for key in stored}
    assert {*golden_cases.BUNDLED_SWEEPS, golden_cases.SAMPLE_FILE, "run"} <= kinds


def test_differences_report_fields():
    old = {"a|1": {"latency_s": 0.1, "ops": {"000 :p:q": [1.0, 2.0]}}, "a|2": {"x": 1}}
    new = {"a|1": {"latency_s": math.nextafter(0.1, 1.0), "ops": {"000 :p:q": [1.0, 2.5]}}, "a|3": {"x": 1}}
    lines = differences(old, new)
    assert lines[0].startswith("a|1:") and "latency_s: 0.1 -> 0.10000000000000002" in lines[0]
    assert "ops.000 :p:q: [1.0, 2.0] -> [1.0, 2.5]" in lines[0]
    assert lines[1:] == ["a|2: stored, but no longer computed", "a|3: computed, but not in the stored file"]
    assert differences({"k": {"v": float("nan"), "n": 1}}, {"k": {"v": float("nan"), "n": 1}}) == []
    assert differences({"k": {"n": 1}}, {"k": {"n": 1.0}}) == ["k:\n      n: 1 -> 1.0"]
