"""How compute and data transfers overlap within one op.

An op's operands arrive in ``steps`` pieces (array folds for a matmul, row blocks for a
vector op) through double-buffered VMEM. Compute can start once the first piece is in; after
that, transfers and compute overlap, so

    time = latency + max(T_mem, T_mem / steps + C)

which is T_mem + C for one step and tends to max(T_mem, C), the roofline bound, for many.
T_mem is the busiest memory channel's time (each level's reads and writes over its
achievable bandwidth, ``bandwidth x efficiency``), C the unit's compute time and latency the exposed access latency. The time never
decreases when T_mem or C grows, nor when steps shrinks. Works elementwise on numpy arrays.
"""

from __future__ import annotations

import numpy as np

from archsim.config.schema import HardwareConfig
from archsim.hw.memory import Level, Traffic


_LEVELS = tuple(Level)  # iterating the enum itself is slow, and this runs per op cost


def level_config(hw: HardwareConfig, level: Level):
    config = getattr(hw, level.value)
    if config is None:
        raise ValueError(f"the chip has no {level.value}")
    return config


def channel_times(hw: HardwareConfig, traffic: Traffic) -> dict[Level, float]:
    """Seconds each memory level's port is busy moving this traffic."""
    times = {}
    for level in _LEVELS:
        moved = traffic.total(level)
        if moved:
            times[level] = moved / level_config(hw, level).achievable_bandwidth
    return times


def access_latency(hw: HardwareConfig, levels) -> float:
    """The exposed start-up latency: the slowest level touched (transfers start together)."""
    return max((level_config(hw, lv).latency for lv in levels), default=0.0)


def overlapped_time(t_mem, t_compute, steps, latency=0.0):
    return latency + np.maximum(t_mem, t_mem / np.maximum(steps, 1) + t_compute)
