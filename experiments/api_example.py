"""The Python API end to end: a sweep, its Pareto front, a plot and a short table.

    python experiments/api_example.py [--out DIR]

Sweeps hw_configs/cim_tpu.yaml's design space ([CIM] Table IV: CIM-MXU grid x count, nine
designs, and its TPUv4i baseline) on one GPT-3-30B layer in prefill, in this process
(``executor="serial"``, a few seconds); takes the designs on the latency-area front (the
faster, the larger); draws them (``pareto_latency_area.png`` and ``.svg`` under --out,
default a new temporary folder) and prints the front with the speed-up over TPUv4i. The
sweep's results folder is ``DIR/results``: run the script again and nothing is evaluated
twice.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from archsim import api

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "hw_configs" / "cim_tpu.yaml"
WORKLOAD = ROOT / "workloads" / "gpt3_30b_layer_prefill.yaml"
OBJECTIVES = ["latency", "area"]


def front_table(front) -> str:
    """The front as text: design id and label, latency (ms), energy (mJ), area, speed-up."""
    def number(v: float) -> str:
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"

    shown = front[["design_id", "design", "latency_s", "energy_j", "area_mm2", "speedup_vs_baseline"]].copy()
    shown["latency_s"] = (shown["latency_s"] * 1e3).map(number)
    shown["energy_j"] = (shown["energy_j"] * 1e3).map(number)
    shown["area_mm2"] = shown["area_mm2"].map(number)
    shown["speedup_vs_baseline"] = shown["speedup_vs_baseline"].map("{:.3g}x".format)
    shown.columns = ["id", "design", "latency [ms]", "energy [mJ]", "area [mm^2]", "speedup"]
    return shown.to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the plot and the results "
                        "(default: a new temporary folder)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="archsim-api-example-"))

    table = api.sweep(CONFIG, workloads=[WORKLOAD], out=out / "results", executor="serial")
    front = api.pareto(table, OBJECTIVES)
    paths = api.plot_pareto(table, *OBJECTIVES, out / "pareto_latency_area")

    workload = table["workload"].iloc[0]
    print(f"{len(table)} designs on {workload}; {len(front)} on the latency-area front:")
    print(front_table(front))
    print(f"plot: {paths[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
