"""Evaluate design points: what a worker process runs. Rows are plain dicts (they cross
process boundaries and become Parquet); every failure is a row too, never a lost point."""

from __future__ import annotations

import hashlib
import json
import operator
import traceback
from functools import lru_cache
from pathlib import Path
from typing import Any

from archsim.config.dumps import dump_text
from archsim.config.loader import EXTENDS_KEY, MAX_EXTENDS_DEPTH, Layered, Override, load_layered, parse_overrides
from archsim.config.yamlio import read_yaml_mapping
from archsim.config.schema import HardwareConfig
from archsim.dse.point_config import PointConfigs
from archsim.dse.spec import Point, design, workload_digest
from archsim.dse.store import CODE
from archsim.errors import ArchsimError, ConfigError
from archsim.hw.energy import COMPONENTS
from archsim.hw.memory import Level
from archsim.ir.graph import Workload
from archsim.memo import BoundedMemo
from archsim.sim.family import Family, families, family_free
from archsim.sim.serving import serving
from archsim.api import simulate
from archsim.chips import build_chip
from archsim.workloads.base import Lowering, load_workload

FIELD_PREFIX = "set."

# The package's modules that never change a row's values: they print, plot, store or schedule
# results. Editing them keeps finished results valid; any other module is the model.
NOT_MODEL = frozenset({"cli.py", "cli_dse.py", "cli_options.py", "fileio.py", "report.py", "config/explore.py",
                       "dse/compare.py", "dse/compare_llm.py", "dse/explore.py", "dse/explore_output.py",
                       "dse/explore_space.py", "dse/figures_labels.py", "dse/figures_ops.py", "dse/html_report.py",
                       "dse/pareto.py", "dse/plots.py", "dse/report.py", "dse/results_file.py", "dse/runner.py",
                       "dse/store.py", "dse/summary.py"})
# Whole folders of such modules: calibration fits configs to measurements, it computes no row.
NOT_MODEL_DIRS = ("calibrate/",)
_PACKAGE = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """What identifies the model code of this process: the results of other code (an earlier
    version, or an edit since) are never reused or mixed with its own. Once per process (a
    few ms); workers forked after the first call inherit it."""
    return fingerprint(_PACKAGE)


def fingerprint(package: Path) -> str:
    """A hash of the model's source under ``package``: each ``.py`` file's relative path and
    bytes, in sorted order, but those in ``NOT_MODEL``."""
    h = hashlib.sha256()
    files = sorted((path.relative_to(package).as_posix(), path) for path in package.rglob("*.py"))
    for name, path in files:
        if name not in NOT_MODEL and not name.startswith(NOT_MODEL_DIRS):
            data = path.read_bytes()
            h.update(f"{name}\0{len(data)}\0".encode())  # lengths too: no two file sets hash alike
            h.update(data)
    return h.hexdigest()[:16]


def _stamp(path: str) -> tuple:
    """A file's identity for the caches: a long-lived worker sees edits (made between chunks:
    within one, each file is looked at once)."""
    stamp = _STAMPS.get(path) if _STAMPS is not None else None
    if stamp is None:
        stat = Path(path).stat()
        stamp = (path, stat.st_mtime_ns, stat.st_size)
        if _STAMPS is not None:
            _STAMPS[path] = stamp
    return stamp


_STAMPS: dict | None = None  # the files' stamps of the chunk being evaluated (and its points' workloads)


def _chain(path: str) -> tuple:
    """The stamps of a config or workload file and of the files it ``extends:``, in order: a
    long-lived worker sees an edit to any of them (each file's parent read once per stamp)."""
    stamps = [_stamp(path)]
    while len(stamps) <= MAX_EXTENDS_DEPTH and (parent := _parent(stamps[-1])) is not None:
        stamps.append(_stamp(parent))
    return tuple(stamps)


@lru_cache(maxsize=256)
def _parent(stamp: tuple) -> str | None:
    """The file the file at ``stamp`` extends (None: none, or one the loader will report)."""
    path = Path(stamp[0])
    try:
        parent = read_yaml_mapping(path).get(EXTENDS_KEY)
    except ArchsimError:
        return None
    if not isinstance(parent, str) or not parent.strip() or not (path.parent / parent).is_file():
        return None
    return str(path.parent / parent)


