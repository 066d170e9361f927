"""A GPU's energy per action and die area, in the TPU-style chip's components (by role: ``mxu``
the tensor cores, ``vpu`` the CUDA cores and special-function units, ``vmem`` shared memory,
``cmem`` the L2, ``ici`` NVLink, ``periphery`` the rest of the die)."""

from __future__ import annotations

from archsim.config.gpu import GpuConfig
from archsim.hw.area import Area
from archsim.hw.energy import EnergyModel, scale_factor
from archsim.hw.leakage import static_power
from archsim.hw.memory import Level


def gpu_energy_model(hw: GpuConfig) -> EnergyModel:
    """Per-action energies at the GPU's node (``stated_at`` figures scaled as for any chip)."""
    sm = scale_factor(hw, hw.sm.stated_at, "energy")
    l2 = scale_factor(hw, hw.l2.stated_at, "energy")
    hbm = scale_factor(hw, hw.hbm.stated_at, "energy")
    return EnergyModel(
        mac={d: e * sm for d, e in hw.sm.mac_energy.items()},
        weight_write=0.0,
        vpu_alu=hw.sm.alu_op_energy * sm,
        vpu_special=hw.sm.special_op_energy * sm,
        read={Level.VMEM: hw.sm.shared_energy * sm, Level.CMEM: hw.l2.read_energy * l2,
              Level.HBM: hw.hbm.read_energy * hbm},
        write={Level.VMEM: hw.sm.shared_energy * sm, Level.CMEM: hw.l2.write_energy * l2,
               Level.HBM: hw.hbm.write_energy * hbm},
        ici=hw.nvlink.energy_per_byte * scale_factor(hw, hw.nvlink.stated_at, "energy"),
        static_power=static_power(hw),
    )


def gpu_area(hw: GpuConfig) -> Area:
    """The die: every SM on it (enabled or not), the L2 by its capacity, NVLink, the rest."""
    l2 = hw.l2.capacity * hw.l2.area_per_byte if hw.l2.area_per_byte is not None else 0.0
    return Area(
        mxu=(hw.sm.on_die or hw.sm.count) * hw.sm.area * scale_factor(hw, hw.sm.stated_at, "area"),
        cmem=l2 * scale_factor(hw, hw.l2.stated_at, "area"),
        ici=hw.nvlink.area * scale_factor(hw, hw.nvlink.stated_at, "area"),
        periphery=hw.periphery_area,
    )
