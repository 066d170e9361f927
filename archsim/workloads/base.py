"""Workload files: YAML data naming a ``kind`` and its parameters, lowered to a Workload.

Kinds are a registry. Workload files share the hardware configs' loader, so ``extends:``,
``--set``-style overrides and the same one-line error reporting work for them too. Paths
inside a workload file (a model's config.json, a recorded trace) are relative to that file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Sequence

from archsim.config.fields import Strict
from archsim.config.loader import Override, Layered, load_layered, validate_layered
from archsim.dtypes import DType
from archsim.errors import ConfigError
from archsim.ir.graph import Workload
from archsim.ir.transformer import Precision

_KINDS: dict[str, type["WorkloadSpec"]] = {}


def register_workload(cls: type["WorkloadSpec"]) -> type["WorkloadSpec"]:
    """Class decorator: files whose ``kind`` is ``cls.KIND`` are read into ``cls``."""
    _KINDS[cls.KIND] = cls
    return cls


def workload_kinds() -> list[str]:
    return sorted(_KINDS)


class WorkloadSpec(Strict, ABC):
    """A validated workload description; ``build`` lowers it to operator graphs."""

    KIND: ClassVar[str]
    kind: str
    name: str

    @abstractmethod
    def build(self, paths: "PathResolver", tp: int = 1) -> Workload:
        """Lower to a Workload for one rank of ``tp`` tensor-parallel ranks; relative paths
        resolve through ``paths``."""


class PathResolver:
    """Resolves a relative path found at a key of a workload file against the file that wrote
    that key (a parent in an ``extends:`` chain keeps its own relative paths)."""

    def __init__(self, layered: Layered | None = None, default: Path = Path(".")):
        self._layered = layered
        self._default = default

    def source(self, key: str) -> str:
        """The file (or ``--set`` option) that wrote ``key``."""
        return self._layered.source_of(tuple(key.split(".")), "--set") if self._layered else str(self._default)

    def __call__(self, key: str, value: str) -> Path:
        base = self._layered.directory_of(tuple(key.split("."))) if self._layered else self._default
        return base / value


class PrecisionSpec(Strict):
    weights: DType = DType.BF16
    activations: DType = DType.BF16
    kv: DType = DType.BF16

    def precision(self) -> Precision:
        return Precision(self.weights, self.activations, self.kv)


def load_spec(path: str | Path, overrides: Sequence[Override] = ()) -> WorkloadSpec:
    return _load(path, overrides)[0]


def _load(path: str | Path, overrides: Sequence[Override]) -> tuple[WorkloadSpec, Layered]:
    layered = load_layered(path, overrides)
    kind = layered.data.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ConfigError(
            f"unknown workload kind {kind!r}; expected one of: {', '.join(workload_kinds())}",
            file=layered.source_of(("kind",), str(path)), key="kind",
        )
    return validate_layered(_KINDS[kind], layered, str(path)), layered


def load_workload(path: str | Path, overrides: Sequence[Override] = ()) -> Workload:
    return load_spec_and_workload(path, overrides)[1]


def load_spec_and_workload(path: str | Path, overrides: Sequence[Override] = ()) -> tuple[WorkloadSpec, Workload]:
    """The validated spec and the workload it lowers to, from one read of the file."""
    spec, layered = _load(path, overrides)
    try:
        return spec, spec.build(PathResolver(layered))
    except ConfigError:
        raise
    except ValueError as exc:  # a combination of valid fields the lowering cannot build
        raise ConfigError(str(exc), file=str(path)) from None
