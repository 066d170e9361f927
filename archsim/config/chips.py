"""The chip kinds a hardware config can describe, chosen by its top-level ``kind`` key: a
registry of config classes (``tpu``, the default, and ``gpu``). The models that evaluate each
kind register in ``archsim.chips``."""

from __future__ import annotations

from typing import Union

from archsim.config.gpu import GpuConfig
from archsim.config.schema import HardwareConfig

ChipConfig = Union[HardwareConfig, GpuConfig]

CHIP_KINDS: dict[str, type[HardwareConfig] | type[GpuConfig]] = {"tpu": HardwareConfig, "gpu": GpuConfig}
DEFAULT_KIND = "tpu"


def chip_class(kind: object) -> type[HardwareConfig] | type[GpuConfig] | None:
    """The config class of a ``kind`` value as written (None: no such chip kind)."""
    if kind is None:
        return CHIP_KINDS[DEFAULT_KIND]
    return CHIP_KINDS.get(kind) if isinstance(kind, str) else None
