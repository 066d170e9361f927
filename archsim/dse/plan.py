"""Expand config files into the points of one sweep, checking everything before work starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from archsim.config.loader import Layered, Override, load_layered, validate_layered
from archsim.config.schema import HardwareConfig
from archsim.config.sweep import SweepSpec
from archsim.dse.spec import Point, design, digest, point_key, workload_refs
from archsim.errors import ConfigError
from archsim.hw.area import chip_area


@dataclass(frozen=True)
class SweepPlan:
    points: tuple[Point, ...]
    fields: tuple[str, ...]  # swept key paths, in order
    objectives: tuple[str, ...]
    excluded: int  # combinations a constraint removed
    configs: int  # distinct design points (before workloads)


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
        base_digest = digest({k: v for k, v in layered.data.items() if k not in ("sweep", "description")})
        base_set = tuple((".".join(o.path), o.text) for o in global_overrides)
        combos = spec.combinations()
        _check_axes(file, layered, spec)
        ids = {ref: _workload_id(*ref) for ref in refs}  # built once per file, not per point
        for path, _ in (combos[0] if combos else ()):
            if path not in fields:
                fields.append(path)
        for combo in combos:
            if spec.constraints and not _satisfies(file, layered, combo, spec):
                excluded += 1
                continue
            configs += 1
            for w, w_over in refs:
                w_id = ids[w, w_over]
                key = point_key(base_digest, combo, w_id, ())
                points.setdefault(key, Point(key, str(file), combo, w, w_over, "point", w_id, base_set))
        if spec.baseline:
            baseline = layered.directory_of(("sweep", "baseline")) / spec.baseline
            if not baseline.is_file():
                raise ConfigError(f"baseline {spec.baseline} not found", file=str(file), key="sweep.baseline")
            b_layered = load_layered(baseline, global_overrides)
            validate_layered(HardwareConfig, b_layered, str(baseline))
            b_digest = digest({k: v for k, v in b_layered.data.items() if k not in ("sweep", "description")})
            for w, w_over in refs:
                w_id = ids[w, w_over]
                key = point_key(b_digest, (), w_id, ())
                if key not in points and w == refs[0][0]:
                    configs += 1
                points[key] = Point(key, str(baseline), (), w, w_over, "baseline", w_id, base_set)
    return SweepPlan(tuple(points.values()), tuple(fields), objectives or ("latency", "energy"), excluded, configs)


def _workload_id(path: str, overrides_json: str) -> str:
    """A digest of the workload as built (every phase and op), so an edit anywhere, in an
    ``extends:`` parent or a model's config.json, makes its points new; a bad ``set:`` key
    fails here, before any work."""
    from archsim.dse.evaluate import _workload
    from archsim.workloads.base import Lowering

    workload = _workload(path, overrides_json, Lowering())  # as written; the points' configs say how it is mapped
    return digest([(p.name, p.repeat, [repr(op) for op in p.graph.ops()]) for p in workload.phases])[:20]


def _check_axes(file: Path, layered: Layered, spec: SweepSpec) -> None:
    """Each option of each axis (a zipped group's row together) must make a valid config with
    the file's other values: unknown paths, wrong units and impossible values fail here,
    before any work."""
    for options in spec.factors():
        for option in options:
            overrides = [_override(p, v) for p, v in option]
            try:
                validate_layered(HardwareConfig, design(layered, overrides), str(file))
            except ConfigError as exc:  # told as the file's axis, not as the --set that applies it
                shown = ", ".join(f"{p} = {v!r}" for p, v in option)
                labels = tuple(f"--set {o.text}: " for o in overrides)
                lines = [next((line[len(a):] for a in labels if line.startswith(a)), line) for line in str(exc).splitlines()]
                raise ConfigError("\n".join(f"{file}: sweep.axes: sweep axis {shown}: {line}" for line in lines)) from None


def _satisfies(file: Path, layered: Layered, combo, spec: SweepSpec) -> bool:
    try:
        hw = validate_layered(HardwareConfig, design(layered, [_override(p, v) for p, v in combo]), str(file))
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