def _layered(path: str):
    return _layered_cached(_chain(path))


@lru_cache(maxsize=64)
def _layered_cached(chain: tuple):
    return load_layered(chain[0][0])


def _workload(path: str, overrides_json: str, lowering: Lowering) -> tuple[Workload, bool]:
    """The workload, kept by its files' stamps (``_chain``), and whether it was built just now."""
    key = (_chain(path), overrides_json, lowering)
    workload = _WORKLOADS.get(key)
    if workload is not None:
        return workload, False
    return _WORKLOADS.put(key, built_workload(path, overrides_json, lowering)), True


_WORKLOADS: BoundedMemo[Workload] = BoundedMemo(size=64)


def built_workload(path: str, overrides_json: str, lowering: Lowering) -> Workload:
    """A sweep's workload built from its files as they are now (``_workload`` keeps it)."""
    overrides = json.loads(overrides_json)
    # errors name where the override came from: a sweep workload's set:, not a --set option
    return load_workload(path, [Override(tuple(k.split(".")), v, f"{k}={v}", f"sweep.workloads set: {k}={v}")
                                    for k, v in overrides], lowering)


def _point_workload(point: Point, lowering: Lowering) -> Workload:
    """The point's workload, lowered for its chip, checked once against the one its sweep planned
    (``point.workload_id``, its digest as built): a file the workload reads beside its
    ``extends:`` chain (a model's config, a trace) may have changed since a long-lived worker
    built it, which then builds it afresh; a worker that still builds another workload (its
    files edited during the sweep, or another machine's) fails the point, never mixing its rows
    in. Within a chunk, where each file is looked at once (``_stamp``), kept by what it is made
    from."""
    path, overrides = point.workload, point.workload_overrides
    key = (path, overrides, point.workload_id, lowering)
    workload = _STAMPS.get(key) if _STAMPS is not None else None  # tuples: no path's stamp
    if workload is not None:
        return workload
    workload, fresh = _workload(path, overrides, lowering)
    checked = (_chain(path), overrides, point.workload_id, lowering)
    if _CHECKED.get(checked) is not workload:  # once per kept build and planned id
        if workload_digest(built_workload(path, overrides, Lowering())) != point.workload_id:  # planned unlowered
            raise ConfigError("the workload built here is not the one the sweep planned (its files changed during "
                              "the sweep, or this worker reads another machine's): plan the sweep again", file=path)
        if not fresh:  # kept from before: it may predate an edit to a file it reads beside its chain
            workload = _WORKLOADS.put((_chain(path), overrides, lowering), built_workload(path, overrides, lowering))
        _CHECKED.put(checked, workload)
    if _STAMPS is not None:
        _STAMPS[key] = workload
    return workload


_CHECKED: BoundedMemo[Workload] = BoundedMemo(size=256)  # (workload, set: values, planned id, lowering) -> its build


# the config sections a worker has validated: each distinct one once, not once per point
_CONFIGS = PointConfigs()


def hardware(point: Point) -> HardwareConfig:
    def overrides() -> list[Override]:  # only for a point validated in full
        return [Override(_path(path), value, f"{path}={value}", f"{point.config}: sweep axis {path}={value}")
                for path, value in point.overrides]

    return _CONFIGS.validate((_chain(point.config), point.base_overrides), lambda: _base_design(point),
                             tuple(_axis(pair)[1] for pair in point.overrides), overrides, point.config)


@lru_cache(maxsize=256)
def _path(key: str) -> tuple[str, ...]:
    return tuple(key.split("."))


def _base_design(point: Point) -> Layered:
    """The point's file with the command line's ``--set`` values, its spaces dropped."""
    return design(_layered(point.config), parse_overrides([text for _, text in point.base_overrides]))


