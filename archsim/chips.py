"""The chip kinds archsim models: for each, its config class, the model that evaluates a
workload on one chip of it, and its die area. ``build_chip(hw)`` is how every caller (the API,
systems, sweeps, calibration) gets a chip model: a registry, not branches per kind. A kind's
model modules are imported when a chip of that kind is first built (a TPU run never loads the
GPU's: start-up time, issue 22)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from archsim.config.chips import chip_config_class
from archsim.memo import cached_property

if TYPE_CHECKING:
    from archsim.config.chips import ChipConfig
    from archsim.hw.area import Area


@dataclass(frozen=True)
class ChipKind:
    """A chip kind's pieces, loaded on first use: ``load`` imports them (static imports inside
    a function) and returns (the model class, the area function)."""

    name: str
    load: Callable[[], tuple[Callable[..., object], Callable[["ChipConfig"], "Area"]]]

    @property
    def config(self) -> type:
        return chip_config_class(self.name)

    @cached_property
    def model(self) -> Callable[..., object]:
        """The class evaluating a workload: (hw, placement_policy=..., dispatch=...) -> a simulator."""
        return self.load()[0]

    @cached_property
    def area(self) -> Callable[["ChipConfig"], "Area"]:
        return self.load()[1]


def _tpu():
    from archsim.hw.area import tpu_area
    from archsim.sim.engine import Simulator

    return Simulator, tpu_area


def _gpu():
    from archsim.gpu.engine import GpuSimulator
    from archsim.gpu.power import gpu_area

    return GpuSimulator, gpu_area


KINDS: dict[str, ChipKind] = {"tpu": ChipKind("tpu", _tpu), "gpu": ChipKind("gpu", _gpu)}


def chip_kind(hw: "ChipConfig") -> ChipKind:
    return KINDS[hw.kind]


def build_chip(hw: "ChipConfig", dispatch: str = "program", placement_policy: str = "time_knapsack", family=None):
    """The model of one chip of ``hw``'s kind: ``run(workload)``, ``run_with``, ``op_cost``,
    ``op_time``, ``benchmark_placement``, ``topology``. ``family``: a sweep's chips alike but for
    HBM's bandwidth (``archsim.sim.family``, TPU-style chips only), to cost together."""
    options = {} if family is None else {"family": family}
    return chip_kind(hw).model(hw, placement_policy=placement_policy, dispatch=dispatch, **options)
