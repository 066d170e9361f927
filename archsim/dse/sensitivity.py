"""One-at-a-time sensitivity of a run to its config's assumptions (issue 19).

The assumptions are the config's numeric fields marked ``ASSUMPTION`` in a comment, on the key's
line or in the comment block right above it, in the file or a file it ``extends:`` (a child that
sets the key again without the mark owns its value: it is no longer the assumption). Two more
kinds of mark may be varied as a class: ``fitted`` (a ``[..FIT]`` tag or the word "fitted": a value
fitted on measurements, maybe carried to another chip) and ``cited`` (any other ``[TAG]``: a
published figure). A comment holding several marks is of the first kind in that order. Each is set
to its value times each factor of a range, one at a time, every other field kept; the run's
latency and energy (and, against a baseline chip, the ratio of latencies) are compared with the
unchanged run's. A field moving a figure by more is a conclusion resting more on it.

Method: one-at-a-time (local) screening, as in Saltelli et al., "Global Sensitivity Analysis:
The Primer" (2008), chapter 1: it shows each assumption's own effect, not interactions between
them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, get_args, get_origin

from pydantic import BaseModel

from archsim import units
from archsim.config.fields import value_dims
from archsim.config.yamlio import read_yaml_text
from archsim.errors import ArchsimError

_KEY = re.compile(r"^(\s*)([A-Za-z0-9_.]+):(.*)$")
_FITTED = re.compile(r"\[[A-Z0-9]*FIT\]|\bfitted\b", re.IGNORECASE)
_CITED = re.compile(r"\[[A-Z][A-Za-z0-9_-]*\]")
KINDS = ("assumption", "fitted", "cited")


def mark_kind(comment: str) -> str | None:
    """The kind of mark a comment holds (None: no mark)."""
    if "ASSUMPTION" in comment:
        return "assumption"
    if _FITTED.search(comment):
        return "fitted"
    if _CITED.search(comment):
        return "cited"
    return None


@dataclass(frozen=True)
class Assumption:
    path: str  # dotted key path, as --set takes it
    source: str  # file:line of the mark
    kind: str = "assumption"  # one of KINDS, or "named" (--fields)


def marked_keys(path: str | Path, kinds: Sequence[str] = ("assumption",)) -> dict[str, str]:
    """Key path -> where its mark is, for the marks of ``kinds`` in ``path`` and the files it
    extends (the file's own keys override its parents': marked or not)."""
    return {key: source for key, (source, _) in marked_kinds(path, kinds).items()}


def marked_kinds(path: str | Path, kinds: Sequence[str] = ("assumption",)) -> dict[str, tuple[str, str]]:
    """Key path -> (where its mark is, its kind), for the marks of ``kinds``."""
    chain: list[Path] = []
    at: Path | None = Path(path)
    while at is not None and at not in chain:
        chain.append(at)
        data = read_yaml_text(at.read_text(), str(at))
        parent = data.get("extends") if isinstance(data, dict) else None
        at = (at.parent / parent).resolve() if isinstance(parent, str) else None
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown mark kind {unknown[0]!r}: expected some of {', '.join(KINDS)}")
    marks: dict[str, tuple[str, str]] = {}
    for file in reversed(chain):  # the root first, each child overriding
        own, marked = _scan(file)
        for key in own:
            marks.pop(key, None)
        marks.update({key: found for key, found in marked.items() if found[1] in kinds})
    return marks


def _scan(file: Path) -> tuple[set[str], dict[str, tuple[str, str]]]:
    """The scalar keys a file sets, and those of them marked (where, and the mark's kind)."""
    own: set[str] = set()
    marked: dict[str, tuple[str, str]] = {}
    stack: list[tuple[int, str]] = []
    pending: tuple[str, str] | None = None
    for number, line in enumerate(file.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            pending = None
            continue
        if stripped.startswith("#"):
            kind = mark_kind(stripped)
            # the block's strongest mark: an ASSUMPTION line anywhere in it wins over a tag
            if kind is not None and (pending is None or KINDS.index(kind) < KINDS.index(pending[1])):
                pending = (f"{file}:{number}", kind)
            continue
        match = _KEY.match(line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        full = ".".join([k for _, k in stack] + [key])
        value, _, comment = rest.partition("#")
        if value.strip() and not value.strip().startswith(("{", "[")):
            own.add(full)
            kind = mark_kind(comment)
            found = [(f"{file}:{number}", kind)] if kind is not None else []
            found += [pending] if pending is not None else []
            if found:  # the strongest of the key's own mark and its comment block's
                marked[full] = min(found, key=lambda f: KINDS.index(f[1]))
        else:
            stack.append((indent, key))
        pending = None
    return own, marked


def assumptions(path: str | Path, hw, kinds: Sequence[str] = ("assumption",)) -> list[Assumption]:
    """The keys of ``path`` marked with one of ``kinds`` that hold a number in ``hw`` (its
    validated config)."""
    out = []
    for key, (source, kind) in sorted(marked_kinds(path, kinds).items()):
        found = field_value(hw, key)
        if found is not None:
            out.append(Assumption(key, source, kind))
    return out


def field_value(hw, key: str) -> tuple[float, units.Dim] | None:
    """The SI value and dimension of a numeric field of ``hw`` (None: not a number)."""
    value: Any = hw
    model: type | None = type(hw)
    annotation: Any = None
    for part in key.split("."):
        if isinstance(value, BaseModel):
            field = type(value).model_fields.get(part)
            if field is None:
                return None
            annotation, metadata = field.annotation, field.metadata
            value = getattr(value, part)
        elif isinstance(value, dict):
            match = next((k for k in value if str(getattr(k, "value", k)) == part or str(k) == part), None)
            if match is None:
                return None
            value = value[match]
            annotation, metadata = _dict_value_type(annotation), []
        else:
            return None
        model = annotation
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    dims = value_dims(model, metadata) if model is not None else set()
    dims = dims or {units.DIMENSIONLESS}
    return float(value), next(iter(dims))


def _dict_value_type(annotation: Any) -> Any:
    while get_origin(annotation) is not None and get_origin(annotation) is not dict:
        args = [a for a in get_args(annotation) if a is not type(None)]
        annotation = args[0] if args else None
    args = get_args(annotation)
    return args[1] if len(args) == 2 else None


def setting(hw, key: str, factor: float) -> str | None:
    """The ``--set`` text putting ``key`` at ``factor`` times its value (None: not a number)."""
    found = field_value(hw, key)
    if found is None:
        return None
    value, dim = found
    scaled = value * factor
    if isinstance(_raw(hw, key), int):
        scaled = max(1, round(scaled))
        return f"{key}={scaled}" if dim == units.DIMENSIONLESS else f"{key}={scaled} {units.si_unit(dim)}"
    return f"{key}={scaled!r}" if dim == units.DIMENSIONLESS else f"{key}={scaled!r} {units.si_unit(dim)}"


def _raw(hw, key: str) -> Any:
    value: Any = hw
    for part in key.split("."):
        value = getattr(value, part) if isinstance(value, BaseModel) else next(
            v for k, v in value.items() if str(getattr(k, "value", k)) == part or str(k) == part)
    return value


@dataclass(frozen=True)
class Swing:
    """One assumption over the range: the figures at each factor, relative to the unchanged run."""

    field: str
    source: str
    factors: tuple[float, ...]
    latency: tuple[float | None, ...]  # the run's latency over the unchanged one's (None: infeasible)
    energy: tuple[float | None, ...]
    versus: tuple[float | None, ...]  # baseline's latency over this chip's (speedup), if a baseline
    shared: bool = False  # the baseline makes the same assumption (same value): varied on both
    baseline_only: bool = False  # an assumption of the baseline's alone: varied on it, this chip unchanged
    speedup: float = 1.0  # the unchanged speedup over the baseline (what a baseline-only swing moves)
    # baseline's energy over this chip's (its energy gain), if a baseline; and unchanged
    energy_versus: tuple[float | None, ...] = ()
    energy_gain: float = 1.0
    kind: str = "assumption"  # the field's mark (KINDS), or "named" (--fields)

    @property
    def spread(self) -> float:
        """The largest change of any figure over the range (a field moving nothing: 0); for a
        baseline's own assumption, of the speedup."""
        if self.baseline_only:
            moved = [abs(v / self.speedup - 1) for v in self.versus if v is not None]
            moved += [abs(v / self.energy_gain - 1) for v in self.energy_versus if v is not None]
        else:
            moved = [abs(v - 1) for s in (self.latency, self.energy) for v in s if v is not None]
        return max(moved, default=0.0)


def sensitivity(hw_path: str | Path, workload_path: str | Path, factors: Sequence[float] = (0.5, 2.0),
                fields: Sequence[str] | None = None, baseline: str | Path | None = None,
                wsets: Sequence[str] = (), kinds: Sequence[str] = ("assumption",)) -> tuple[Any, Any, list[Swing]]:
    """The unchanged run, the baseline's (or None) and each field's swing, largest first: of the
    ``fields`` named, else of every field marked with one of ``kinds``."""
    from archsim.api import load_hardware, load_workload, simulate

    hw = load_hardware(hw_path)
    ref = bhw = None
    if baseline is not None:
        bhw = load_hardware(baseline)
        ref = simulate(bhw, load_workload(workload_path, list(wsets), hw=bhw))
    if fields:  # a named field only the baseline has is the baseline's own
        theirs = [Assumption(f, "--fields", "named") for f in fields
                  if field_value(hw, f) is None and bhw is not None and field_value(bhw, f) is not None]
        chosen = [Assumption(f, "--fields", "named") for f in fields if f not in {a.path for a in theirs}]
    else:
        chosen, theirs = assumptions(hw_path, hw, kinds), []
        if bhw is not None:
            mine = {a.path for a in chosen}
            theirs = [a for a in assumptions(baseline, bhw, kinds) if a.path not in mine]
    base = simulate(hw, load_workload(workload_path, list(wsets), hw=hw))
    both = base.feasible and ref is not None and ref.feasible
    speedup = ref.latency_s / base.latency_s if both else 1.0
    gain = ref.energy.total / base.energy.total if both else 1.0
    swings = []
    for a in chosen:
        lat, energy, versus, energy_versus = [], [], [], []
        shared = bhw is not None and field_value(bhw, a.path) is not None \
            and field_value(bhw, a.path) == field_value(hw, a.path)
        for factor in factors:
            text = setting(hw, a.path, factor)
            if text is None:
                raise ValueError(f"{a.path}: not a numeric field of {hw_path}")
            try:
                varied = load_hardware(hw_path, [text])
            except ArchsimError:  # outside the field's valid range (an efficiency above 1): no figure
                lat.append(None), energy.append(None), versus.append(None), energy_versus.append(None)
                continue
            r = simulate(varied, load_workload(workload_path, list(wsets), hw=varied))
            ok = r.feasible and base.feasible
            lat.append(r.latency_s / base.latency_s if ok else None)
            energy.append(r.energy.total / base.energy.total if ok else None)
            other = ref
            if shared:  # an assumption both chips make is varied on both (valid on one: on the other)
                bvaried = load_hardware(baseline, [setting(bhw, a.path, factor)])
                other = simulate(bvaried, load_workload(workload_path, list(wsets), hw=bvaried))
            compared = ok and other is not None and other.feasible
            versus.append(other.latency_s / r.latency_s if compared else None)
            energy_versus.append(other.energy.total / r.energy.total if compared else None)
        swings.append(Swing(a.path, a.source, tuple(factors), tuple(lat), tuple(energy), tuple(versus), shared,
                            speedup=speedup, energy_versus=tuple(energy_versus), energy_gain=gain, kind=a.kind))
    for a in theirs:  # the baseline's own assumptions move the comparison too
        versus, energy_versus = [], []
        for factor in factors:
            try:
                bvaried = load_hardware(baseline, [setting(bhw, a.path, factor)])
            except ArchsimError:  # outside the field's valid range
                versus.append(None), energy_versus.append(None)
                continue
            other = simulate(bvaried, load_workload(workload_path, list(wsets), hw=bvaried))
            compared = base.feasible and other.feasible
            versus.append(other.latency_s / base.latency_s if compared else None)
            energy_versus.append(other.energy.total / base.energy.total if compared else None)
        ones = tuple(1.0 for _ in factors)
        swings.append(Swing(a.path, a.source, tuple(factors), ones, ones, tuple(versus), baseline_only=True,
                            speedup=speedup, energy_versus=tuple(energy_versus), energy_gain=gain, kind=a.kind))
    swings.sort(key=lambda s: (-s.spread, s.field))
    return base, ref, swings


def verdict(name: str, base, ref, swings: list[Swing], baseline_name: str) -> str:
    """Whether the comparison against the baseline, in speed and in energy, survives every
    assumption in range: one sentence each."""
    if ref is None or not (base.feasible and ref.feasible):
        return ""
    said = []
    noun = "assumption" if all(s.kind == "assumption" for s in swings) else "field varied"
    for ratio, series, better, same, worse in (
            (ref.latency_s / base.latency_s, "versus", "faster than", "as fast as", "slower than"),
            (ref.energy.total / base.energy.total, "energy_versus", "uses less energy than", "uses the same energy as",
             "uses more energy than")):
        side = (ratio > 1) - (ratio < 1)  # ahead, level or behind
        flips = [f"{s.field} at x{f:g} ({_ratio(v)})" for s in swings for f, v in zip(s.factors, getattr(s, series))
                 if v is not None and (v > 1) - (v < 1) != side]
        word = better if side > 0 else same if side == 0 else worse
        if not flips:
            said.append(f"{name} {'is ' if series == 'versus' else ''}{word} {baseline_name} ({_ratio(ratio)}) for every "
                        f"value of every {noun} in range.")
        else:
            said.append(f"{name} {'is ' if series == 'versus' else ''}{word} {baseline_name} ({_ratio(ratio)}) except: "
                        + "; ".join(flips) + ".")
    return " ".join(said)


def _ratio(value: float) -> str:
    """A ratio to 3 significant figures, or to 4 decimals where 3 figures would round it to 1
    (a ratio on the wrong side of 1 must not read as 1x)."""
    text = f"{value:.3g}"
    return f"{value:.4f}x" if text == "1" and value != 1 else f"{text}x"