def config_hash(hw: HardwareConfig) -> str:
    """What names the design (not its spaces): ``digest(hw.model_dump(mode="json", exclude={"sweep",
    "explore"}))[:16]``, its text made from its sections' (``config.dumps``)."""
    return hashlib.sha256(dump_text(hw, True, _SPACES).encode()).hexdigest()[:16]


_SPACES = frozenset({"sweep", "explore"})


def evaluate_point(point: Point, hw: HardwareConfig | None = None, family: Family | None = None) -> dict[str, Any]:
    """The point's row. ``hw``: its config, if made already; ``family``: the chunk's chips alike
    in all but HBM's bandwidth (``archsim.sim.family``), whose op times its search makes too."""
    row: dict[str, Any] = {
        "key": point.key, "role": point.role, "config": _file_name(point.config),
        "workload_file": _file_name(point.workload), "workload_id": point.workload_id, CODE: code_fingerprint(),
        **_axis_columns(point.overrides),
    }
    try:
        hw = hardware(point) if hw is None else hw
        row["hardware"] = hw.name
        row["config_hash"] = config_hash(hw)
        workload = _point_workload(point, Lowering.of(hw))
        row["workload"] = workload.name
        result = simulate(hw, workload) if family is None else build_chip(hw, family=family).run(workload)
    except ArchsimError as exc:
        return row | {"status": "invalid", "reason": str(exc)}
    except Exception as exc:  # a bug or an unforeseen corner: recorded for this point, the sweep goes on
        return row | {"status": "error", "reason": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc(limit=5)}
    row.update(_area_columns(result.area))
    if not result.feasible:
        return row | {"status": "infeasible", "reason": result.reason}
    energy = result.energy
    row.update({
        "status": "ok", "reason": "",
        "latency_s": result.latency_s, "cycles": result.cycles, "macs": result.macs,
        "utilization": result.utilization, "energy_j": result.energy_total_j,
        **dict(zip(_ENERGY_COLUMNS, _ENERGY_OF(energy))),
        "power_w": result.power_w, "tops_per_w": result.tops_per_w,
        "throughput_per_s": 1 / result.latency_s if result.latency_s else 0.0,
        "edp_js": result.energy_total_j * result.latency_s,
        **{_name("latency_{}_s", u): t for u, t in result.latency_by("unit").items()},
        # what the time went to: memory, compute, dispatch, array-fill (array_fill here)
        **{_name("bound_{}_s", b.replace("-", "_")): t for b, t in result.latency_by("bound").items()},
        **{name: result.traffic.total(lv) for name, lv in _LEVEL_NAMES},
        "chips": hw.system.chips, "ici_bytes": result.ici_bytes,
        "pipeline_bubble": getattr(result, "bubble_fraction", 0.0),
        "link_utilization": getattr(result, "link_utilization", 0.0),
        "over_tdp": result.over_tdp,
        # a language model's serving figures (archsim.sim.serving); absent, NaN in the table
        **(figures.as_dict() if (figures := serving(result)) is not None else {}),
    })
    over = power_over(point.power_limits, result.power_w)
    if over:  # the figures stay, so the table shows by how much
        row.update(status="infeasible", reason=over)
    return row


def _area_columns(area) -> dict[str, float]:
    """A row's area columns (mm^2): the total, then each component's. Kept by the area, which the
    designs alike in what it reads share (``hw.area``: a family's members, some 25 a sweep's)."""
    held = _AREA_COLUMNS.get(id(area))
    if held is None or held[0] is not area:  # held with it: its id is no other's meanwhile
        if len(_AREA_COLUMNS) >= _JSON_TEXTS_HELD:
            _AREA_COLUMNS.clear()
        columns = {"area_mm2": area.total * 1e6}
        columns.update({_name("area_{}_mm2", k): v * 1e6 for k, v in area.as_dict().items()})
        held = _AREA_COLUMNS[id(area)] = (area, columns)
    return held[1]


_AREA_COLUMNS: dict[int, tuple] = {}


# a row's column names, made once rather than once a point
_ENERGY_COLUMNS = tuple(f"energy_{c}_j" for c in COMPONENTS)
_ENERGY_OF = operator.attrgetter(*COMPONENTS)  # an energy's components, in that order
_LEVEL_NAMES = tuple((f"{lv.value}_bytes", lv) for lv in Level)


