"""Typed hardware model: what a chip is, validated from YAML. All values are SI floats.

Matrix units are a pluggable kind: each kind has its own config class here (selected by its
``kind`` key) and its own timing model registered in ``archsim.hw.matrix``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from archsim.config.fields import Bandwidth, Frequency, Latency, Length, Size, Strict
from archsim.dtypes import DType


class SystolicConfig(Strict):
    """A group of identical rows x cols systolic arrays (TPU-style MXUs)."""

    kind: Literal["systolic"]
    count: PositiveInt = Field(description="number of matrix units")
    rows: PositiveInt = Field(description="PE rows; the reduction (K) dimension in ws")
    cols: PositiveInt = Field(description="PE columns")
    dataflow: Literal["ws", "os", "is"] = Field(description="weight/output/input stationary")
    fold_model: Literal["scalesim", "pipelined"] = Field(
        description="scalesim: every fold pays fill and drain; pipelined: the next fold's "
        "stationary load and skew overlap the current fold"
    )
    pe_macs_per_cycle: dict[DType, PositiveInt] = Field(
        description="MACs one PE completes per cycle, per supported operand dtype; a rate p > 1 "
        "is modelled as p reduction elements packed per PE"
    )

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    def macs_per_cycle(self, dtype: DType) -> int:
        """Peak MACs per cycle of one matrix unit for operands of this dtype."""
        return self.pes * self.pe_macs_per_cycle[dtype]


# The union of matrix-unit config kinds; the CIM kind joins it when it lands.
MatrixUnitConfig = SystolicConfig


class VectorUnitConfig(Strict):
    """The SIMD vector unit that runs every non-matrix op."""

    lanes: PositiveInt = Field(description="parallel ALUs (lanes x sublanes)")
    alu_ops_per_lane_per_cycle: PositiveInt = Field(
        description="simple ops (add, mul, max, compare, select) per lane per cycle"
    )
    special_cycles_per_op: PositiveInt = Field(
        description="cycles one lane needs for a transcendental (exp, tanh, rsqrt, reciprocal)"
    )


class MemoryLevelConfig(Strict):
    capacity: Size
    bandwidth: Bandwidth
    latency: Latency = Field(description="access latency exposed once per transfer stream")


class HardwareConfig(Strict):
    """One chip."""

    name: str
    description: str = ""
    clock: Frequency
    process: Length | None = Field(default=None, description="technology node, e.g. '7 nm'")
    mxu: MatrixUnitConfig
    vpu: VectorUnitConfig
    vmem: MemoryLevelConfig = Field(description="vector memory: the scratchpad feeding the MXUs")
    cmem: MemoryLevelConfig | None = Field(default=None, description="on-chip common memory")
    hbm: MemoryLevelConfig = Field(description="off-chip memory")

    @model_validator(mode="after")
    def _hierarchy_is_ordered(self) -> "HardwareConfig":
        if self.cmem is not None and self.cmem.capacity < self.vmem.capacity:
            raise ValueError("cmem.capacity is smaller than vmem.capacity; CMEM backs VMEM")
        return self

    def peak_macs_per_second(self, dtype: DType) -> float:
        return self.mxu.count * self.mxu.macs_per_cycle(dtype) * self.clock
