"""More of a resource must never make a run slower: random pairs of design points.

Each pair is a random design point (a bundled chip under random overrides) on a random
bundled workload, and the same point with more of one resource: CMEM capacity, VMEM
capacity, matrix units (systolic or CIM), HBM capacity or a bandwidth. The script counts the
pairs whose larger design is slower (beyond rounding, rel 1e-9) or infeasible where the
smaller one fits, and prints the worst ones.

    python bench/monotonicity.py --pairs 10000 [--seed 0] [--resource cmem]

Issue 15's figures were measured with this script (10,000 pairs per resource).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archsim.api import Simulator, load_hardware, load_workload  # noqa: E402
from archsim.errors import ArchsimError  # noqa: E402

REL = 1e-9
CHIPS = {"systolic": ["tpuv4i.yaml"], "cim": ["cim_tpu.yaml", "cim_design_a.yaml", "cim_design_b.yaml"]}
# Every bundled single-chip workload but the 1000-step DDPM and the full 4096-token decode,
# which repeat what dit_xl_2 and llama2_7b already cover at ten times the cost.
WORKLOADS = ["dit_xl_2.yaml", "dit_xl_2_512.yaml", "dit_xl_2_block_512.yaml", "gpt3_30b.yaml",
             "gpt3_30b_layer_decode.yaml", "gpt3_30b_layer_prefill.yaml", "llada_8b_fast_dllm.yaml",
             "llada_8b_odb.yaml", "llada_8b_trace.yaml", "llada_8b_vanilla.yaml", "llama2_7b.yaml",
             "llama2_7b_layer_decode.yaml", "llama3_8b.yaml"]
RESOURCES = {  # key, the values drawn for the smaller and the larger design (MiB, count, ...)
    "cmem": ("cmem.capacity", [16, 24, 32, 48, 64, 96, 128, 192, 256, 512], "MiB"),
    "vmem": ("vmem.capacity", [2, 4, 8, 12, 16, 24, 32], "MiB"),
    "mxu": ("mxu.count", [1, 2, 3, 4, 5, 6, 8], ""),
    "hbm_bw": ("hbm.bandwidth", [200, 300, 614, 900, 1200, 2000, 3000], "GB/s"),
    "hbm": ("hbm.capacity", [8, 12, 16, 24, 32, 64], "GiB"),
    "cmem_bw": ("cmem.bandwidth", [300, 600, 1000, 2151, 4000], "GB/s"),
    "vmem_bw": ("vmem.bandwidth", [2, 5, 13.5, 20, 40], "TB/s"),
}


def random_point(rng: random.Random) -> tuple[str, list[str]]:
    kind = rng.choice(list(CHIPS))
    base = rng.choice(CHIPS[kind])
    sets = [f"mxu.count={rng.choice([1, 2, 4, 8])}",
            f"hbm.bandwidth={rng.choice([300, 614, 1200, 3000])} GB/s",
            f"vmem.bandwidth={rng.choice([5, 13.5, 40])} TB/s",
            f"vmem.capacity={rng.choice([4, 8, 16, 32])} MiB",
            f"cmem.capacity={rng.choice([32, 64, 128, 256])} MiB",
            f"cmem.bandwidth={rng.choice([600, 2151, 4000])} GB/s",
            "hbm.capacity=64 GiB"]
    if kind == "systolic":
        sets += [f"mxu.dataflow={rng.choice(['ws', 'os', 'is'])}",
                 f"mxu.fold_model={rng.choice(['pipelined', 'scalesim'])}"]
    else:
        sets += [f"mxu.cim.reload_overlap={rng.choice(['true', 'false'])}"]
    return base, sets


@lru_cache(maxsize=64)
def _hw(base: str, sets: tuple[str, ...]):
    return load_hardware(ROOT / "hw_configs" / base, list(sets))


@lru_cache(maxsize=None)
def _workload(name: str):
    return load_workload(ROOT / "workloads" / name)


def _with(sets: list[str], key: str, value: str) -> tuple[str, ...]:
    return tuple(s for s in sets if not s.startswith(key + "=")) + (f"{key}={value}",)


def pair(rng: random.Random, resource: str):
    key, values, unit = RESOURCES[resource]
    base, sets = random_point(rng)
    small, large = sorted(rng.sample(values, 2))
    if resource == "vmem":  # CMEM backs VMEM: keep it larger than both
        sets = list(_with(sets, "cmem.capacity", "512 MiB"))
    fmt = lambda v: f"{v} {unit}".strip()  # noqa: E731
    return base, _with(sets, key, fmt(small)), _with(sets, key, fmt(large)), rng.choice(WORKLOADS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000, help="pairs per resource")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resource", action="append", choices=sorted(RESOURCES))
    parser.add_argument("--worst", type=int, default=5)
    args = parser.parse_args(argv)
    for resource in args.resource or list(RESOURCES):
        rng = random.Random(f"{args.seed}:{resource}")
        slower, worst, evaluated, start = 0, [], 0, time.perf_counter()
        for _ in range(args.pairs):
            base, small, large, workload = pair(rng, resource)
            try:
                hw_small, hw_large = _hw(base, small), _hw(base, large)
            except ArchsimError:  # e.g. a CMEM drawn smaller than the point's VMEM
                continue
            a = Simulator(hw_small).run(_workload(workload))
            b = Simulator(hw_large).run(_workload(workload))
            if not a.feasible:
                continue
            evaluated += 1
            if not b.feasible:  # more of a resource made a design point that fit infeasible
                slower += 1
                worst.append((float("inf"), base, workload, small, large, a.latency_s, float("nan")))
            elif b.latency_s > a.latency_s * (1 + REL):
                slower += 1
                worst.append((b.latency_s / a.latency_s - 1, base, workload, small, large, a.latency_s, b.latency_s))
        worst.sort(reverse=True)
        share = slower / evaluated if evaluated else 0.0
        print(f"{resource:8s} {evaluated:6d} feasible pairs: {slower} slower ({100 * share:.2f}%), worst "
              f"{100 * worst[0][0] if worst else 0:+.2f}%  [{time.perf_counter() - start:.0f} s]", flush=True)
        for w in worst[: args.worst]:
            diff = [s for s in w[4] if s not in w[3]]
            print(f"    {100 * w[0]:+.3f}%  {w[1]} {w[2]}  {w[5]:.6g} s -> {w[6]:.6g} s  larger: {diff}  point: {list(w[3])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
