"""The chip kinds archsim models: for each, its config class, the model that evaluates a
workload on one chip of it, and its die area. ``build_chip(hw)`` is how every caller (the API,
systems, sweeps, calibration) gets a chip model: a registry, not branches per kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from archsim.config.chips import ChipConfig
from archsim.config.gpu import GpuConfig
from archsim.config.schema import HardwareConfig
from archsim.gpu.engine import GpuSimulator
from archsim.gpu.power import gpu_area
from archsim.hw.area import Area, tpu_area
from archsim.sim.engine import Simulator


@dataclass(frozen=True)
class ChipKind:
    config: type
    model: Callable[..., object]  # (hw, placement_policy=..., dispatch=...) -> a simulator
    area: Callable[[ChipConfig], Area]


KINDS: dict[str, ChipKind] = {
    "tpu": ChipKind(HardwareConfig, Simulator, tpu_area),
    "gpu": ChipKind(GpuConfig, GpuSimulator, gpu_area),
}


def chip_kind(hw: ChipConfig) -> ChipKind:
    return KINDS[hw.kind]


def build_chip(hw: ChipConfig, dispatch: str = "program", placement_policy: str = "time_knapsack"):
    """The model of one chip of ``hw``'s kind: ``run(workload)``, ``run_with``, ``op_cost``,
    ``op_time``, ``benchmark_placement``, ``topology``."""
    return chip_kind(hw).model(hw, placement_policy=placement_policy, dispatch=dispatch)
