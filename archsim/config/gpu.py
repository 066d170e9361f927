"""Typed model of a GPU (``kind: gpu``): streaming multiprocessors with tensor cores and vector
lanes, an L2 that is a cache, HBM, NVLink, and the kernels its libraries run. All values SI.

A GPU is described as it is built, not as a TPU with renamed parts: the L2 is a cache (what an
op re-reads hits it when the op's working set fits, ``archsim.gpu.gemm``), there is no
software-managed on-chip memory a compiler places tensors in for a whole run, and matmuls run
as thread-block tiles in waves over the SMs. The model is ``archsim.gpu.engine.GpuSimulator``.

The results share the TPU-style chip's components (``archsim.hw.energy.COMPONENTS``,
``archsim.hw.memory.Level``) under their roles: ``mxu`` the tensor cores, ``vpu`` the CUDA
cores and special-function units, ``vmem`` shared memory (the operand tiles staged in it),
``cmem`` the L2, ``hbm`` the HBM, ``ici`` NVLink.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from archsim.config.fields import (
    Area, Bandwidth, Count, Efficiency, Energy, EnergyPerByte, Fraction, Frequency, Latency, NonNegativeCount, Power,
    Size, Strict,
)
from archsim.config.schema import (
    OP_KINDS, DispatchConfig, IciConfig, MemoryLevelConfig, Scaled, SweepChecks, TechnologyConfig, _same_dtypes,
)
from archsim.config.power import LeakageConfig, check_static
from archsim.config.compiler import CompilerConfig, check_profile, with_default_profile
from archsim.config.explore import ExploreSpec
from archsim.config.sweep import SweepSpec
from archsim.config.system import SystemConfig
from archsim.dtypes import DType
from archsim.errors import FieldError


class SmConfig(Scaled):
    """The streaming multiprocessors: identical, each with tensor cores, vector lanes and
    special-function units, a register file and shared memory."""

    count: Count = Field(description="SMs enabled")
    tensor_macs_per_cycle: dict[DType, Count] = Field(
        min_length=1, description="dense MACs the SM's tensor cores complete per cycle, per operand dtype")
    tensor_efficiency: Efficiency = Field(
        default=1.0, description="share of the tensor cores' peak rate a GEMM's main loop sustains (operand "
        "staging through shared memory and registers, instruction issue)")
    alu_ops_per_cycle: Count = Field(description="simple vector ops (add, mul, max, compare) per SM per cycle: "
                                     "the CUDA cores' 32-bit lanes")
    special_ops_per_cycle: Count = Field(description="transcendentals (exp2, rcp, rsqrt, tanh) per SM per cycle: "
                                         "the special-function units")
    registers: Size = Field(description="register file per SM")
    shared_memory: Size = Field(description="shared memory per SM available to one kernel")
    mac_energy: dict[DType, Energy] = Field(description="energy of one tensor-core MAC, per dtype")
    alu_op_energy: Energy = Field(description="energy of one simple op on one element (a CUDA core)")
    special_op_energy: Energy = Field(description="energy of one transcendental on one element (a "
                                      "special-function unit)")
    shared_energy: EnergyPerByte = Field(description="energy per byte written to or read from shared memory")
    area: Area = Field(description="die area of one SM (tensor cores, lanes, register file, L1/shared memory)")
    on_die: Count | None = Field(default=None, description="SMs on the die, enabled or not (for area); "
                                 "default: count")

    @model_validator(mode="after")
    def _energies_for_every_dtype(self) -> "SmConfig":
        _same_dtypes(self.tensor_macs_per_cycle, self.mac_energy, "tensor_macs_per_cycle")
        if self.on_die is not None and self.on_die < self.count:
            raise FieldError("on_die", f"{self.on_die} SMs on the die, fewer than the {self.count} enabled")
        return self


class GemmKernelConfig(Strict):
    """The matmul kernels the GPU's libraries choose among (cuBLAS, CUTLASS): thread-block
    tiles of the output, their K step and pipeline depth, and split-K factors."""

    tiles: list[tuple[Count, Count]] = Field(min_length=1, description="thread-block tiles (rows x cols of C) "
                                            "the library has kernels for")
    k_tile: Count = Field(description="K elements a thread block stages per pipeline step")
    stages: Count = Field(description="pipeline stages of operand tiles held in shared memory")
    split_k: list[Count] = Field(default=[1], min_length=1, description="K split factors the library may use "
                                 "(a split adds a reduction of fp32 partial outputs)")
    convert_ops_per_element: NonNegativeCount | None = Field(
        default=None, description="CUDA-core ops to convert one element of an operand stored narrower than the "
        "MACs' type (weight-only quantisation: unpack and scale) each time a block loads it; none: such "
        "matmuls are an error")
    clusters: list[tuple[Count, Count]] = Field(
        default=[(1, 1)], min_length=1, description="thread-block clusters (blocks along M x along N) the library "
        "may use: a cluster's blocks load an operand tile they share once, multicast to all (Hopper's TMA); "
        "[1, 1]: no clusters")

    @field_validator("split_k")
    @classmethod
    def _has_one(cls, value: list[int]) -> list[int]:
        if 1 not in value:
            raise ValueError("must include 1 (no split)")
        return value

    @field_validator("clusters")
    @classmethod
    def _has_single(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if (1, 1) not in [tuple(c) for c in value]:
            raise ValueError("must include [1, 1] (no cluster)")
        return value


class KernelConfig(Strict):
    """How the software's kernel for one vector op kind moves its data: a kernel reads its main
    input ``input_reads`` times from memory (a multi-pass reduction re-reads its rows), and
    ``long_row_reads`` times when rows are longer than ``row_limit`` elements (a row no longer
    held in one thread block's registers)."""

    input_reads: Count = Field(default=1, description="times the kernel reads its main input")
    row_limit: Count | None = Field(default=None, description="longest row read input_reads times; none: any")
    long_row_reads: Count = Field(default=2, description="times a row longer than row_limit is read")


class GpuMemoryConfig(MemoryLevelConfig):
    """A GPU's HBM: reads and writes reach different shares of the peak (a write burst turns the
    bus around)."""

    write_efficiency: Efficiency | None = Field(default=None, description="achievable share of the peak "
                                                "bandwidth for writes; default: efficiency")

    @property
    def achievable_write_bandwidth(self) -> float:
        return self.bandwidth * (self.efficiency if self.write_efficiency is None else self.write_efficiency)


class L2Config(MemoryLevelConfig):
    """The L2: a cache every SM reads through, not memory placed by software."""

    usable: Fraction = Field(default=1.0, description="share of the capacity that holds distinct data "
                             "(a partitioned L2 duplicates lines read from both halves)")
    resident_share: Fraction = Field(description="share of the usable capacity one tensor (a GEMM operand, an "
                                     "activation handed to the next kernel, a repeated call's working set) "
                                     "may take and stay in L2: the rest holds the kernel's other traffic")

    @property
    def usable_capacity(self) -> float:
        return self.capacity * self.usable

    @property
    def resident_capacity(self) -> float:
        """Bytes one tensor may take in L2 and stay there."""
        return self.usable_capacity * self.resident_share


class NcclProtocolConfig(Strict):
    base_latency: Latency = Field(description="fixed latency of a collective in this protocol")
    hop_latency: Latency = Field(description="latency per step (hop) over NVLink")
    bandwidth_share: Efficiency = Field(description="share of the bus bandwidth the protocol delivers (flags, "
                                      "line size)")
    max_bus_bandwidth: Bandwidth | None = Field(default=None, description="cap on the protocol's bus bandwidth; "
                                                "none: no cap")


class CollectiveConfig(Strict):
    """The collective library's algorithms and protocols (NCCL on one node): for each size the
    fastest (algorithm, protocol) is used, as NCCL's tuner chooses. Within one node NCCL's model
    (and this one) picks the ring: a tree's bandwidth is at most half the bus's, and its
    latency is no lower; trees pay off across nodes, which are not modelled."""

    algorithms: list[Literal["ring", "tree"]] = Field(min_length=1, description="algorithms the library may use")
    protocols: dict[Literal["ll", "ll128", "simple"], NcclProtocolConfig] = Field(
        min_length=1, description="the protocols the library may use, by NCCL's name: LL, LL128, Simple")
    tree_bandwidth_share: Efficiency = Field(default=0.5, description="a tree all-reduce's algorithm bandwidth as "
                                           "a share of the bus bandwidth")

    @field_validator("algorithms")
    @classmethod
    def _has_ring(cls, value: list[str]) -> list[str]:
        if "ring" not in value:
            raise ValueError("must include ring (every collective has a ring algorithm; a tree runs all-reduces only)")
        return value


class GpuConfig(SweepChecks):
    """One GPU, and the system of such GPUs it is part of (one by default)."""

    kind: Literal["gpu"] = Field(description="the chip kind: gpu (this), or tpu")
    name: str = Field(description="the GPU's name in reports")
    description: str = Field(default="", description="free text about the config (not used by the models)")
    clock: Frequency = Field(description="the SMs' clock under load")
    technology: TechnologyConfig = Field(description="process node and energy and area scaling between nodes")
    sm: SmConfig = Field(description="the streaming multiprocessors")
    gemm: GemmKernelConfig = Field(description="the matmul kernels the libraries choose among")
    kernels: dict[str, KernelConfig] = Field(default={}, description="vector kernels by op kind (default: one read)")
    l2: L2Config = Field(description="the L2 cache")
    hbm: GpuMemoryConfig = Field(description="off-chip memory")
    nvlink: IciConfig = Field(description="the GPU's NVLink ports")
    collectives: CollectiveConfig = Field(description="the collective library's algorithms and protocols (NCCL)")
    dispatch: DispatchConfig = Field(default=DispatchConfig(), description="fixed cost per kernel (launch)")
    compiler: CompilerConfig = Field(default=CompilerConfig(profile="cuda"), description="what the libraries do to a "
                                     "graph and how they schedule it (default: profile cuda)")
    static_power: Power | None = Field(default=None, description="leakage and always-on power of the whole GPU as "
                                       "one figure (a measured chip); else `leakage` models it from the die")
    leakage: LeakageConfig | None = Field(default=None, description="static power from the die's area per component")
    tdp: Power | None = Field(default=None, description="thermal design power")
    periphery_area: Area = Field(description="die area outside the SMs, L2 and NVLink (memory PHYs and "
                                 "controllers, on-chip network, I/O)")
    system: SystemConfig = Field(default=SystemConfig(), description="GPUs, topology and parallel mapping")
    sweep: SweepSpec | None = Field(default=None, description="the design space around this config")
    explore: ExploreSpec | None = Field(default=None, description="a design space around this config too big for a "
                                        "grid, searched by archsim explore")

    @field_validator("kernels")
    @classmethod
    def _known_kinds(cls, table: dict[str, KernelConfig]) -> dict[str, KernelConfig]:
        unknown = sorted(set(table) - set(OP_KINDS))
        if unknown:
            raise ValueError(f"unknown op kind {', '.join(map(repr, unknown))}; expected one of: {', '.join(OP_KINDS)}")
        return table

    @model_validator(mode="before")
    @classmethod
    def _default_profile(cls, data: Any) -> Any:
        return with_default_profile(data, "gpu")

    @model_validator(mode="after")
    def _consistent(self) -> "GpuConfig":
        check_profile(self.compiler, "gpu")
        check_static(self)
        for key in ("sm", "l2", "hbm", "nvlink"):
            stated = getattr(self, key).stated_at
            if stated is not None:
                self.technology.factors(stated, f"{key}.stated_at")
        if self.tdp is not None and self.tdp <= 0:
            raise FieldError("tdp", "must be positive (leave it out when the TDP is not known)")
        needed = self.system.links_needed()
        if self.nvlink.links < needed:
            raise FieldError("nvlink.links", f"{self.nvlink.links} links per GPU, but a {self.system.topology.kind} "
                             f"of {self.system.chips} GPUs needs {needed}")
        gemm = self.gemm
        for i, (rows, cols) in enumerate(gemm.tiles):
            # at the widest dtype the tensor cores take: every kernel of the set must fit
            staged = gemm.stages * (rows + cols) * gemm.k_tile * max(d.bytes for d in self.sm.tensor_macs_per_cycle)
            if staged > self.sm.shared_memory:
                raise FieldError(f"gemm.tiles.{i}", f"{rows}x{cols} tiles over {gemm.stages} stages of K "
                                 f"{gemm.k_tile} need {staged / 1024:g} KiB of shared memory; the SM has "
                                 f"{self.sm.shared_memory / 1024:g} KiB")
            accumulators = rows * cols * 4  # fp32 (int32) accumulators, held in registers
            if accumulators > self.sm.registers:
                raise FieldError(f"gemm.tiles.{i}", f"{rows}x{cols} tiles need {accumulators / 1024:g} KiB of "
                                 f"registers for their accumulators; the SM has {self.sm.registers / 1024:g} KiB")
        return self

    # -- the interface the chip-independent code reads (reports, systems, sweeps) ---------

    @property
    def ici(self) -> IciConfig:
        """The chip-to-chip links under their common name (system topologies, reports)."""
        return self.nvlink

    @property
    def cmem(self) -> None:
        """No memory that software places tensors in for a whole run: the L2 is a cache."""
        return None

    @property
    def component_labels(self) -> dict[str, str]:
        """What each shared energy and area component is on a GPU (reports)."""
        return {"mxu": "tensor cores", "vpu": "CUDA cores", "vmem": "shared memory", "cmem": "L2", "ici": "NVLink",
                "periphery": "rest of die"}

    @property
    def area_labels(self) -> dict[str, str]:
        """As ``component_labels``, for area: the matrix units' area is the whole SMs'."""
        return {**self.component_labels, "mxu": "SMs"}

    @property
    def memory_levels(self) -> tuple[tuple[str, MemoryLevelConfig], ...]:
        return (("l2", self.l2), ("hbm", self.hbm))

    @property
    def prefetch_buffer(self) -> float:
        """Bytes of the usable L2 the compiler may fill with the next op's operands while the current op
        runs (``compiler.prefetch``; 0 without overlap)."""
        return self.l2.usable_capacity * self.compiler.prefetch_share

    @property
    def matrix_dtypes(self) -> tuple[DType, ...]:
        return tuple(self.sm.tensor_macs_per_cycle)

    def peak_macs_per_second(self, dtype: DType) -> float:
        return self.sm.count * self.sm.tensor_macs_per_cycle[dtype] * self.clock

    @property
    def vector_ops_per_second(self) -> float:
        return self.sm.count * self.sm.alu_ops_per_cycle * self.clock
