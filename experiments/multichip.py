"""TPUv4i and CIM-TPU Designs A and B on 1, 2 and 4 chips in a pipeline-parallel ring; GPUs beside them.

    python experiments/multichip.py --out DIR [--chips 1 2 4 8]

The CIM-TPU study's multi-chip setting (docs/sources/papers.md#multi-chip-setting: 1, 2 and 4 TPUs,
pipeline parallel, on a ring): each workload's layers (or, for one layer, its ops) split over the
chips, its batch of 8 in 1, 2, 4 or 8 micro-batches, whichever is fastest (the paper does not
give its micro-batching). An H100 SXM runs the same pipelines as a reference, over
an NVSwitch as on an HGX board (hw_configs/systems/h100_sxm_x8.yaml's ASSUMED switch latency and
energy) rather than a ring. Writes ``multichip.csv`` and ``multichip.md`` under --out; prints the
table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _common as c
import pandas as pd

from archsim.api import SystemSimulator

WORKLOADS = {  # label -> (file, workload overrides)
    "GPT-3-30B layer, prefill 8x1024": ("gpt3_30b_layer_prefill.yaml", []),
    "GPT-3-30B layer, decode (256th token)": ("gpt3_30b_layer_decode.yaml", []),
    "GPT-3-30B, 48 layers, 1024+256 tokens": ("gpt3_30b.yaml", []),
    "DiT-XL/2 block, 512px, batch 8": ("dit_xl_2_block_512.yaml", []),
    "DiT-XL/2, 256px, 50 DDIM steps, CFG, batch 8": ("dit_xl_2.yaml", ["batch=8"]),
}


RING = "{kind: ring}"
# ASSUMPTION, as hw_configs/systems/h100_sxm_x8.yaml and a100_80gb_x8.yaml: the GPUs of an HGX
# board reach each other through NVSwitch, 1 us and 5 pJ/bit per transfer (no published figure)
GPU_TOPOLOGY = "{kind: switch, latency: 1 us, energy_per_byte: 5 pJ/bit}"
GPUS = {"H100 SXM": c.GPUS["H100 SXM"]}  # the A100 too would add as much time again


def mapping(chips: int, micro_batches: int, topology: str = RING) -> list[str]:
    return [f"system.chips={chips}", f"system.topology={topology}", f"system.parallelism.pipeline={chips}",
            f"system.parallelism.micro_batches={micro_batches}"]


def best_run(config: str, file: str, wsets: list[str], chips: int, micro_batches: list[int], hw_sets=(),
             topology: str = RING):
    """The fastest feasible mapping over the micro-batch counts (else the first's reason)."""
    results = []
    for m in micro_batches:
        hw = c.chip(config, *hw_sets, *mapping(chips, m, topology))
        results.append((SystemSimulator(hw).run(c.workload(file, *wsets, hw=hw)), m))
    feasible = [(r.latency_s, m, r) for r, m in results if r.feasible]
    if not feasible:
        return results[0]
    _, m, result = min(feasible, key=lambda x: (x[0], x[1]))
    return result, m


def rows(chip_counts: list[int], micro_batches: list[int]) -> list[dict]:
    out = []
    for label, (file, wsets) in WORKLOADS.items():
        for chip, config in {**c.CHIPS, **GPUS}.items():
            single = None
            topology = GPU_TOPOLOGY if chip in GPUS else RING
            for n in chip_counts:
                result, m = best_run(config, file, wsets, n, micro_batches, topology=topology)
                row = {"workload": label, "chip": chip, "chips": n, "micro_batches": m, "feasible": result.feasible}
                if not result.feasible:
                    out.append(row | {"reason": result.reason})
                    continue
                if n == chip_counts[0]:
                    single = result
                out.append(row | {
                    "latency_ms": result.latency_s * 1e3,
                    "speedup": single.latency_s / result.latency_s if single else float("nan"),
                    "energy_j": result.energy.total, "mxu_energy_j": result.energy.mxu,
                    "ici_mib": result.ici_bytes / 2**20, "bubble": result.bubble_fraction,
                    "link_utilization": result.link_utilization, "mxu_utilization": result.utilization,
                    "layers_per_stage": "/".join(map(str, result.split.layers)) or "by op",
                    "reason": "",
                })
    return out


def markdown(frame: pd.DataFrame) -> str:
    lines = ["| workload | chip | chips | micro-batches | latency | vs fewest chips | energy | MXU energy | ICI traffic | bubble | link util. | layers per stage |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in frame.itertuples():
        if not r.feasible:
            lines.append(f"| {r.workload} | {r.chip} | {r.chips} | | infeasible: {r.reason} |||||||")
            continue
        speedup = f"{r.speedup:.2f}x" if r.speedup == r.speedup else "-"
        lines.append(f"| {r.workload} | {r.chip} | {r.chips} | {r.micro_batches} | {r.latency_ms:.4g} ms | {speedup} | {r.energy_j:.4g} J | "
                     f"{r.mxu_energy_j:.4g} J | {r.ici_mib:.4g} MiB | {r.bubble:.0%} | {r.link_utilization:.1%} | "
                     f"{r.layers_per_stage} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for multichip.csv and multichip.md")
    parser.add_argument("--chips", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args(argv)
    frame = pd.DataFrame(rows(args.chips, args.micro_batches))
    args.out.mkdir(parents=True, exist_ok=True)
    c.write_atomic(args.out / "multichip.csv", frame.to_csv(index=False))  # never through a link
    table = markdown(frame)
    c.write_atomic(args.out / "multichip.md", table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
