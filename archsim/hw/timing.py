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


def _levels_of(hw: HardwareConfig) -> tuple:
    """Per memory level (``_LEVELS``' order): the level, its config (None: the chip has none)
    and its achievable bandwidth. The last chip's are kept: an op's cost reads them many times."""
    global _LAST
    last = _LAST
    if last[0] is hw:  # the config itself, held here: no other object can have its id meanwhile
        return last[1]
    levels = []
    for level in _LEVELS:
        config = getattr(hw, level.value)
        levels.append((level, config, config.achievable_bandwidth if config is not None else None))
    _LAST = (hw, tuple(levels))
    return _LAST[1]


_LAST: tuple = (None, ())  # (config, its levels): configs are immutable


def channel_times(hw: HardwareConfig, traffic: Traffic) -> dict[Level, float]:
    """Seconds each memory level's port is busy moving this traffic."""
    times = {}
    for level, config, bandwidth in _levels_of(hw):
        moved = traffic.total(level)
        if moved:
            if config is None:
                raise ValueError(f"the chip has no {level.value}")
            times[level] = moved / bandwidth
    return times


def access_latency(hw: HardwareConfig, levels) -> float:
    """The exposed start-up latency: the slowest level touched (transfers start together)."""
    return max((level_config(hw, lv).latency for lv in levels), default=0.0)


def overlapped_time(t_mem, t_compute, steps, latency=0.0):
    return latency + np.maximum(t_mem, t_mem / np.maximum(steps, 1) + t_compute)


def overlapped_seconds(t_mem: float, t_compute: float, steps: int, latency: float = 0.0) -> float:
    """``overlapped_time`` of one op, in Python floats (numpy's scalars cost microseconds a call):
    the same operations, so the same bits."""
    return latency + max(t_mem, t_mem / max(steps, 1) + t_compute)
