"""How compute and data transfers overlap within one op.

An op is split into ``steps`` equal pipeline steps (VMEM tiles, double-buffered): while step
i computes, step i+1's operands load and step i-1's results store. The first step's load and
the last step's compute cannot overlap anything, so

    time = latency + T_mem/steps + C/steps + (steps - 1)/steps * max(T_mem, C)

which is T_mem + C for one step and tends to max(T_mem, C), the roofline, for many. T_mem is
the busiest memory channel's time (each level's reads and writes over its bandwidth).
Works elementwise on numpy arrays too (the tiling search evaluates many candidates at once).
"""

from __future__ import annotations

import numpy as np

from archsim.config.schema import HardwareConfig
from archsim.hw.memory import Level, Traffic


def level_config(hw: HardwareConfig, level: Level):
    config = getattr(hw, level.value)
    if config is None:
        raise ValueError(f"the chip has no {level.value}")
    return config


def channel_times(hw: HardwareConfig, traffic: Traffic) -> dict[Level, float]:
    """Seconds each memory level's port is busy moving this traffic."""
    times = {}
    for level in Level:
        moved = traffic.total(level)
        if moved:
            times[level] = moved / level_config(hw, level).bandwidth
    return times


def access_latency(hw: HardwareConfig, levels) -> float:
    """The exposed start-up latency: the slowest level touched (transfers start together)."""
    return max((level_config(hw, lv).latency for lv in levels), default=0.0)


def overlapped_time(t_mem, t_compute, steps, latency=0.0):
    steps = np.maximum(steps, 1)
    return latency + (t_mem + t_compute + (steps - 1) * np.maximum(t_mem, t_compute)) / steps
