"""Expand config files into the points of one sweep, checking everything before work starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from archsim.config.loader import Layered, Override, load_layered, parse_overrides, validate_layered
from archsim.config.schema import HardwareConfig
from archsim.config.sweep import SweepSpec
from archsim.dse.spec import Point, digest, point_key, workload_refs
from archsim.errors import ConfigError
from archsim.hw.area import chip_area


@dataclass(frozen=True)
class SweepPlan:
    points: tuple[Point, ...]
    fields: tuple[str, ...]  # swept key paths, in order
    objectives: tuple[str, ...]
    excluded: int  # combinations a constraint removed
    configs: int  # distinct design points (before workloads)


def _with(layered: Layered, overrides: Sequence[Override]) -> Layered:
    copy = Layered()
    copy.merge(layered.data, "")
    copy.origin = dict(layered.origin)
    for o in overrides:
        copy.set(o)
    return copy


def _override(path: str, value) -> Override:
    return Override(tuple(path.split(".")), value, f"{path}={value}")


def plan_sweep(files: Sequence[str | Path], global_overrides: Sequence[Override] = (),
               workloads: Sequence[str] = ()) -> SweepPlan:
    """Points for every file's sweep (a file without one is a single point) and its baseline."""
    points: dict[str, Point] = {}
    fields: list[str] = []
    objectives: tuple[str, ...] = ()
    excluded = configs = 0
    for file in files:
        file = Path(file)
        layered = load_layered(file, global_overrides)
        base = validate_layered(HardwareConfig, layered, str(file))
        spec = base.sweep or SweepSpec()
        objectives = objectives or tuple(spec.objectives)
        refs = [(str(Path(w).resolve()), ()) for w in workloads] or \
            workload_refs(spec, layered.directory_of(("sweep", "workloads")), layered.source_of(("sweep", "workloads"), str(file)))
        if not refs:
            raise ConfigError("no workloads: list them in sweep.workloads or pass --workload", file=str(file), key="sweep")
        base_digest = digest(layered.data)
        combos = spec.combinations()
        _check_axes(file, layered, combos)
        for path, _ in (combos[0] if combos else ()):
            if path not in fields:
                fields.append(path)
        for combo in combos:
            if spec.constraints and not _satisfies(file, layered, combo, spec):
                excluded += 1
                continue
            configs += 1
            for w, w_over in refs:
                key = point_key(base_digest, combo, digest(Path(w).read_bytes().decode(errors="replace")), w_over)
                points.setdefault(key, Point(key, str(file), combo, w, w_over, "point"))
        if spec.baseline:
            baseline = layered.directory_of(("sweep", "baseline")) / spec.baseline
            if not baseline.is_file():
                raise ConfigError(f"baseline {spec.baseline} not found", file=str(file), key="sweep.baseline")
            b_layered = load_layered(baseline, global_overrides)
            validate_layered(HardwareConfig, b_layered, str(baseline))
            for w, w_over in refs:
                key = point_key(digest(b_layered.data), (), digest(Path(w).read_bytes().decode(errors="replace")), w_over)
                if key not in points:
                    configs += 1 if w == refs[0][0] else 0
                points[key] = Point(key, str(baseline), (), w, w_over, "baseline")
    return SweepPlan(tuple(points.values()), tuple(fields), objectives or ("latency", "energy"), excluded, configs)


def _check_axes(file: Path, layered: Layered, combos) -> None:
    """Each distinct axis value must make a valid config on its own: unknown paths and wrong
    units fail here, before any work. (Combinations invalid only jointly are reported per
    point as invalid.)"""
    seen = set()
    for combo in combos:
        for path, value in combo:
            marker = (path, repr(value))
            if marker in seen:
                continue
            seen.add(marker)
            try:
                validate_layered(HardwareConfig, _with(layered, [_override(path, value)]), str(file))
            except ConfigError as exc:
                raise ConfigError(f"sweep axis {path} = {value!r}: {exc}") from None


def _satisfies(file: Path, layered: Layered, combo, spec: SweepSpec) -> bool:
    try:
        hw = validate_layered(HardwareConfig, _with(layered, [_override(p, v) for p, v in combo]), str(file))
    except ConfigError:
        return True  # invalid points are evaluated (and reported) as such
    for c in spec.constraints:
        value = chip_area(hw).total if c.key == "area" else _lookup(hw, c.key, file)
        lo, hi = c.bound("min"), c.bound("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return False
    return True


def _lookup(hw: HardwareConfig, path: str, file: Path) -> float:
    value = hw
    for part in path.split("."):
        value = getattr(value, part, None) if not isinstance(value, dict) else value.get(part)
        if value is None:
            raise ConfigError(f"constraint key {path} is not a config value", file=str(file), key="sweep.constraints")
    if isinstance(value, (tuple, list)):
        raise ConfigError(f"constraint key {path} is not a number", file=str(file), key="sweep.constraints")
    return float(value)
