"""The ``system:`` section of a hardware config: how many chips, how they are wired, and how a
workload is mapped onto them.

    system:
      chips: 4
      topology: {kind: ring}                   # or {kind: torus2d, shape: [2, 2]},
                                               # or {kind: switch, latency: 1 us, energy_per_byte: 10 pJ/B}
      parallelism: {pipeline: 4, tensor: 1, data: 1, micro_batches: 8}

The links themselves (how many per chip, bandwidth, latency, energy) are the chip's ``ici``
section. A system file can ``extends:`` a chip config and add only this section. Without it a
config is one chip with no parallelism.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from archsim.config.fields import Count, EnergyPerByte, Latency, Strict, checked_once
from archsim.errors import FieldError


class RingTopology(Strict):
    """Chips in a ring: each has two neighbours and splits its links between them."""

    kind: Literal["ring"] = Field(description="topology kind: ring (this), torus2d or switch")


class TorusTopology(Strict):
    """A 2-D torus, chips numbered row-major; each has a neighbour each way in each dimension."""

    kind: Literal["torus2d"] = Field(description="topology kind: torus2d (this), ring or switch")
    shape: tuple[Count, Count] = Field(description="chips along x and along y")


class SwitchTopology(Strict):
    """Every chip's links go to one switch that connects any chip to any other."""

    kind: Literal["switch"] = Field(description="topology kind: switch (this), ring or torus2d")
    latency: Latency = Field(description="time through the switch, added to the two link hops")
    energy_per_byte: EnergyPerByte = Field(description="switching energy per byte, added to the two link hops'")


TopologyConfig = Annotated[Union[RingTopology, TorusTopology, SwitchTopology], Field(discriminator="kind")]


class ParallelismConfig(Strict):
    """The mapping: pipeline stages x tensor-parallel ranks x data-parallel replicas = chips.

    Chips are numbered tensor rank first, then stage, then replica, so a tensor-parallel group
    is neighbouring chips; an expert-parallel group is ``expert`` consecutive replicas' chips of
    the same stage and tensor rank."""

    pipeline: Count = Field(default=1, description="stages: the layers are split into this many consecutive parts")
    tensor: Count = Field(default=1, description="ranks that split each GEMM by columns or rows (Megatron)")
    data: Count = Field(default=1, description="replicas, each running an equal share of the batch")
    micro_batches: Count = Field(default=1, description="a replica's batch is run in this many equal parts")
    expert: Count = Field(default=1, description="data-parallel replicas among which a mixture of experts' experts are "
                          "divided (expert parallelism): tokens go to their experts' chips and back by all-to-all")


class SystemConfig(Strict):
    chips: Count = Field(default=1, le=65536, description="chips in the system: pipeline x tensor x data of "
                         "parallelism")
    topology: TopologyConfig = Field(default=RingTopology(kind="ring"), description="how the chips' links connect "
                                     "them, by kind: ring, torus2d or switch")
    parallelism: ParallelismConfig = Field(default=ParallelismConfig(), description="how a workload is mapped onto "
                                           "the chips")
    collective_algorithm: Literal["ring", "bidirectional_ring"] = Field(
        default="bidirectional_ring", description="ring collectives: one direction around the ring, or half "
        "the data each way over both neighbours' links at once (as TPU systems run them)")

    @model_validator(mode="after")
    @checked_once
    def _consistent(self) -> "SystemConfig":
        p = self.parallelism
        if p.pipeline * p.tensor * p.data != self.chips:
            raise FieldError("parallelism", f"pipeline {p.pipeline} x tensor {p.tensor} x data {p.data} = "
                             f"{p.pipeline * p.tensor * p.data} chips, but the system has {self.chips}")
        if p.data % p.expert:
            raise FieldError("parallelism.expert", f"{p.expert} expert-parallel ranks do not divide the {p.data} "
                             "data-parallel replicas they are made of")
        if isinstance(self.topology, TorusTopology):
            x, y = self.topology.shape
            if x * y != self.chips:
                raise FieldError("topology.shape", f"{x} x {y} = {x * y} chips, but the system has {self.chips}")
        return self

    def links_needed(self) -> int:
        """Links per chip the topology needs: one per distinct neighbour."""
        topology = self.topology
        if self.chips == 1:
            return 0
        if isinstance(topology, SwitchTopology):
            return 1
        sides = topology.shape if isinstance(topology, TorusTopology) else (self.chips,)
        return sum(0 if n == 1 else 1 if n == 2 else 2 for n in sides)
