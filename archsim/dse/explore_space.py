"""An explore spec's design space as sweep points: a design (one value index per axis) on each
workload is the ``Point`` a sweep of the same file would give it, with the same key, so that
results are shared with sweeps and resumed from the same ``ResultStore``.

The file's config (its ``extends:`` merged, without ``explore:`` and ``sweep:``, which are no
part of a design) is written beside the results (``OUT/explore-<file>.yaml``) for the workers to
read; the point keys hash its contents as a sweep's do, not its path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from archsim.config.explore import Domain, ExploreSpec
from archsim.config.loader import (Layered, Override, load_layered, parse_overrides, validate_hardware,
                                   validate_layered)
from archsim.dse.plan import _workload_id
from archsim.dse.spec import Point, design, digest, point_key
from archsim.errors import ConfigError
from archsim.fileio import atomic_write_text
from archsim.hw.area import chip_area

SECTION = "explore"
NOT_DESIGN = ("sweep", "description", SECTION)  # a file's keys that are no part of its design

Design = tuple[int, ...]  # one value index per axis


def read_spec(file: Path, overrides: Sequence[Override] = ()) -> tuple[Layered, ExploreSpec]:
    """The file's layered contents and its validated ``explore:`` section; errors name the file
    (or the one it extends) and the key."""
    layered = load_layered(file, overrides)
    section = layered.data.get(SECTION)
    if section is None:
        raise ConfigError("no explore: section (axes, workloads, objectives, budget) to explore", file=str(file),
                          key=SECTION)
    if not isinstance(section, dict):
        raise ConfigError(f"expected a mapping, got {type(section).__name__}",
                          file=layered.source_of((SECTION,), str(file)), key=SECTION)
    inner = Layered(section, {k[1:]: v for k, v in layered.origin.items() if k[:1] == (SECTION,) and len(k) > 1})
    spec = validate_layered(ExploreSpec, inner, layered.source_of((SECTION,), str(file)), key_prefix=(SECTION,))
    return layered, spec


@dataclass
class Space:
    """The points of designs, and what constraints say of them before any run."""

    file: Path
    spec: ExploreSpec
    layered: Layered  # without explore: and sweep:
    config: Path  # the written config the points name
    base_digest: str
    base_set: tuple[tuple[str, str], ...]
    refs: list[tuple[str, dict[str, Any], str]]  # workload path, set: values, where they were written
    power: tuple[tuple[int, float | None, float | None], ...]
    domains: list[Domain] = field(default_factory=list)
    _ids: dict[tuple, str] = field(default_factory=dict)
    _violations: dict[Design, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.spec.size

    def overrides(self, d: Design) -> tuple[tuple[tuple[str, Any], ...], tuple[tuple[str, Any], ...]]:
        """(the config's overrides, the workloads') of a design."""
        hw = tuple((dom.path, dom.value(i)) for dom, i in zip(self.domains, d) if not dom.workload)
        wl = tuple((dom.path, dom.value(i)) for dom, i in zip(self.domains, d) if dom.workload)
        return hw, wl

    def _workload(self, i: int, wl: tuple[tuple[str, Any], ...]) -> tuple[str, str]:
        """A workload's set: JSON and its id, with the design's workload values."""
        path, sets, source = self.refs[i]
        merged = {**sets, **dict(wl)}
        over = json.dumps(sorted(merged.items()), default=str)
        key = (i, over)
        if key not in self._ids:
            named = tuple(Override(tuple(str(k).split(".")), v, f"{k}={v}",
                                   f"{self.file}: explore.{'workload_axes' if k in dict(wl) else source}.{k}")
                          for k, v in sorted(merged.items()))
            self._ids[key] = _workload_id(path, over, named)
        return over, self._ids[key]

    def points(self, d: Design) -> list[Point]:
        hw, wl = self.overrides(d)
        out = []
        for i, (path, _, _) in enumerate(self.refs):
            over, w_id = self._workload(i, wl)
            key = point_key(self.base_digest, hw, w_id, ())
            out.append(Point(key, str(self.config), hw, path, over, "point", w_id, self.base_set, self.power))
        return out

    def violation(self, d: Design) -> float:
        """How far a design is outside the constraints known before a run (area, config keys):
        0 inside, else the sum of the relative distances to the bounds broken."""
        if d not in self._violations:
            self._violations[d] = self._violation(d)
        return self._violations[d]

    def _violation(self, d: Design) -> float:
        constraints = [c for c in self.spec.constraints if c.key != "power"]
        if not constraints:
            return 0.0
        hw_over = self.overrides(d)[0]
        try:
            hw = validate_hardware(design(self.layered, [_override(p, v) for p, v in hw_over]), str(self.file))
        except ConfigError:
            return 0.0  # not a valid design: evaluated, and reported as such
        total = 0.0
        for c in constraints:
            value = chip_area(hw).total if c.key == "area" else _lookup(hw, c.key)
            lo, hi = c.bound("min"), c.bound("max")
            if lo is not None and value < lo:
                total += (lo - value) / max(abs(lo), 1e-300)
            if hi is not None and value > hi:
                total += (value - hi) / max(abs(hi), 1e-300)
        return total

    def baseline_points(self) -> list[Point]:
        if not self.spec.baseline:
            return []
        baseline = self.layered.directory_of((SECTION, "baseline")) / self.spec.baseline
        if not baseline.is_file():
            raise ConfigError(f"baseline {self.spec.baseline} not found", file=str(self.file), key="explore.baseline")
        b_layered = load_layered(baseline, parse_overrides([text for _, text in self.base_set]))
        validate_hardware(b_layered, str(baseline))
        b_digest = digest({k: v for k, v in b_layered.data.items() if k not in NOT_DESIGN})
        out = []
        for i, (path, _, _) in enumerate(self.refs):
            over, w_id = self._workload(i, ())
            out.append(Point(point_key(b_digest, (), w_id, ()), str(baseline), (), path, over, "baseline", w_id,
                             self.base_set))
        return out


def _override(path: str, value) -> Override:
    return Override(tuple(path.split(".")), value, f"{path}={value}")


def _lookup(hw, path: str) -> float:
    value = hw
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
    if value is None or isinstance(value, (bool, str, tuple, list)):
        raise ConfigError(f"constraint key {path} is not a numeric config value", key="explore.constraints")
    return float(value)


def plan_space(file: str | Path, out_dir: Path, global_overrides: Sequence[Override] = ()) -> Space:
    """Read and check everything before work starts: the spec, each axis's values (a list's
    every value, a range's ends) on the file's config, the workloads, the constraints' keys.
    Writes the config the points name into ``out_dir``."""
    file = Path(file)
    layered, spec = read_spec(file, global_overrides)
    own = layered.copy()
    for key in (SECTION, "sweep"):
        own.data.pop(key, None)
    base = validate_hardware(own, str(file))
    base_digest = digest({k: v for k, v in layered.data.items() if k not in NOT_DESIGN})
    power = tuple((i, c.bound("min"), c.bound("max")) for i, c in enumerate(spec.constraints) if c.key == "power")
    if power:
        base_digest = digest([base_digest, power])
    for i, c in enumerate(spec.constraints):
        if c.key not in ("area", "power"):
            try:
                _lookup(base, c.key)
            except ConfigError as exc:
                raise ConfigError(str(exc).split(": ", 1)[-1], file=str(file), key=f"explore.constraints.{i}.key") from None
    refs = []
    base_dir = layered.directory_of((SECTION, "workloads"))
    for i, ref in enumerate(spec.workloads):
        name, sets = (ref, {}) if isinstance(ref, str) else (ref.file, ref.set)
        path = (base_dir / name).resolve()
        if not path.is_file():
            raise ConfigError(f"workload {name} not found", file=str(file), key=f"explore.workloads.{i}")
        refs.append((str(path), dict(sets), f"workloads.{i}.set"))
    out_dir.mkdir(parents=True, exist_ok=True)
    config = out_dir / f"explore-{file.stem}.yaml"
    plain = load_layered(file)  # the points carry the --set values, applied by the worker as a sweep's
    data = {k: v for k, v in plain.data.items() if k not in (SECTION, "sweep")}
    atomic_write_text(config, f"# {file} without its explore: section, written by archsim explore for its "
                      "workers\n" + yaml.safe_dump(data, sort_keys=False))
    base_set = tuple((".".join(o.path), o.text) for o in global_overrides)
    space = Space(file, spec, own, config, base_digest, base_set, refs, power, spec.domains())
    _check_axes(space)
    return space


def _check_axes(space: Space) -> None:
    """Each list value, and each range's ends, must make a valid config (hardware axes) or
    workload (workload axes) with the file's other values."""
    for dom in space.domains:
        indexes = range(dom.size) if isinstance(dom.axis, list) else sorted({0, dom.size - 1})
        for i in indexes:
            value = dom.value(i)
            try:
                if dom.workload:
                    for r in range(len(space.refs)):
                        space._workload(r, ((dom.path, value),))
                else:
                    validate_hardware(design(space.layered, [_override(dom.path, value)]), str(space.file))
            except ConfigError as exc:
                labels = (f"{space.file}: {dom.where}: ", f"{_override(dom.path, value).label}: ")
                lines = [next((line[len(a):] for a in labels if line.startswith(a)), line)
                         for line in str(exc).splitlines()]
                raise ConfigError("\n".join(f"{space.file}: {dom.where}: value {value!r}: {line}"
                                            for line in lines)) from None
