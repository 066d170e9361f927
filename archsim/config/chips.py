"""The chip kinds a hardware config can describe, chosen by its top-level ``kind`` key: a
registry of config classes (``tpu``, the default, and ``gpu``). The models that evaluate each
kind register in ``archsim.chips``. A kind's config module is imported when a config of that kind
is read, so a TPU run never loads the GPU's (start-up time, issue 22)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Union

if TYPE_CHECKING:
    from archsim.config.gpu import GpuConfig
    from archsim.config.schema import HardwareConfig

    ChipConfig = Union[HardwareConfig, GpuConfig]

def _tpu() -> type:
    from archsim.config.schema import HardwareConfig

    return HardwareConfig


def _gpu() -> type:
    from archsim.config.gpu import GpuConfig

    return GpuConfig


# kind -> what imports its config class (static imports, run on first use)
_CLASSES: dict[str, Callable[[], type]] = {"tpu": _tpu, "gpu": _gpu}
CHIP_KINDS = tuple(_CLASSES)
DEFAULT_KIND = "tpu"


def chip_config_class(kind: str) -> type:
    """The config class of a registered chip kind (its module imported on first use)."""
    return _CLASSES[kind]()


def chip_class(kind: object) -> type | None:
    """The config class of a ``kind`` value as written (None: no such chip kind)."""
    if kind is None:
        return chip_config_class(DEFAULT_KIND)
    return chip_config_class(kind) if isinstance(kind, str) and kind in _CLASSES else None
