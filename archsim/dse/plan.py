"""Expand config files into the points of one sweep, checking everything before work starts."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from archsim.config.loader import Layered, Override, load_layered, validate_hardware
from archsim.config.schema import HardwareConfig
from archsim import units
from archsim.config.sweep import MAX_SWEEP_POINTS, SweepSpec
from archsim.dse.spec import Point, design, digest, point_key, workload_digest, workload_refs
from archsim.errors import ConfigError
from archsim.hw.area import chip_area


class Points(Sequence[Point]):
    """A plan's points in order, each made when it is asked for, from its file's axis indices:
    what a plan holds is its keys (``keys``: 20-byte strings) and their indices, some 30 bytes a
    point, so a 10^6-point plan takes some 30 MB rather than a million objects. A slice is a
    view of the same kind."""

    def __init__(self, segments: list, index: np.ndarray, keys: np.ndarray, replaced: dict[int, Point]):
        self._segments, self._index, self.keys, self._replaced = segments, index, keys, replaced
        self._starts = np.cumsum([0] + [len(s) for s in segments])

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            r = range(len(self))[i]
            return self.subset(np.arange(r.start, r.stop, r.step))
        return self._point(int(self._index[i]), self.keys[i])

    def __iter__(self) -> Iterator[Point]:
        starts = self._starts.tolist()
        segments = (np.searchsorted(self._starts, self._index, side="right") - 1).tolist()
        for gid, s, key in zip(self._index.tolist(), segments, self.keys.tolist()):
            point = self._replaced.get(gid)
            yield point if point is not None else self._segments[s].point(gid - starts[s], key.decode())

    def key_set(self) -> set[str]:
        return set(self.keys.astype(str).tolist())

    def subset(self, positions: np.ndarray) -> "Points":
        return Points(self._segments, self._index[positions], self.keys[positions], self._replaced)

    def without(self, keys: set[str]) -> "Points":
        """The points whose keys are not in ``keys``."""
        done = np.array([k for k in keys if len(k) == 20 and k.isascii()], dtype="S20")
        return self.subset(np.flatnonzero(~np.isin(self.keys, done))) if len(done) else self

    def grouped(self, inner, beside=None) -> "Points":
        """The same points in the order to evaluate them: per file, per workload, with the
        axes whose every key path ``inner`` accepts varying fastest, then those whose every
        path ``beside`` accepts. Points that differ only in the first (the capacities of CMEM and
        HBM, which no op's cost reads) then come together and share their op costs while they
        are fresh (a 10^6-point grid sweeps 2,000 bandwidths between two CMEM sizes: more costs
        than a worker keeps); with ``family.family_free`` as ``beside``, a family's points
        (alike but for HBM's bandwidth too) come together whatever the order of the axes."""
        segment = np.searchsorted(self._starts, self._index, side="right") - 1
        rank = self._index - self._starts[segment]  # a point's place in its own file's points
        for s, part in enumerate(self._segments):
            mine = np.flatnonzero(segment == s)
            if isinstance(part, _Grid) and len(mine):
                rank[mine] = part.grouped_rank(rank[mine], inner, beside)
        return self.subset(np.lexsort((rank, segment)))

    def family_starts(self, free) -> np.ndarray:
        """The positions, in this order, where a run of points begins that are alike in their
        file, their workload and every axis value but those on paths ``free`` accepts (a
        sweep's families, with ``family.family_free``: where chunks are best cut). A baseline's
        point is a run of its own."""
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        segment = np.searchsorted(self._starts, self._index, side="right") - 1
        local = self._index - self._starts[segment]
        ids = -1 - local  # a baseline's points: each its own
        for s, part in enumerate(self._segments):
            mine = np.flatnonzero(segment == s)
            if isinstance(part, _Grid) and len(mine):
                ids[mine] = part.family_ids(local[mine], free)
        replaced = [i for i, gid in enumerate(self._index.tolist()) if gid in self._replaced] if self._replaced else []
        ids[replaced] = -1 - self._index[replaced]  # a baseline in a grid's place: its own too
        change = (segment[1:] != segment[:-1]) | (ids[1:] != ids[:-1])
        return np.concatenate([[0], np.flatnonzero(change) + 1]).astype(np.int64)

    def _point(self, gid: int, key: bytes) -> Point:
        if gid in self._replaced:
            return self._replaced[gid]
        s = int(np.searchsorted(self._starts, gid, side="right")) - 1
        return self._segments[s].point(gid - int(self._starts[s]), key.decode())


@dataclass(frozen=True)
class _Grid:
    """One file's swept points: its admitted combinations (indices into the product of its
    factors) times its workloads."""

    file: str
    factors: list  # per axis (or zipped group) its options, each a tuple of (path, value)
    kept: np.ndarray | None  # the combinations the constraints admit (None: all)
    refs: list  # (workload, its set: JSON, its id)
    base_digest: str
    base_set: tuple
    power: tuple

    def __len__(self) -> int:
        return self.combos * len(self.refs)

    @property
    def combos(self) -> int:
        return len(self.kept) if self.kept is not None else math.prod(len(f) for f in self.factors)

    def point(self, j: int, key: str) -> Point:
        c, r = divmod(j, len(self.refs))
        c = int(self.kept[c]) if self.kept is not None else c
        chosen = []
        for options in reversed(self.factors):  # itertools.product's order: the last varies fastest
            c, i = divmod(c, len(options))
            chosen.append(options[i])
        combo = tuple(pair for option in reversed(chosen) for pair in option)
        w, w_over, w_id = self.refs[r]
        return Point(key, self.file, combo, w, w_over, "point", w_id, self.base_set, self.power)

    def grouped_rank(self, j: np.ndarray, inner, beside=None) -> np.ndarray:
        """For points ``j`` of this grid, a rank ordering them by workload, then by the axis
        values of the other axes, then of those whose every path ``beside`` accepts (none if
        None), then of those whose every path ``inner`` accepts."""
        r, digits = self._digits(j)
        grouped = [2 if all(inner(path) for path, _ in f[0]) else
                   1 if beside is not None and all(beside(path) for path, _ in f[0]) else 0 for f in self.factors]
        outer = [d for d, g in zip(digits, grouped) if g == 0]
        next_ = [d for d, g in zip(digits, grouped) if g == 1]
        fastest = [d for d, g in zip(digits, grouped) if g == 2]
        order = np.lexsort((*reversed(fastest), *reversed(next_), *reversed(outer), r))
        rank = np.empty(len(j), dtype=np.int64)
        rank[order] = np.arange(len(j))
        return rank

    def family_ids(self, j: np.ndarray, free) -> np.ndarray:
        """For points ``j`` of this grid, a number alike for two points exactly when they are
        alike in their workload and in every axis value but those on paths ``free`` accepts."""
        r, digits = self._digits(j)
        ids = r.astype(np.int64)
        for options, digit in zip(self.factors, digits):  # mixed radix: one digit an axis kept
            if not all(free(path) for path, _ in options[0]):
                ids = ids * len(options) + digit
        return ids

    def _digits(self, j: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """For points ``j`` of this grid, their workloads' indices and each axis's option index."""
        c, r = np.divmod(j, len(self.refs))
        c = self.kept[c] if self.kept is not None else c
        digits = []
        for options in reversed(self.factors):  # the last varies fastest, as in ``point``
            c, i = np.divmod(c, len(options))
            digits.append(i)
        digits.reverse()
        return r, digits

    def keys(self) -> np.ndarray:
        """Every point's key (``spec.point_key``), from JSON made once per axis value."""
        texts = [[", ".join(json.dumps(pair, sort_keys=True, default=str) for pair in option) for option in f]
                 for f in self.factors]
        keep = None
        if self.kept is not None:
            keep = np.zeros(math.prod(len(f) for f in self.factors), dtype=bool)
            keep[self.kept] = True
        heads = [f'["{self.base_digest}", [' for _ in self.refs]
        tails = [f'], "{w_id}", []]' for _, _, w_id in self.refs]
        out, batch = [], []
        for c, combo in enumerate(itertools.product(*texts)):
            if keep is not None and not keep[c]:
                continue
            body = ", ".join(combo)
            batch.extend(hashlib.sha256((h + body + t).encode()).hexdigest()[:20] for h, t in zip(heads, tails))
            if len(batch) >= 65536:
                out.append("".join(batch))
                batch = []
        out.append("".join(batch))
        return np.frombuffer("".join(out).encode(), dtype="S20")


@dataclass(frozen=True)
class _Fixed:
    """Points given one by one (a file's baseline on each workload)."""

    points: list

    def __len__(self) -> int:
        return len(self.points)

    def point(self, j: int, key: str) -> Point:
        return self.points[j]

    def keys(self) -> np.ndarray:
        return np.array([p.key for p in self.points], dtype="S20")


@dataclass(frozen=True)
class SweepPlan:
    points: Points  # a sequence of Point, made on demand
    fields: tuple[str, ...]  # swept key paths, in order
    objectives: tuple[str, ...]
    excluded: int  # combinations a constraint removed
    configs: int  # distinct design points (before workloads)


def _override(path: str, value) -> Override:
    return Override(tuple(path.split(".")), value, f"{path}={value}")


def plan_sweep(files: Sequence[str | Path], global_overrides: Sequence[Override] = (),
               workloads: Sequence[str] = ()) -> SweepPlan:
    """Points for every file's sweep (a file without one is a single point) and its baseline;
    ``workloads`` (the command line's) replace every file's ``sweep.workloads``. A point whose
    key came before is the first one's (a baseline's replaces it, as a baseline is evaluated)."""
    segments: list = []
    fields: list[str] = []
    objectives: tuple[str, ...] = ()
    excluded = configs = 0
    given = [_given_workload(w) for w in workloads]
    for file in files:
        file = Path(file)
        layered = load_layered(file, global_overrides)
        base = validate_hardware(layered, str(file))
        spec = base.sweep or SweepSpec()
        objectives = objectives or tuple(spec.objectives)
        refs = given or workload_refs(spec, layered.directory_of(("sweep", "workloads")),
                                      layered.source_of(("sweep", "workloads"), str(file)))
        if not refs:
            raise ConfigError("no workloads: list them in sweep.workloads or pass --workload", file=str(file), key="sweep")
        if given and spec.size * len(refs) > MAX_SWEEP_POINTS:  # the file's own list was counted when it was read
            raise ConfigError(f"{spec.size:,} design points x {len(refs)} workloads = {spec.size * len(refs):,}; "
                              f"archsim's limit is {MAX_SWEEP_POINTS:,} per file", file=str(file), key="sweep")
        base_digest = digest({k: v for k, v in layered.data.items() if k not in ("sweep", "explore", "description")})
        # power is known after the run: each point carries its bounds (in its key too, so a
        # sweep resumed under other bounds evaluates its points again)
        power = tuple((i, c.bound("min"), c.bound("max")) for i, c in enumerate(spec.constraints) if c.key == "power")
        if power:
            base_digest = digest([base_digest, power])
        base_set = tuple((".".join(o.path), o.text) for o in global_overrides)
        factors = spec.factors()
        _check_axes(file, layered, spec)
        ids = {(w, w_over): _workload_id(w, w_over, named) for w, w_over, named in refs}  # once per file, not per point
        for path, _ in (pair for options in factors for pair in options[0]):
            if path not in fields:
                fields.append(path)
        kept = _constrained(file, layered, factors, spec)
        grid = _Grid(str(file), factors, kept, [(w, w_over, ids[w, w_over]) for w, w_over, _ in refs],
                     base_digest, base_set, power)
        excluded += spec.size - grid.combos
        configs += grid.combos
        segments.append(grid)
        if spec.baseline:
            baseline = layered.directory_of(("sweep", "baseline")) / spec.baseline
            if not baseline.is_file():
                raise ConfigError(f"baseline {spec.baseline} not found", file=str(file), key="sweep.baseline")
            b_layered = load_layered(baseline, global_overrides)
            validate_hardware(b_layered, str(baseline))
            b_digest = digest({k: v for k, v in b_layered.data.items() if k not in ("sweep", "explore", "description")})
            segments.append(_Fixed([Point(point_key(b_digest, (), ids[w, w_over], ()), str(baseline), (), w, w_over,
                                          "baseline", ids[w, w_over], base_set) for w, w_over, _ in refs]))
    points, new_configs = _ordered(segments)
    return SweepPlan(points, tuple(fields), objectives or ("latency", "energy"), excluded, configs + new_configs)


def _ordered(segments: list) -> tuple[Points, int]:
    """The points of ``segments`` in order, each key once (where it first came; a baseline's
    point replacing an earlier one of its key), and the baselines that are new designs."""
    keys = np.concatenate([s.keys() for s in segments]) if segments else np.zeros(0, dtype="S20")
    _, first = np.unique(keys, return_index=True)
    index = np.sort(first)
    replaced: dict[int, Point] = {}
    configs, start = 0, 0
    for s in segments:
        if isinstance(s, _Fixed):
            for j, point in enumerate(s.points):
                gid = start + j
                earliest = int(np.flatnonzero(keys[:gid + 1] == keys[gid])[0])
                if earliest != gid:
                    replaced[earliest] = point
                elif point.workload == s.points[0].workload:
                    configs += 1
        start += len(s)
    return Points(segments, index.astype(np.int64), keys[index], replaced), configs


def _given_workload(path: str) -> tuple[str, str, tuple[Override, ...]]:
    """A ``--workload`` file, as a file's workload reference without ``set:`` values."""
    from archsim.api import file_kind

    if not Path(path).is_file():
        raise ConfigError("is not a file" if Path(path).exists() else "file not found", file=f"--workload {path}")
    if file_kind(path) == "hardware":  # a config file among the workloads: say so, not that it lacks a 'kind'
        raise ConfigError("this is a hardware config, not a workload; expected archsim sweep HW.yaml [HW2.yaml ...] "
                          "--workload WORKLOAD.yaml", file=f"--workload {path}")
    return str(Path(path).resolve()), json.dumps([]), ()


def _workload_id(path: str, overrides_json: str, named: Sequence[Override]) -> str:
    """A digest of the workload as built (every phase and op), so an edit anywhere, in an
    ``extends:`` parent or a model's config.json, makes its points new; a bad ``set:`` key
    fails here, before any work."""
    from archsim.dse.evaluate import built_workload
    from archsim.workloads.base import Lowering, load_workload

    try:  # as written (the points' configs say how it is mapped), from the files as they are now: a
        # process's kept builds know their extends: chain, not a model's config.json they read
        workload = built_workload(path, overrides_json, Lowering())
    except ConfigError:
        # The workers' cached build names set: values as --set options; built again with each
        # named by its key in the sweep file, it raises the error the user can act on.
        load_workload(path, named, Lowering())
        raise
    return workload_digest(workload)


def _check_axes(file: Path, layered: Layered, spec: SweepSpec) -> None:
    """Each option of each axis (a zipped group's row together) must make a valid config with
    the file's other values: unknown paths, wrong units and impossible values fail here,
    before any work."""
    for options in spec.factors():
        for option in options:
            overrides = [_override(p, v) for p, v in option]
            try:
                validate_hardware(design(layered, overrides), str(file))
            except ConfigError as exc:  # told as the file's axis, not as the --set that applies it
                shown = ", ".join(f"{p} = {v!r}" for p, v in option)
                labels = tuple(f"{o.label}: " for o in overrides)
                lines = [next((line[len(a):] for a in labels if line.startswith(a)), line) for line in str(exc).splitlines()]
                raise ConfigError("\n".join(f"{file}: sweep.axes: sweep axis {shown}: {line}" for line in lines)) from None


def _constrained(file: Path, layered: Layered, factors: list, spec: SweepSpec) -> np.ndarray | None:
    """The indices of the combinations every constraint admits (and of those that are not valid
    designs, which are evaluated and reported as such; None: all, without a constraint); an
    error naming the constraints when none is left, rather than a sweep of nothing. Each
    combination is built and validated: some 1 ms a design."""
    constraints = [c for c in spec.constraints if c.key != "power"]  # power: known after the run
    if not constraints:
        return None
    spec = spec.model_copy(update={"constraints": constraints})
    kept, seen = [], [[] for _ in spec.constraints]  # the values each constraint was given
    total = 0
    for i, choice in enumerate(itertools.product(*factors)):
        total += 1
        values = _constraint_values(file, layered, tuple(pair for part in choice for pair in part), spec)
        admitted = True
        for c, value, log in zip(spec.constraints, values or (), seen):
            log.append(value)
            lo, hi = c.bound("min"), c.bound("max")
            admitted &= not ((lo is not None and value < lo) or (hi is not None and value > hi))
        if admitted:
            kept.append(i)
    if total and not kept:
        source = layered.source_of(("sweep", "constraints"), str(file))
        reasons = [_exclusions(i, c, values) for i, (c, values) in enumerate(zip(spec.constraints, seen))]
        raise ConfigError(f"the constraints exclude all {total:,} design points, leaving nothing to sweep: "
                          + "; ".join(reasons), file=source, key="sweep.constraints")
    return np.array(kept, dtype=np.int64)


def _constraint_values(file: Path, layered: Layered, combo, spec: SweepSpec) -> list[float] | None:
    """What each constraint bounds at this combination; None for a combination that is not a
    valid design."""
    try:
        hw = validate_hardware(design(layered, [_override(p, v) for p, v in combo]), str(file))
    except ConfigError:
        return None
    return [chip_area(hw).total if c.key == "area" else _lookup(hw, c.key, file) for c in spec.constraints]


def _exclusions(i: int, c, values: list[float]) -> str:
    """'sweep.constraints.0 (area max 1 mm^2) excludes 6: area ranges from 352 to 410 mm^2',
    the range in the unit the bound was written in."""
    lo, hi = c.bound("min"), c.bound("max")
    out = sum((lo is not None and v < lo) or (hi is not None and v > hi) for v in values)
    bounds = " ".join(f"{which} {getattr(c, which)}" for which in ("min", "max") if getattr(c, which) is not None)
    written = c.max if c.max is not None else c.min
    unit = units.unit_text(written) if isinstance(written, str) else ""
    scale = float(units.parse_quantity_exact(f"1 {unit}")[0]) if unit else 1.0
    shown = f"{min(values) / scale:.4g} to {max(values) / scale:.4g} {unit}".rstrip() if values else "no valid design"
    return f"sweep.constraints.{i} ({c.key} {bounds}) excludes {out:,}: {c.key} ranges from {shown}"


def _lookup(hw: HardwareConfig, path: str, file: Path) -> float:
    value = hw
    for part in path.split("."):
        value = getattr(value, part, None) if not isinstance(value, dict) else value.get(part)
        if value is None:
            raise ConfigError(f"constraint key {path} is not a config value", file=str(file), key="sweep.constraints")
    if isinstance(value, (tuple, list)):
        raise ConfigError(f"constraint key {path} is not a number", file=str(file), key="sweep.constraints")
    return float(value)
