"""Workload files: YAML data naming a ``kind`` and its parameters, lowered to a Workload.

Kinds are a registry. Workload files share the hardware configs' loader, so ``extends:``,
``--set``-style overrides and the same one-line error reporting work for them too. Paths
inside a workload file (a model's config.json, a recorded trace) are relative to that file.
"""

from __future__ import annotations

import inspect

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

from pydantic import Field

from archsim.config.fields import Strict
from archsim.config.loader import Override, Layered, load_layered, validate_layered
from archsim.dtypes import DType
from archsim.errors import ConfigError
from archsim.ir.graph import Workload
from archsim.ir.transformer import Precision

_KINDS: dict[str, type["WorkloadSpec"]] = {}


def _block() -> None:
    from archsim.workloads import block  # noqa: F401  (registers the kind)


def _dit() -> None:
    from archsim.workloads import dit  # noqa: F401


def _dit_family() -> None:
    from archsim.workloads import dit_family  # noqa: F401


def _dllm() -> None:
    from archsim.workloads import dllm  # noqa: F401


def _llm() -> None:
    from archsim.workloads import llm  # noqa: F401


# The bundled kinds and what imports the module registering each: run when a file of that kind
# is read, so a run loads only its own kind's extractor (start-up time, issue 22).
BUNDLED_KINDS = {"transformer_block": _block, "dit": _dit, "diffusion_transformer": _dit_family, "dllm": _dllm,
                 "llm": _llm}

# A documented limit: elements of one tensor (of one layer's copy), about 10^15. Every field is
# bounded, but their products (batch x tokens x hidden) are not; this keeps every dimension and
# tile count of the models within 64-bit integers.
MAX_TENSOR_ELEMENTS = 2**50


def register_workload(cls: type["WorkloadSpec"]) -> type["WorkloadSpec"]:
    """Class decorator: files whose ``kind`` is ``cls.KIND`` are read into ``cls``."""
    _KINDS[cls.KIND] = cls
    return cls


def workload_kinds() -> list[str]:
    return sorted(set(_KINDS) | set(BUNDLED_KINDS))


def spec_class(kind: str) -> type["WorkloadSpec"] | None:
    """The spec class of a workload kind (its module imported on first use), or None."""
    if kind not in _KINDS and kind in BUNDLED_KINDS:
        BUNDLED_KINDS[kind]()
    return _KINDS.get(kind)


def spec_classes() -> dict[str, type["WorkloadSpec"]]:
    """Every kind's spec class, every bundled kind's module imported."""
    return {kind: cls for kind in workload_kinds() if (cls := spec_class(kind)) is not None}


class WorkloadSpec(Strict, ABC):
    """A validated workload description; ``build`` lowers it to operator graphs."""

    KIND: ClassVar[str]
    kind: str = Field(description="the workload's kind, which picks its keys")
    name: str = Field(description="the workload's name in reports and results")

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
    weights: DType = Field(default=DType.BF16, description="number format of the weights (and fixed tables such as "
                           "position embeddings)")
    activations: DType = Field(default=DType.BF16, description="number format of the activations, the tensors "
                               "passed between ops")
    kv: DType = Field(default=DType.BF16, description="number format of the KV cache (and of a diffusion "
                      "transformer's feature caches)")

    def precision(self) -> Precision:
        return Precision(self.weights, self.activations, self.kv)


@dataclass(frozen=True)
class Lowering:
    """What one chip of a parallel mapping runs: its share of the batch and of each layer."""

    tensor_parallel: int = 1
    batch_split: int = 1  # data-parallel replicas x micro-batches
    expert_parallel: int = 1  # replicas among which a mixture of experts' experts are divided

    @classmethod
    def of(cls, hw) -> "Lowering":
        p = hw.system.parallelism
        return cls(p.tensor, p.data * p.micro_batches, p.expert)


def lower(spec: WorkloadSpec, paths: PathResolver, lowering: Lowering = Lowering(), source: str = "") -> Workload:
    """Build ``spec`` for one chip of ``lowering``: a 1/batch_split share of the batch, each
    tensor-parallel layer split ``tensor_parallel`` ways."""
    if lowering.batch_split > 1:
        batch = getattr(spec, "batch", None)
        if batch is None or batch % lowering.batch_split:
            raise ConfigError(
                f"batch {batch} cannot be split into {lowering.batch_split} equal parts (system.parallelism "
                "data x micro_batches); set a batch it divides, or fewer micro-batches with "
                "--set system.parallelism.micro_batches=N", file=source or paths.source("batch"), key="batch")
        spec = spec.model_copy(update={"batch": batch // lowering.batch_split})
    try:
        if lowering.expert_parallel > 1:
            if "ep" not in inspect.signature(spec.build).parameters:
                raise ConfigError(f"system.parallelism.expert is {lowering.expert_parallel}, but a {spec.KIND} "
                                  "workload has no mixture of experts to divide", file=source or paths.source("kind"))
            workload = spec.build(paths, lowering.tensor_parallel, ep=lowering.expert_parallel)
        else:
            workload = spec.build(paths, lowering.tensor_parallel)
    except ConfigError:
        raise
    except (ValueError, OverflowError) as exc:  # a combination of valid fields the lowering cannot build
        raise ConfigError(str(exc), file=source or paths.source("kind")) from None
    _check_sizes(workload, source or paths.source("kind"))
    return workload


def _check_sizes(workload: Workload, source: str) -> None:
    for phase in workload.phases:
        for name, tensor in phase.graph.tensors.items():
            if tensor.elements > MAX_TENSOR_ELEMENTS:
                raise ConfigError(
                    f"tensor {name} of phase {phase.name!r} has {tensor.elements:.3g} elements (shape "
                    f"{' x '.join(map(str, tensor.shape))}); archsim's limit is 2^50 = {MAX_TENSOR_ELEMENTS:.3g} "
                    "per tensor: use a smaller batch, sequence or model", file=source)


def load_spec(path: str | Path, overrides: Sequence[Override] = ()) -> WorkloadSpec:
    return _load(path, overrides)[0]


def _load(path: str | Path, overrides: Sequence[Override]) -> tuple[WorkloadSpec, Layered]:
    layered = load_layered(path, overrides)
    kind = layered.data.get("kind")
    cls = spec_class(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(
            f"unknown workload kind {kind!r}; expected one of: {', '.join(workload_kinds())}",
            file=layered.source_of(("kind",), str(path)), key="kind",
        )
    if "schedule" not in cls.model_fields and any(o.path == ("schedule",) for o in overrides):
        raise ConfigError(f"schedules apply only to diffusion transformers (feature caching: kind: dit or "
                          f"diffusion_transformer) and language models (decoding: kind: llm); this workload is "
                          f"kind: {kind}", file=layered.source_of(("kind",), str(path)), key="kind")
    return validate_layered(cls, layered, str(path)), layered


def load_workload(path: str | Path, overrides: Sequence[Override] = (), lowering: Lowering = Lowering()) -> Workload:
    return load_spec_and_workload(path, overrides, lowering)[1]


def load_spec_and_workload(path: str | Path, overrides: Sequence[Override] = (),
                           lowering: Lowering = Lowering()) -> tuple[WorkloadSpec, Workload]:
    """The validated spec and the workload it lowers to, from one read of the file."""
    spec, layered = _load(path, overrides)
    return spec, lower(spec, PathResolver(layered), lowering, str(path))
