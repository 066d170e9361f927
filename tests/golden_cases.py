"""The golden cases (issue 22): results that performance work must leave bit-identical.

    python tests/golden_cases.py     # evaluate every case and write tests/data/golden_results.json

``compute()`` evaluates a fixed set of cases and returns, per case, JSON values only:

- ``<config>|<point key>``: every point of the bundled sweeps (``hw_configs/cim_design_a.yaml``,
  ``cim_design_b.yaml``, ``cim_tpu.yaml``), the row ``archsim.dse.evaluate.evaluate_point`` makes,
  without its ``code`` column (the model code's fingerprint, new with any edit) and its
  ``traceback`` (absolute paths and line numbers);
- ``cim_tpu_10k.yaml|<point key>``: 48 points spread over a 10,000-point CIM-TPU space like
  ``bench/run.py``'s sweep (MXU grid and count, CMEM and VMEM size, HBM bandwidth on DiT-XL/2),
  its first and last point included;
- ``run|<chip or system>|<workload>``: bundled chips and systems x a few fast workloads through
  ``archsim.api``: ``result.summary()`` and each op's latency and energy (``result.table()``),
  or the error's type and text when the pair is refused.

Paths in texts are written relative (``<root>`` for the repository, ``<tmp>`` for the temporary
sweep file), so the file is the same wherever the repository is checked out.
``tests/test_golden.py`` compares ``compute()`` with the stored file, bit for bit.
"""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "golden_results.json"

BUNDLED_SWEEPS = ("cim_design_a.yaml", "cim_design_b.yaml", "cim_tpu.yaml")
SAMPLE_FILE = "cim_tpu_10k.yaml"
SAMPLE_POINTS = 48
CHIPS = ("tpuv4i.yaml", "tpuv3.yaml", "cim_tpu.yaml", "cim_design_b.yaml", "a100_80gb.yaml", "h100_sxm.yaml",
         "systems/tpuv4i_x4_tensor.yaml", "systems/tpuv4i_x4_pipeline.yaml")
WORKLOADS = ("dit_xl_2_block_512.yaml", "llama2_7b_layer_decode.yaml", "gpt3_30b_layer_prefill.yaml",
             "llama2_7b_spec_medusa.yaml")
DROPPED_COLUMNS = ("code", "traceback")


def sample_spec() -> str:
    """A 10,000-point CIM-TPU sweep on DiT-XL/2 (4 grids x 5 counts x 5 CMEM x 4 VMEM x 25 HBM
    bandwidths), as bench/run.py's ``sweep_spec(10000)``; a copy, so that the bench may change."""
    return textwrap.dedent(f"""
        extends: {ROOT / 'hw_configs' / 'cim_tpu.yaml'}
        sweep:
          baseline: null
          axes:
            mxu.cim.grid: [[8, 8], [16, 8], [16, 16], [32, 16]]
            mxu.count: [1, 2, 4, 6, 8]
            cmem.capacity: [64 MiB, 128 MiB, 256 MiB, 512 MiB, 1 GiB]
            vmem.capacity: [4 MiB, 8 MiB, 16 MiB, 32 MiB]
            hbm.bandwidth: {{from: 400 GB/s, to: 2 TB/s, steps: 25}}
          workloads: [{ROOT / 'workloads' / 'dit_xl_2.yaml'}]
        """)


def _relative(text: str, tmp: str | None = None) -> str:
    if tmp:
        text = text.replace(tmp, "<tmp>")
    return text.replace(str(ROOT), "<root>")


def _row(point, tmp: str | None = None) -> dict:
    from archsim.dse.evaluate import evaluate_point

    row = evaluate_point(point)
    for column in DROPPED_COLUMNS:
        row.pop(column, None)
    return {k: _relative(v, tmp) if isinstance(v, str) else v for k, v in row.items()}


def sweep_cases() -> dict:
    from archsim.dse.plan import plan_sweep

    out = {}
    for name in BUNDLED_SWEEPS:
        for point in plan_sweep([ROOT / "hw_configs" / name]).points:
            out[f"{name}|{point.key}"] = _row(point)
    return out


def sample_cases() -> dict:
    from archsim.dse.plan import plan_sweep

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / SAMPLE_FILE
        spec.write_text(sample_spec())
        points = plan_sweep([spec]).points
        last = len(points) - 1  # a fixed stride from the first point to the last: every axis value comes
        for i in range(SAMPLE_POINTS):
            point = points[i * last // (SAMPLE_POINTS - 1)]
            out[f"{SAMPLE_FILE}|{point.key}"] = _row(point, tmp)
    return out


def run_cases() -> dict:
    from archsim import api

    out = {}
    for chip in CHIPS:
        hw = api.load_hardware(ROOT / "hw_configs" / chip)
        for name in WORKLOADS:
            case: dict
            try:
                result = api.simulate(hw, api.load_workload(ROOT / "workloads" / name, hw=hw))
            except Exception as exc:  # a refused pair: its message is part of the result
                case = {"error": f"{type(exc).__name__}: {_relative(str(exc))}"}
            else:
                case = {"summary": result.summary()}
                try:
                    table = result.table()
                except Exception as exc:
                    case["ops"] = f"{type(exc).__name__}: {_relative(str(exc))}"
                else:  # each op's row: (stage, phase, op) -> [latency_s, energy_j]
                    case["ops"] = {
                        f"{i:03d} {row.get('stage', '')}:{row['phase']}:{row['op']}": [row["latency_s"], row["energy_j"]]
                        for i, row in enumerate(table.to_dict(orient="records"))}
            out[f"run|{chip}|{name}"] = case
    return out


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"golden case value of type {type(value).__name__} is not JSON: {value!r}")


def compute() -> dict:
    """Every golden case, as the stored file holds it (JSON values: lists, not tuples)."""
    out = {**sweep_cases(), **sample_cases(), **run_cases()}
    return json.loads(json.dumps(out, default=_json_default))


def dumps(cases: dict) -> str:
    """The file's text: one line per case, keys sorted (deterministic)."""
    lines = [f"{json.dumps(key)}: {json.dumps(cases[key], sort_keys=True)}" for key in sorted(cases)]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main() -> None:
    cases = compute()
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(dumps(cases))
    print(f"{len(cases)} cases written to {GOLDEN.relative_to(ROOT)} ({GOLDEN.stat().st_size:,} bytes)")


if __name__ == "__main__":
    sys.exit(main())
