from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HW = ROOT / "hw_configs"
WORKLOADS = ROOT / "workloads"
TPUV4I = HW / "tpuv4i.yaml"
# TPUv4i with the calibration fields neutral (no dispatch, peak bandwidth, hidden weight loads,
# no vector pass cost or padding): value tests pin each mechanism on its own
TPUV4I_PLAIN = ROOT / "tests" / "data" / "tpuv4i_plain.yaml"


@pytest.fixture(scope="session")
def tpuv4i():
    from archsim.api import load_hardware

    return load_hardware(TPUV4I)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed console entry point in a fresh interpreter, as a user would."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-c", "from archsim.cli import main; main()", *args],
        capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=120,
    )
