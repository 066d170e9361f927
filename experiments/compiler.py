"""What the compiler does, piece by piece: fusion, flash attention and overlap between units, each
on its own and all together, on the runs the issue names.

    python experiments/compiler.py --out DIR [--quick]

For each chip and workload: every op on its own one after another (profile ``none``: archsim
before issue 18, and what a per-op microbenchmark measures), then one piece switched on alone
(the chip kind's default fusion rules; flash attention; overlap with prefetch), then the chip
kind's real software (profile ``xla`` on TPU-style chips, ``cuda`` on GPUs: the default). Reports
latency, HBM traffic and feasibility, and each piece's share of the default's gain. Writes
``compiler.csv`` and ``compiler.md`` under --out; prints the table.

The measured layer times of experiments/data/silicon are per operator, launched one by one: they
check each op's cost, not how a compiler fuses or overlaps them (see experiments/README.md).
"""

from __future__ import annotations

import sys

import _common as c
import pandas as pd

from archsim.api import simulate
from archsim.config.compiler import DEFAULT_PROFILE, PROFILES
from archsim.hw.memory import Level

LLAMA_INT8_4096 = ["prompt_len=4096", "precision.weights=int8", "precision.activations=int8", "precision.kv=int8"]
RUNS = [  # (chip label, hardware config, workload label, workload file, workload overrides)
    ("TPUv3-8 (TP 8)", "systems/tpuv3_8.yaml", "GPT-3 175B layer, prefill 8x2048", "gpt3_175b_layer_prefill.yaml", []),
    ("TPUv3-8 (TP 8)", "systems/tpuv3_8.yaml", "GPT-3 175B layer, decode", "gpt3_175b_layer_decode.yaml", []),
    ("4 x A100 (TP 4)", "systems/a100_80gb_x4.yaml", "GPT-3 175B layer, prefill 8x2048", "gpt3_175b_layer_prefill.yaml",
     []),
    ("4 x A100 (TP 4)", "systems/a100_80gb_x4.yaml", "GPT-3 175B layer, decode", "gpt3_175b_layer_decode.yaml", []),
    ("TPUv4i", "tpuv4i.yaml", "LLaMA-2-7B layer, decode", "llama2_7b_layer_decode.yaml", []),
    ("A100 80GB", "a100_80gb.yaml", "LLaMA-2-7B, 1024+256 tokens", "llama2_7b.yaml", []),
    ("TPUv4i", "tpuv4i.yaml", "LLaMA-2-7B int8, 4096-token prompt", "llama2_7b.yaml", LLAMA_INT8_4096),
    ("TPUv4i", "tpuv4i.yaml", "DiT-XL/2 block, 512px, batch 8", "dit_xl_2_block_512.yaml", []),
    ("CIM Design B", "cim_design_b.yaml", "DiT-XL/2 block, 512px, batch 8", "dit_xl_2_block_512.yaml", []),
]
QUICK = {2, 6, 7}  # indices of RUNS the tests run


def variants(kind: str) -> dict[str, list[str]]:
    """Label -> overrides of the compiler section: none, each piece alone, the default."""
    default = PROFILES[DEFAULT_PROFILE[kind]]
    rules = "[" + ", ".join(default.fusion) + "]"
    return {
        "none": ["compiler.profile=none"],
        "fusion": ["compiler.profile=none", f"compiler.fusion={rules}"],
        "flash attention": ["compiler.profile=none", "compiler.flash_attention=true",
                            f"compiler.flash_decode={str(default.flash_decode).lower()}",
                            f"compiler.attention_block={default.attention_block}"],
        "overlap": ["compiler.profile=none", "compiler.overlap=true", f"compiler.prefetch={default.prefetch}"],
        f"default ({DEFAULT_PROFILE[kind]})": [],
    }


def rows(quick: bool) -> pd.DataFrame:
    out = []
    for i, (chip_label, config, label, file, sets) in enumerate(RUNS):
        if quick and i not in QUICK:
            continue
        kind = c.chip(config).kind
        base = None
        for variant, compiler in variants(kind).items():
            hw = c.chip(config, *compiler)
            result = simulate(hw, c.workload(file, *sets, hw=hw))
            row = {"chip": chip_label, "workload": label, "compiler": variant, "feasible": result.feasible,
                   "reason": "" if result.feasible else result.reason}
            if result.feasible:
                row |= {"latency_s": result.latency_s, "hbm_bytes": result.traffic.total(Level.HBM),
                        "energy_j": result.energy.total,
                        "perfect_overlap_s": getattr(result, "perfect_overlap_s", float("nan"))}
            out.append(row)
            if variant == "none":
                base = row
        for row in out[-len(variants(kind)):]:
            if base.get("feasible") and row["feasible"]:
                row["speedup"] = base["latency_s"] / row["latency_s"]
                row["hbm_vs_none"] = row["hbm_bytes"] / base["hbm_bytes"]
    return pd.DataFrame(out)


def markdown(frame: pd.DataFrame) -> str:
    def cell(row, key, fmt):
        value = row.get(key)
        return fmt(value) if row["feasible"] and value == value and value is not None else ""

    body = []
    for _, row in frame.iterrows():
        body.append([row["chip"], row["workload"], row["compiler"],
                     cell(row, "latency_s", lambda v: f"{v * 1e3:.3f} ms") or f"infeasible: {row['reason'][:70]}",
                     cell(row, "speedup", lambda v: f"{v:.2f}x"),
                     cell(row, "hbm_bytes", lambda v: f"{v / 2**30:.2f} GiB"),
                     cell(row, "hbm_vs_none", lambda v: f"{v:.2f}x"),
                     cell(row, "perfect_overlap_s", lambda v: f"{v * 1e3:.3f} ms")])
    return c.md_table(["chip", "workload", "compiler", "latency", "speed-up vs none", "HBM traffic", "HBM vs none",
                       "bound: perfect overlap"], body) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = c.parser(__doc__).parse_args(argv)
    frame = rows(args.quick)
    c.write_csv(frame, args.out / "compiler.csv")
    text = markdown(frame)
    c.write_atomic(args.out / "compiler.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
