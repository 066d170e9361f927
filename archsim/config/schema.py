"""Typed hardware model: what a chip is, validated from YAML. All values are SI floats.

Matrix units are a pluggable kind: each kind has its own config class here (selected by its
``kind`` key) and its own timing model registered in ``archsim.hw.matrix``.

Energy and area figures sit with the component they describe. A component whose figures were
measured at another technology node says so with ``stated_at``; they are scaled to the chip's
node by the ``technology.scaling`` table (see ``archsim.hw.energy``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from archsim import units
from archsim.config.fields import (
    Area, AreaPerByte, Bandwidth, Count, Energy, EnergyPerByte, Frequency, Latency, Length, NonNegativeCount,
    Efficiency, Fraction, NonNegativeFactor, PositiveFactor, Power, ScaleFactor, Size, Strict, checked_once,
)
from archsim.config.compiler import CompilerConfig, check_profile, with_default_profile
from archsim.config.power import LeakageConfig, check_static
from archsim.config.explore import ExploreSpec
from archsim.config.sweep import SweepSpec
from archsim.config.sweep_keys import SweepChecks
from archsim.config.system import SystemConfig
from archsim.dtypes import DType
from archsim.errors import FieldError


class Scaled(Strict):
    stated_at: Length | None = Field(
        default=None, description="technology node this component's energy and area figures are for; "
        "default: the chip's node")


class SystolicConfig(Scaled):
    """A group of identical rows x cols systolic arrays (TPU-style MXUs)."""

    kind: Literal["systolic"] = Field(description="matrix unit kind: systolic (this) or cim")
    count: Count = Field(description="number of matrix units")
    rows: Count = Field(description="PE rows; the reduction (K) dimension in ws")
    cols: Count = Field(description="PE columns")
    dataflow: Literal["ws", "os", "is"] = Field(description="weight/output/input stationary")
    fold_model: Literal["scalesim", "pipelined"] = Field(
        description="scalesim: every fold pays fill and drain; pipelined: the next fold's "
        "stationary load and skew overlap the current fold"
    )
    pe_macs_per_cycle: dict[DType, Count] = Field(
        min_length=1, description="MACs one PE completes per cycle, per supported operand dtype; a rate p > 1 "
        "is modelled as p reduction elements packed per PE"
    )
    weight_load_rows_per_cycle: Count = Field(
        default=1, description="rows of the stationary tile shifted into an array per cycle (ws, is): "
        "a tile of R rows loads in R / this many cycles")
    weight_load_overlap: Fraction = Field(
        default=1.0, description="share of a fold's stationary load hidden behind the previous fold's "
        "stream: 1 = fully double-buffered (a fold costs max(stream, load)), 0 = serial (stream + load)")
    mac_energy: dict[DType, Energy] = Field(description="energy of one MAC in the array, per dtype")
    weight_load_energy: EnergyPerByte = Field(description="energy to put a byte of the stationary operand into "
                                              "the array's PE registers (ws, is; os loads none)")
    pe_area: Area = Field(description="area of one PE (the array's share of the MXU)")

    @model_validator(mode="after")
    @checked_once
    def _energies_for_every_dtype(self) -> "SystolicConfig":
        _same_dtypes(self.pe_macs_per_cycle, self.mac_energy)
        return self

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    def macs_per_cycle(self, dtype: DType) -> int:
        """Peak MACs per cycle of one matrix unit for operands of this dtype."""
        return self.pes * self.pe_macs_per_cycle[dtype]

    @property
    def unit_area(self) -> float:
        return self.pes * self.pe_area


class CimMacroConfig(Strict):
    """The digital compute-in-memory cores of one CIM matrix unit."""

    grid: tuple[Count, Count] = Field(description="cores per unit: rows (along K) x cols (along N)")
    core_rows: Count = Field(description="SRAM rows of a core: reduction inputs it holds")
    core_cols: Count = Field(description="SRAM columns of a core in bits: cols / weight bits outputs")
    macs_per_cycle: dict[DType, Count] = Field(min_length=1, description="MACs one core completes per cycle, per dtype")
    input_bits_per_cycle: Count = Field(description="bit-serial input width: an input's bits over this "
                                               "many per cycle is the pipeline depth a fold waits for")
    weight_write_bits_per_cycle: Count = Field(description="per-core weight write port width")
    reload_overlap: bool = Field(description="interleaved SRAM read/write: a weight reload overlaps compute")
    psum_buffer: Size = Field(description="partial-sum buffer per core")
    weight_write_energy: EnergyPerByte = Field(description="energy to write weights into the CIM SRAM")
    core_area: Area = Field(description="area of one CIM core; a unit's area is its grid of cores'")
    clock_ratio: ScaleFactor = Field(default=1.0, description="the cores' clock over the chip's: a cycle of the "
                                     "cores takes 1 / clock_ratio chip cycles (a slower macro clock: below 1)")

    @property
    def cores(self) -> int:
        return self.grid[0] * self.grid[1]


class CimConfig(Scaled):
    """A group of identical CIM matrix units (CIM-MXUs), output stationary with stationary weights."""

    kind: Literal["cim"] = Field(description="matrix unit kind: cim (this) or systolic")
    count: Count = Field(description="number of CIM matrix units")
    cim: CimMacroConfig = Field(description="the CIM cores of one unit")
    mac_energy: dict[DType, Energy] = Field(description="energy of one MAC in the CIM array, per dtype")

    @model_validator(mode="after")
    @checked_once
    def _energies_for_every_dtype(self) -> "CimConfig":
        _same_dtypes(self.cim.macs_per_cycle, self.mac_energy, "cim.macs_per_cycle")
        core = self.cim
        for dtype, rate in core.macs_per_cycle.items():
            if core.core_cols < dtype.bytes * 8:
                raise FieldError("cim.core_cols", f"{core.core_cols} bits cannot hold one {dtype} weight")
            weights = core.core_rows * (core.core_cols // int(dtype.bytes * 8))
            if rate > weights:
                raise FieldError(f"cim.macs_per_cycle.{dtype}", f"{rate} exceeds the {weights} {dtype} weights a core holds")
            if core.psum_buffer < (core.core_cols // int(dtype.bytes * 8)) * dtype.accumulator.bytes:
                raise FieldError("cim.psum_buffer", f"cannot hold one row of {dtype} partial sums")
        return self

    @property
    def pe_macs_per_cycle(self) -> dict[DType, int]:  # the supported dtypes, as for systolic units
        return self.cim.macs_per_cycle

    def macs_per_cycle(self, dtype: DType) -> float:
        """MACs per chip cycle (the cores' rate at their own clock)."""
        return self.cim.cores * self.cim.macs_per_cycle[dtype] * self.cim.clock_ratio

    @property
    def unit_area(self) -> float:
        return self.cim.cores * self.cim.core_area


def _same_dtypes(rates: dict, energies: dict, rates_key: str = "pe_macs_per_cycle") -> None:
    missing = sorted(set(rates) - set(energies))
    if missing:
        raise FieldError("mac_energy", f"no MAC energy for {', '.join(missing)} (listed in {rates_key})")


MatrixUnitConfig = Annotated[Union[SystolicConfig, CimConfig], Field(discriminator="kind")]


class VectorUnitConfig(Scaled):
    """The SIMD vector unit that runs every non-matrix op."""

    lanes: Count = Field(description="parallel ALUs (lanes x sublanes)")
    alu_ops_per_lane_per_cycle: Count = Field(
        description="simple ops (add, mul, max, compare, select) per lane per cycle"
    )
    special_cycles_per_op: PositiveFactor = Field(
        description="cycles one lane needs for a transcendental (exp, tanh, rsqrt, reciprocal)"
    )
    special_cycles: dict[Literal["exp", "tanh", "rsqrt", "reciprocal"], PositiveFactor] = Field(
        default={}, description="cycles one lane needs for these transcendentals, where they differ from "
        "special_cycles_per_op")
    pass_cycles_per_vreg: NonNegativeFactor = Field(
        default=0.0, description="cycles each pass of an op over its data spends per vector register's worth "
        "(lanes elements) besides the arithmetic: loading and storing the register, loop and address "
        "overhead")
    reduce_step_cycles: NonNegativeFactor = Field(
        default=0.0, description="cycles of one step of a reduction across a row's lanes (a lane rotate and "
        "an add), per vector register: a row reduction takes log2(lane_width) steps")
    lane_width: Count | None = Field(
        default=None, description="lanes along a row (the minor dimension of a vector register); a row's "
        "length is padded to a multiple of it, in registers and in memory layouts. Default: no padding")
    convert_ops_per_element: NonNegativeCount | None = Field(
        default=None, description="ALU ops to convert one element stored narrower than the MACs' type "
        "(weight-only quantisation: unpack and scale) as the arrays read it; none: such matmuls are an error")
    alu_op_energy: Energy = Field(description="energy of one simple op on one element")
    special_op_energy: Energy = Field(description="energy of one transcendental on one element")
    area: Area = Field(description="area of the vector unit (ALUs and vector registers)")


class MemoryLevelConfig(Scaled):
    capacity: Size = Field(description="bytes the memory holds")
    bandwidth: Bandwidth = Field(description="peak bandwidth, reads and writes together: bytes moved take "
                                 "bytes / (bandwidth x efficiency)")
    efficiency: Efficiency = Field(default=1.0, description="achievable share of the peak bandwidth "
                                 "(refresh, bank conflicts, DMA descriptor gaps)")
    latency: Latency = Field(description="access latency exposed once per transfer stream")
    read_energy: EnergyPerByte = Field(description="energy per byte read")
    write_energy: EnergyPerByte = Field(description="energy per byte written")
    area_per_byte: AreaPerByte | None = Field(default=None, description="on-die area per byte; none: off-die")

    @property
    def achievable_bandwidth(self) -> float:
        return self.bandwidth * self.efficiency


class IciConfig(Scaled):
    """Chip-to-chip interconnect links."""

    links: Count = Field(description="links per chip, split evenly among its distinct neighbours")
    link_bandwidth: Bandwidth = Field(description="peak bandwidth of one link in each direction (full duplex)")
    link_latency: Latency = Field(description="latency of one hop over a link, paid by each step of a transfer")
    energy_per_byte: EnergyPerByte = Field(description="energy per byte sent over one link hop")
    area: Area = Field(description="on-die area of the links' controllers and PHYs")
    efficiency: Efficiency = Field(default=1.0, description="achievable share of link_bandwidth "
                                 "(packet headers, flow control)")

    @property
    def achievable_bandwidth(self) -> float:
        return self.link_bandwidth * self.efficiency


# The op kinds a dispatch cost can name (archsim.ir.ops: each op class's ``kind``).
OP_KINDS = ("gemm", "attn_score", "attn_context", "attention", "softmax", "layernorm", "rmsnorm", "activation",
            "elementwise", "embedding", "cache_write", "all_reduce", "all_gather")
DispatchTable = dict[str, Latency]


class DispatchConfig(Strict):
    """A fixed cost per op, on top of its work: the time from one op's end to the next op's
    start. Keyed by op kind, with ``default`` for the kinds not listed.

    ``call`` is an op launched on its own (a host dispatch per op: what a per-op microbenchmark
    times, or eager execution); ``program`` an op inside one compiled program (the device's own
    issue of the next kernel). A run uses one of the two (``Simulator(dispatch=...)``)."""

    call: DispatchTable = Field(default={"default": 0.0}, description="per op launched on its own, by op kind")
    program: DispatchTable = Field(default={"default": 0.0}, description="per op in a compiled program, by op kind")
    call_overlap: DispatchTable = Field(
        default={}, description="by op kind (default: 0 s), of a call's fixed cost the host-side part that "
        "runs while the device works (after the launch: returning to the caller, then waiting on it): a call "
        "takes its cost plus its work less the shortest of this, its work and its cost")

    @field_validator("call", "program", "call_overlap")
    @classmethod
    def _known_kinds(cls, table: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(table) - set(OP_KINDS) - {"default"})
        if unknown:
            raise ValueError(f"unknown op kind {', '.join(map(repr, unknown))}; expected default or one of: "
                             f"{', '.join(OP_KINDS)}")
        return table

    @field_validator("call", "program")
    @classmethod
    def _has_default(cls, table: dict[str, float]) -> dict[str, float]:
        if "default" not in table:
            raise ValueError("needs a 'default' entry (the cost of the op kinds not listed)")
        return table

    def cost(self, mode: str, kind: str) -> float:
        table = self.call if mode == "call" else self.program
        return table.get(kind, table["default"])

    def exposed(self, mode: str, kind: str, work_s: float) -> float:
        """The fixed cost an op of ``work_s`` seconds adds to its time (``cost`` less what of
        ``call_overlap`` its work hides; a compiled program's ops overlap nothing)."""
        cost = self.cost(mode, kind)
        if mode != "call":
            return cost
        return cost - min(self.overlap(kind), work_s, cost)

    def overlap(self, kind: str) -> float:
        """``call_overlap`` for ``kind`` (its ``default``, else 0)."""
        return self.call_overlap.get(kind, self.call_overlap.get("default", 0.0))


class NodeFactors(Strict):
    energy: ScaleFactor = Field(description="dynamic energy per operation relative to the table's reference")
    area: ScaleFactor = Field(description="area relative to the table's reference")


_SAME_NODE = 1e-12  # nodes this close (relatively) are one node


class TechnologyConfig(Strict):
    node: Length = Field(description="the chip's process node")
    # Length keys: an error names the key as written ('7 nm'), not its SI value.
    scaling: dict[Length, NodeFactors] = Field(min_length=1, description="relative energy and area per node, keys like '22 nm'")

    @field_validator("scaling", mode="before")
    @classmethod
    def _one_spelling_per_node(cls, scaling: Any) -> Any:
        """'7 nm' and '7.0 nm' are one node: both in a table, one would silently replace the
        other (within the tolerance ``factors`` looks nodes up with)."""
        if not isinstance(scaling, dict):
            return scaling
        nodes = []
        for key in scaling:
            try:
                nodes.append((units.parse_quantity(key, units.LENGTH), key))
            except units.UnitError:
                continue  # reported by the field's own validation, naming the key
        nodes.sort(key=lambda pair: pair[0])
        for (a, first), (b, second) in zip(nodes, nodes[1:]):
            if b - a <= _SAME_NODE * b:
                raise ValueError(f"{first!r} and {second!r} are the same node ({b * 1e9:g} nm); list each node "
                                 "once (to override a node of an extended file, spell it the same way)")
        return scaling

    @model_validator(mode="after")
    @checked_once
    def _node_is_in_table(self) -> "TechnologyConfig":
        self.factors(self.node, "node")
        return self

    def factors(self, node: float, key: str = "stated_at") -> NodeFactors:
        for known, factors in self.scaling.items():
            if abs(known - node) <= _SAME_NODE * known:
                return factors
        listed = ", ".join(f"{k * 1e9:g} nm" for k in sorted(self.scaling))
        raise FieldError(key, f"{node * 1e9:g} nm is not in technology.scaling (listed: {listed})")


class HardwareConfig(SweepChecks):
    """One TPU-style chip (``kind: tpu``, the default), and the system of such chips it is part
    of (one by default). A GPU is another kind (``archsim.config.gpu``)."""

    kind: Literal["tpu"] = Field(default="tpu", description="the chip kind: tpu (this), or gpu")
    name: str = Field(description="the chip's name in reports")
    description: str = Field(default="", description="free text about the config (not used by the models)")
    clock: Frequency = Field(description="the chip's clock, at which the matrix and vector units run")
    technology: TechnologyConfig = Field(description="process node and energy and area scaling between nodes")
    mxu: MatrixUnitConfig = Field(description="the matrix units, by kind: systolic or cim")
    vpu: VectorUnitConfig = Field(description="the vector unit")
    vmem: MemoryLevelConfig = Field(description="vector memory: the scratchpad feeding the MXUs")
    cmem: MemoryLevelConfig | None = Field(default=None, description="on-chip common memory")
    hbm: MemoryLevelConfig = Field(description="off-chip memory")
    ici: IciConfig = Field(description="chip-to-chip interconnect links")
    static_power: Power | None = Field(default=None, description="the chip's static power as one figure")
    leakage: LeakageConfig | None = Field(default=None, description="static power from the die's area")
    tdp: Power | None = Field(default=None, description="thermal design power: a run whose average "
                              "power exceeds it is flagged (a real chip would throttle)")
    periphery_area: Area = Field(description="die area outside the modelled units (HBM PHYs, DMA, control)")
    dispatch: DispatchConfig = Field(default=DispatchConfig(), description="fixed cost per op (launch, dispatch)")
    compiler: CompilerConfig = Field(default=CompilerConfig(profile="xla"), description="what the compiler does to a "
                                     "graph and how it schedules it (default: XLA's, profile xla)")
    system: SystemConfig = Field(default=SystemConfig(), description="chips, topology and parallel mapping; default one chip")
    sweep: SweepSpec | None = Field(default=None, description="the design space around this config")
    explore: ExploreSpec | None = Field(default=None, description="a design space around this config too big for a "
                                        "grid, searched by archsim explore")

    @model_validator(mode="before")
    @classmethod
    def _default_profile(cls, data: Any) -> Any:
        return with_default_profile(data, "tpu")

    @model_validator(mode="after")
    def _consistent(self) -> "HardwareConfig":
        check_profile(self.compiler, "tpu")
        check_static(self)
        if self.cmem is not None and self.cmem.capacity < self.vmem.capacity:
            raise FieldError("cmem.capacity", "is smaller than vmem.capacity; CMEM backs VMEM")
        for key in ("mxu", "vpu", "vmem", "cmem", "hbm", "ici"):
            component = getattr(self, key)
            if component is not None and component.stated_at is not None:
                self.technology.factors(component.stated_at, f"{key}.stated_at")
        if self.tdp is not None and self.tdp <= 0:
            raise FieldError("tdp", "must be positive (leave it out when the TDP is not known)")
        needed = self.system.links_needed()
        if self.ici.links < needed:
            raise FieldError("ici.links", f"{self.ici.links} links per chip, but a {self.system.topology.kind} of "
                             f"{self.system.chips} chips needs {needed} (one per neighbour)")
        return self

    def peak_macs_per_second(self, dtype: DType) -> float:
        return self.mxu.count * self.mxu.macs_per_cycle(dtype) * self.clock

    @property
    def component_labels(self) -> dict[str, str]:
        """Reports' names of the energy and area components (their own, on this kind)."""
        return {}

    @property
    def area_labels(self) -> dict[str, str]:
        return {}

    @property
    def memory_levels(self) -> tuple[tuple[str, "MemoryLevelConfig | None"], ...]:
        """The memories by name, innermost first (reports)."""
        return (("vmem", self.vmem), ("cmem", self.cmem), ("hbm", self.hbm))

    @property
    def prefetch_buffer(self) -> float:
        """Bytes of the VMEM the compiler may fill with the next op's operands while the current op
        runs (``compiler.prefetch``; 0 without overlap)."""
        return self.vmem.capacity * self.compiler.prefetch_share

    @property
    def matrix_dtypes(self) -> tuple[DType, ...]:
        """The operand dtypes the matrix units support."""
        return tuple(self.mxu.pe_macs_per_cycle)

    @property
    def vector_ops_per_second(self) -> float:
        """Peak simple vector ops per second."""
        return self.vpu.lanes * self.vpu.alu_ops_per_lane_per_cycle * self.clock
