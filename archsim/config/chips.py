"""The chip kinds a hardware config can describe, chosen by its top-level ``kind`` key: a
registry of config classes (``tpu``, the default, and ``gpu``). The models that evaluate each
kind register in ``archsim.chips``. A kind's config module is imported when a config of that kind
is read, so a TPU run never loads the GPU's (start-up time, issue 22)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from archsim.config.gpu import GpuConfig
    from archsim.config.schema import HardwareConfig

    ChipConfig = Union[HardwareConfig, GpuConfig]

# kind -> (module, class) of its config
_CLASSES = {"tpu": ("archsim.config.schema", "HardwareConfig"), "gpu": ("archsim.config.gpu", "GpuConfig")}
CHIP_KINDS = tuple(_CLASSES)
DEFAULT_KIND = "tpu"


def chip_config_class(kind: str) -> type:
    """The config class of a registered chip kind (its module imported on first use)."""
    module, name = _CLASSES[kind]
    return getattr(importlib.import_module(module), name)


def chip_class(kind: object) -> type | None:
    """The config class of a ``kind`` value as written (None: no such chip kind)."""
    if kind is None:
        return chip_config_class(DEFAULT_KIND)
    return chip_config_class(kind) if isinstance(kind, str) and kind in _CLASSES else None