@lru_cache(maxsize=256)
def _name(pattern: str, label: str) -> str:
    """``pattern.format(label)``: a row's column for a unit, a bound or an area component."""
    return pattern.format(label)


def _axis_columns(overrides) -> dict[str, str]:
    """The row's ``set.<path>`` columns: each axis value's JSON (``_json_text``)."""
    columns = {}
    for pair in overrides:
        axis = _axis(pair)
        columns[axis[2]] = axis[3][1]
    return columns


def _axis(pair: tuple) -> tuple:
    """What a point's config, family and row read of one of its axis values, a (path, value)
    pair (a chunk's points share their axes' pairs as objects): kept by the pair, the pair, its
    key path split with the value, its row's column, (path, its JSON text) and whether a family's
    points may differ in it (``family_free``)."""
    held = _AXES.get(id(pair))
    if held is None or held[0] is not pair:  # held with it: its id is no other's meanwhile
        if len(_AXES) > _JSON_TEXTS_HELD:
            _AXES.clear()
        path, value = pair
        held = _AXES[id(pair)] = (pair, (_path(path), value), FIELD_PREFIX + path, (path, _json_text(value)),
                                  family_free(path))
    return held


_AXES: dict[int, tuple] = {}


def _json_text(value: Any) -> str:
    """``json.dumps(value)``, kept by the value's type and ``repr`` (which tell 1, 1.0 and True,
    and 0.0 and -0.0, apart): a sweep's points repeat a few axis values."""
    key = (type(value), repr(value))
    text = _JSON_TEXTS.get(key)
    if text is None:
        if len(_JSON_TEXTS) > _JSON_TEXTS_HELD:
            _JSON_TEXTS.clear()
        text = _JSON_TEXTS[key] = json.dumps(value)
    return text


_JSON_TEXTS: dict[tuple, str] = {}
_JSON_TEXTS_HELD = 4096


@lru_cache(maxsize=256)
@lru_cache(maxsize=256)
def _file_name(path: str) -> str:
    return Path(path).name  # a Path costs 1.6 us, twice a point, and a sweep's points share a few files


def power_over(limits, power_w: float) -> str:
    """Why a run's average power breaks its sweep's power constraints ('' if it does not)."""
    for i, lo, hi in limits:
        if (hi is not None and power_w > hi) or (lo is not None and power_w < lo):
            bounds = " ".join(f"{w} {v:g} W" for w, v in (("min", lo), ("max", hi)) if v is not None)
            return f"average power {power_w:.4g} W is outside sweep.constraints.{i} (power {bounds})"
    return ""


def evaluate_chunk(points: list[Point]) -> list[dict[str, Any]]:
    """The points' rows, in order. Points alike but for HBM's bandwidth and capacities form a
    family (``archsim.sim.family``): the first to weigh an op in its placement search weighs it
    for all (the rows are the same bits as each point's alone)."""
    global _STAMPS
    _STAMPS = {}
    try:
        rows = [evaluate_point(*entry) for entry in prepared(points)]
    finally:
        _STAMPS = None
    return rows


def prepared(points: list[Point]) -> list[tuple[Point, HardwareConfig | None, Family | None]]:
    """Each point with its config (None if it fails: ``evaluate_point`` says why) and its family
    among ``points`` (None: alone), as ``evaluate_point`` takes them."""
    chips = [_config_or_none(p) for p in points]
    return list(zip(points, chips, families(chips, [_family_key(p) for p in points])))


def _config_or_none(point: Point) -> HardwareConfig | None:
    """The point's config; None if it fails (``evaluate_point`` reports why)."""
    try:
        return hardware(point)
    except Exception:
        return None


def _family_key(point: Point) -> tuple:
    """What the points of one family share: all but the values ``family_free`` lets differ (HBM's
    bandwidth, and what no op's cost reads: the capacities of CMEM and HBM, labels)."""
    return (point.config, point.base_overrides, tuple(axis[3] for axis in map(_axis, point.overrides) if not axis[4]))
