"""Design points: a config file plus the key overrides of one combination, on one workload.

A point's identity (the key a re-run skips finished work by) is a hash of the file's merged
contents, the overrides and the workload, so editing a file makes its points new.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from archsim.config.loader import Layered, Override
from archsim.config.sweep import SweepSpec
from archsim.errors import ConfigError


@dataclass(frozen=True)
class Point:
    """One design point on one workload: what a worker evaluates."""

    key: str
    config: str  # path of the config file
    overrides: tuple[tuple[str, Any], ...]  # the swept values
    workload: str  # path of the workload file
    workload_overrides: str  # JSON of the workload's set: values
    role: str  # "point" or "baseline"
    workload_id: str  # the workload as built: rows with the same id are comparable
    base_overrides: tuple[tuple[str, str], ...] = ()  # the command line's --set, applied first
    # the sweep's power constraints, checked after the run: (index, min W or None, max W or None)
    power_limits: tuple[tuple[int, float | None, float | None], ...] = ()


def point_key(base_digest: str, overrides, workload_digest: str, workload_overrides) -> str:
    blob = json.dumps([base_digest, list(overrides), workload_digest, list(workload_overrides)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def workload_digest(workload) -> str:
    """A point's ``workload_id``: the workload as built (every phase and op)."""
    return digest([(p.name, p.repeat, [repr(op) for op in p.graph.ops()]) for p in workload.phases])[:20]


def workload_refs(spec: SweepSpec, base_dir: Path, source: str) -> list[tuple[str, str, tuple[Override, ...]]]:
    """Each workload of ``spec``: its path, its ``set:`` values as JSON (what a point carries)
    and as overrides that name their key in ``source`` (what an error about them says)."""
    refs = []
    for i, ref in enumerate(spec.workloads):
        file, sets = (ref, {}) if isinstance(ref, str) else (ref.file, ref.set)
        path = (base_dir / file).resolve()
        if not path.is_file():
            raise ConfigError(f"workload {file} not found", file=source, key=f"sweep.workloads.{i}")
        named = tuple(Override(tuple(str(k).split(".")), v, f"{k}={v}", f"{source}: sweep.workloads.{i}.set.{k}")
                      for k, v in sorted(sets.items()))
        refs.append((str(path), json.dumps(sorted(sets.items()), default=str), named))
    return refs


def design(layered: Layered, overrides: Sequence[Override]) -> Layered:
    """One design point of a config file: its values with ``overrides``, without its ``sweep:``
    section (the space, not the design; validating it again at every point would double the
    cost of checking the point)."""
    point = layered.copy(overrides)
    point.data.pop("sweep", None)  # the copy's own top level
    point.data.pop("explore", None)
    return point
