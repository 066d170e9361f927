"""Tensors of the operator graph: a shape, a dtype and a role."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from archsim.dtypes import DType


class Role(StrEnum):
    """What a tensor is to the hardware; decides where it lives and how long."""

    WEIGHT = "weight"  # parameters: persistent, read-only
    ACTIVATION = "activation"  # produced and consumed within one forward
    KV_CACHE = "kv_cache"  # persistent across decode steps, appended to
    FEATURE_CACHE = "feature_cache"  # persistent across diffusion steps (cache schedules)

    @property
    def persistent(self) -> bool:
        return self is not Role.ACTIVATION


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: DType
    role: Role = Role.ACTIVATION

    def __post_init__(self) -> None:
        if any(int(d) != d or d <= 0 for d in self.shape):
            raise ValueError(f"tensor {self.name!r}: shape {self.shape} must be positive integers")

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def bytes(self) -> float:
        return self.elements * self.dtype.bytes
