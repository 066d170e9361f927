"""A GPU in a design-space sweep beside CIM-TPU designs: one Pareto front over latency, energy
and area with both kinds of chip on it (issue 17: "a sweep can put a CIM design and an H100 on
one Pareto plot")."""

from __future__ import annotations

import pandas as pd

from tests.conftest import HW, ROOT, run_cli

WORKLOAD = ROOT / "workloads" / "gpt3_30b_layer_decode.yaml"


def test_a_cim_design_and_an_h100_share_one_sweep_and_one_front(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("sweep", str(HW / "cim_design_b.yaml"), str(HW / "h100_sxm.yaml"), "--workload", str(WORKLOAD),
                   "--out", str(out), "--executor", "serial", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    frame = pd.read_parquet(out / "results.parquet")
    assert {"CIM-Design-B", "H100 SXM"} <= set(frame["hardware"]), set(frame["hardware"])
    assert (frame["status"] == "ok").all(), frame[["hardware", "status", "reason"]]
    text = proc.stdout
    # the table prints both, the H100 faster (3.35 TB/s against 614 GB/s of HBM on a decode that
    # streams its weights) and larger (814 against about 350 mm^2): both on the front
    h100 = next(line for line in text.splitlines() if "H100 SXM" in line)  # D1  H100 SXM  ...  *
    cim = next(line for line in text.splitlines() if "CIM-Design-B" in line)
    assert h100.rstrip().endswith("*") and cim.rstrip().endswith("*"), text
    assert (out / "pareto_latency_energy.png").exists()
