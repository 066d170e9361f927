"""The chip kinds archsim models: for each, its config class, the model that evaluates a
workload on one chip of it, and its die area. ``build_chip(hw)`` is how every caller (the API,
systems, sweeps, calibration) gets a chip model: a registry, not branches per kind. A kind's
model modules are imported when a chip of that kind is first built (a TPU run never loads the
GPU's: start-up time, issue 22)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Callable

from archsim.config.chips import chip_config_class

if TYPE_CHECKING:
    from archsim.config.chips import ChipConfig
    from archsim.hw.area import Area


def _attribute(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ChipKind:
    """A chip kind's pieces, named by import path and loaded on first use."""

    name: str
    model_path: str  # the class evaluating a workload: (hw, placement_policy=..., dispatch=...) -> a simulator
    area_path: str  # (hw) -> Area

    @property
    def config(self) -> type:
        return chip_config_class(self.name)

    @cached_property
    def model(self) -> Callable[..., object]:
        return _attribute(self.model_path)

    @cached_property
    def area(self) -> Callable[["ChipConfig"], "Area"]:
        return _attribute(self.area_path)


KINDS: dict[str, ChipKind] = {
    "tpu": ChipKind("tpu", "archsim.sim.engine.Simulator", "archsim.hw.area.tpu_area"),
    "gpu": ChipKind("gpu", "archsim.gpu.engine.GpuSimulator", "archsim.gpu.power.gpu_area"),
}


def chip_kind(hw: "ChipConfig") -> ChipKind:
    return KINDS[hw.kind]


def build_chip(hw: "ChipConfig", dispatch: str = "program", placement_policy: str = "time_knapsack"):
    """The model of one chip of ``hw``'s kind: ``run(workload)``, ``run_with``, ``op_cost``,
    ``op_time``, ``benchmark_placement``, ``topology``."""
    return chip_kind(hw).model(hw, placement_policy=placement_policy, dispatch=dispatch)
