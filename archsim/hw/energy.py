"""Energy per component: per-action energies from the config, scaled to the chip's node.

A run's energy is, per op: MACs x MAC energy (matrix units) + CIM weight writes x write
energy; vector ops x op energy (vector unit); bytes read and written at each memory level x
its read/write energy; bytes over the chip-to-chip links x link energy; and static power x the
op's time. The components add up to the op's total, and ops add up to the run's.

Technology scaling: a component whose figures were measured at node ``stated_at`` is scaled
by ``scaling[chip node].energy / scaling[stated_at].energy`` (and likewise for area), the
relative factors being config data with their source.
"""

from __future__ import annotations

from dataclasses import dataclass

from archsim.additive import Additive
from archsim.config.schema import HardwareConfig
from archsim.dtypes import DType
from archsim.hw.memory import Level, Traffic
from archsim.ir.ops import VectorWork
from archsim.memo import BoundedMemo, cached_property

COMPONENTS = ("mxu", "vpu", "vmem", "cmem", "hbm", "ici", "static")


@dataclass(frozen=True)
class Energy(Additive):
    """Joules per component."""

    mxu: float = 0.0
    vpu: float = 0.0
    vmem: float = 0.0
    cmem: float = 0.0
    hbm: float = 0.0
    ici: float = 0.0
    static: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.values())  # field by field, in order: COMPONENTS


ZERO_ENERGY = Energy()


def scale_factor(hw: HardwareConfig, stated_at: float | None, quantity: str) -> float:
    """How much a figure stated at ``stated_at`` grows (or shrinks) at the chip's node."""
    return scaled(hw.technology, stated_at, quantity)


def scaled(technology, stated_at: float | None, quantity: str) -> float:
    """``scale_factor`` from the chip's ``technology`` section."""
    if stated_at is None:
        return 1.0
    return getattr(technology.factors(technology.node), quantity) / getattr(technology.factors(stated_at), quantity)


@dataclass(frozen=True)
class EnergyModel:
    """Per-action energies at the chip's node, in joules (per MAC, per op, per byte)."""

    mac: dict[DType, float]
    weight_write: float
    vpu_alu: float
    vpu_special: float
    read: dict[Level, float]
    write: dict[Level, float]
    ici: float
    static_power: float

    @classmethod
    def of(cls, hw: HardwareConfig) -> "EnergyModel":
        """The chip's energies. The per-action ones read the units' sections and the memories'
        energies, not their capacities or bandwidths: design points alike in those (a sweep's
        memory axes) share them, each point its own static power."""
        units = technology, mxu, vpu, ici = hw.technology, hw.mxu, hw.vpu, hw.ici  # shared as objects
        # the memories' figures by value (parsed exactly from their texts: no -0.0 to tell apart)
        levels = tuple(_figures(getattr(hw, name)) for name in _LEVEL_NAMES)
        key = (id(technology), id(mxu), id(vpu), id(ici), levels)
        entry = _PER_ACTION.get(key)
        # held with the sections: no other has their ids meanwhile
        if entry is None or entry[0][0] is not technology or entry[0][1] is not mxu or entry[0][2] is not vpu \
                or entry[0][3] is not ici:
            entry = _PER_ACTION.put(key, (units, cls._per_action(hw), {}))
        static = _static_power(hw)
        if not static:  # 0.0 and -0.0 are one key: made afresh, each keeps its own sign
            return cls(**entry[1], static_power=static)
        models = entry[2]  # the models of these per-action energies, by static power (immutable: shared)
        model = models.get(static)
        if model is None:
            if len(models) >= _MODELS_HELD:
                models.clear()
            model = models[static] = cls(**entry[1], static_power=static)
        return model

    @staticmethod
    def _per_action(hw: HardwareConfig) -> dict:
        mxu_scale = scale_factor(hw, hw.mxu.stated_at, "energy")
        vpu_scale = scale_factor(hw, hw.vpu.stated_at, "energy")
        read, write = {}, {}
        for level in Level:
            cfg = getattr(hw, level.value)
            if cfg is not None:
                s = scale_factor(hw, cfg.stated_at, "energy")
                read[level], write[level] = cfg.read_energy * s, cfg.write_energy * s
        cim = getattr(hw.mxu, "cim", None)
        return dict(
            mac={d: e * mxu_scale for d, e in hw.mxu.mac_energy.items()},
            weight_write=(cim.weight_write_energy if cim is not None else hw.mxu.weight_load_energy) * mxu_scale,
            vpu_alu=hw.vpu.alu_op_energy * vpu_scale,
            vpu_special=hw.vpu.special_op_energy * vpu_scale,
            read=read,
            write=write,
            ici=hw.ici.energy_per_byte * scale_factor(hw, hw.ici.stated_at, "energy"),
        )

    def op_energy(
        self,
        latency_s: float,
        traffic: Traffic,
        macs: int = 0,
        dtype: DType | None = None,
        weight_write_bytes: float = 0.0,
        vector: VectorWork = VectorWork(0, 0),
    ) -> Energy:
        read_vmem, write_vmem, read_cmem, write_cmem, read_hbm, write_hbm = self._per_byte
        new = object.__new__(Energy)  # as Additive's sums: no __init__ setting each field in turn
        new.__dict__.update(
            mxu=macs * self.mac[dtype] + weight_write_bytes * self.weight_write if macs else 0.0,
            vpu=vector.alu * self.vpu_alu + vector.special * self.vpu_special,
            vmem=traffic.vmem_read * read_vmem + traffic.vmem_write * write_vmem,
            cmem=traffic.cmem_read * read_cmem + traffic.cmem_write * write_cmem,
            hbm=traffic.hbm_read * read_hbm + traffic.hbm_write * write_hbm,
            ici=0.0,
            static=self.static_power * latency_s,
        )
        return new

    @cached_property
    def _per_byte(self) -> tuple[float, ...]:
        """Joules per byte read and written at VMEM, CMEM and HBM (0 for a level the chip lacks)."""
        read, write = self.read.get, self.write.get
        return (read(Level.VMEM, 0.0), write(Level.VMEM, 0.0), read(Level.CMEM, 0.0), write(Level.CMEM, 0.0),
                read(Level.HBM, 0.0), write(Level.HBM, 0.0))


_LEVEL_NAMES = tuple(level.value for level in Level)


def _figures(cfg) -> tuple | None:
    """What a memory level's per-action energies read of its section."""
    return None if cfg is None else (cfg.stated_at, cfg.read_energy, cfg.write_energy)


# per-action energies by the sections they read (held, with them), and the models made of them
# by static power (the designs of a sweep alike but for what static power reads): a few per sweep
_PER_ACTION: BoundedMemo[tuple[tuple, dict, dict]] = BoundedMemo(size=256)
_MODELS_HELD = 256


def clear_energy_models() -> None:
    _PER_ACTION.clear()


def _static_power(hw) -> float:
    global _STATIC_POWER
    if _STATIC_POWER is None:  # imported on first use: it reads the die's area, whose model scales by this module
        from archsim.hw.leakage import static_power
        _STATIC_POWER = static_power
    return _STATIC_POWER(hw)


_STATIC_POWER = None
