"""Tensors of the operator graph: a shape, a dtype and a role."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from archsim.dtypes import DType
from archsim.memo import cached_property


class Role(StrEnum):
    """What a tensor is to the hardware; decides where it lives and how long."""

    WEIGHT = "weight"  # parameters: persistent, read-only
    CONSTANT = "constant"  # fixed tables that are not parameters (sin-cos position embeddings)
    ACTIVATION = "activation"  # produced and consumed within one forward
    KV_CACHE = "kv_cache"  # persistent across decode steps, appended to
    FEATURE_CACHE = "feature_cache"  # persistent across diffusion steps (cache schedules)

    @property
    def persistent(self) -> bool:
        return self is not Role.ACTIVATION


@dataclass(frozen=True)
class Tensor:
    """A tensor; ``copies`` > 1 stands for that many distinct tensors of this shape (one per
    layer of a stack of identical layers), so a 48-layer model need not be 48 graphs."""

    name: str
    shape: tuple[int, ...]
    dtype: DType
    role: Role = Role.ACTIVATION
    copies: int = field(default=1, kw_only=True)
    # Independent instances held at once (the K/V caches of a pipeline's micro-batches in flight):
    # they multiply the storage, not the traffic of an op, which touches one instance.
    instances: int = field(default=1, kw_only=True)

    def __post_init__(self) -> None:
        if any(int(d) != d or d <= 0 for d in self.shape):
            raise ValueError(f"tensor {self.name!r}: shape {self.shape} must be positive integers")
        if self.copies < 1:
            raise ValueError(f"tensor {self.name!r}: copies must be at least 1")

    # cached: read for every op of every run; the fields are frozen
    @cached_property
    def elements(self) -> int:
        return math.prod(self.shape)

    @cached_property
    def bytes(self) -> float:
        """Bytes of one copy."""
        return self.elements * self.dtype.bytes

    @cached_property
    def total_bytes(self) -> float:
        """Bytes of all copies and instances: the storage it takes."""
        return self.bytes * self.copies * self.instances
