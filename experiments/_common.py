"""What every study script shares: where the bundled configs are, the command line (``--out``
is required, so nothing is written into the repo by default; ``--quick`` is the reduced mode
the tests run), loading chips and workloads with overrides, and writing tables and figures
atomically (a study interrupted half-way never leaves a half-written file)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from archsim.api import load_hardware, load_workload
from archsim.config.loader import parse_overrides
from archsim.config.schema import HardwareConfig
from archsim.fileio import atomic_write
from archsim.ir.graph import Workload

ROOT = Path(__file__).resolve().parent.parent
HW_DIR = ROOT / "hw_configs"
WORKLOAD_DIR = ROOT / "workloads"
# The chips every study compares: the baseline and the paper's designs
# (docs/sources/papers.md#design-a-and-design-b).
CHIPS = {"TPUv4i": "tpuv4i.yaml", "CIM Design A": "cim_design_a.yaml", "CIM Design B": "cim_design_b.yaml"}
# [CIM] Table IV: CIM-MXU grid {8x8, 16x8, 16x16} x CIM-MXU count {2, 4, 8}, as overrides of
# cim_tpu.yaml; the named points are Designs A and B and the iso-MAC CIM-TPU itself.
TABLE_IV = tuple((grid, count) for grid in ((8, 8), (16, 8), (16, 16)) for count in (2, 4, 8))
NAMED_DESIGNS = {((8, 8), 4): "Design A", ((16, 8), 8): "Design B", ((16, 8), 4): "CIM-TPU"}


def parser(doc: str) -> argparse.ArgumentParser:
    """A study's command line: ``--out DIR`` (required) and ``--quick``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(doc.split("\n\n")[1:]))
    p.add_argument("--out", type=Path, required=True, help="folder for the study's tables and figures")
    p.add_argument("--quick", action="store_true", help="a reduced study (fewer points, shorter runs): what the tests run")
    return p


def chip(config: str, *sets: str) -> HardwareConfig:
    """A bundled hardware config (file name under hw_configs/) with ``key=value`` overrides."""
    return load_hardware(HW_DIR / config, parse_overrides(list(sets)))


def cim_sets(grid, count) -> tuple[str, ...]:
    """The overrides of cim_tpu.yaml for a CIM-MXU grid and count."""
    return (f"mxu.cim.grid=[{grid[0]}, {grid[1]}]", f"mxu.count={count}")


def workload(file: str, *sets: str, hw: HardwareConfig | None = None) -> Workload:
    """A bundled workload (file name under workloads/) with overrides, lowered for ``hw``."""
    return load_workload(WORKLOAD_DIR / file, parse_overrides(list(sets)), hw=hw)


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write a file whole or not at all (archsim's atomic writer), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data.encode() if isinstance(data, str) else data))


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    return write_atomic(path, frame.to_csv(index=False, float_format="%.9g"))


def save_figure(fig, path: Path) -> Path:
    """A PNG, written atomically, without the metadata that would make reruns differ."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return write_atomic(path.with_suffix(".png"), buffer.getvalue())


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(new: float, old: float) -> str:
    """The change from ``old`` to ``new`` as a signed percentage: a latency of -33.8% takes 33.8% less time."""
    return f"{(new / old - 1) * 100:+.1f}%"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms"


def times(ratio: float) -> str:
    return f"{ratio:.3g}x"


# The GPUs the studies set beside the TPUs (hw_configs/*.yaml, kind: gpu): the A100's
# efficiencies are fitted on measured A100 data; the H100 carries them ([A100FIT]). Their
# energies rest on ASSUMPTIONs (MAC energy so that a long GEMM runs near the TDP, static power
# 17% of the TDP): see each YAML's comments.
GPUS = {"A100 80GB": "a100_80gb.yaml", "H100 SXM": "h100_sxm.yaml"}
