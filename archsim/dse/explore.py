"""Guided multi-objective search over a design space too big for a grid (``archsim explore``).

The optimiser is pymoo's NSGA-II for mixed variables (``MixedVariableGA`` with rank-and-
crowding survival): an ordinal axis (a list of numbers, quantities or lists, a grid, a
continuous range) is an integer index, a categorical one (schedule names) a choice. Each
generation is asked for ``population`` designs; each design on each workload is the sweep
``Point`` of the same design (``archsim.dse.explore_space``), run by ``run_points`` on the
chosen executor into the same ``ResultStore``, then told back: a design's objectives are its
geometric means over the workloads (log-scaled for the search), and a design outside a
constraint, or whose run is infeasible, invalid or failed on any workload, is infeasible
(pymoo's constraint violation: dominated by every feasible design).

A design already evaluated that the optimiser proposes again is replaced by an unevaluated
neighbour (one axis moved), else a random unevaluated design, so the budget buys new designs
and a small space is covered whole. Everything is seeded: the same spec and seed ask the
same designs, so a re-run replays the search from the stored results (nothing evaluated
twice) and continues where a larger budget allows.

Hypervolume: of the feasible front, each objective normalised to [0, 1] between the best and
worst feasible values seen (maximised objectives negated), against the reference point 1.1
in every objective (pymoo's exact indicator). The progress line uses the bounds seen so far;
``explore.json`` gives every generation's against the final bounds, so they compare.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from archsim.config.loader import Override
from archsim.config.sweep import OBJECTIVES
from archsim.dse.explore_space import Design, Space, plan_space
from archsim.dse.runner import kept_workers, run_points
from archsim.dse.store import ResultStore
from archsim.errors import ArchsimError

REFERENCE = 1.1  # the hypervolume's reference point, in normalised objectives
TRIES = 30  # attempts at an unevaluated neighbour, then at a random design, per duplicate
ENUMERATE = 200_000  # a space this small is enumerated for its unevaluated designs when tries fail
STALL = 3  # generations without a new design before the search ends
INFEASIBLE_F = 1e6  # the optimiser's objective values of an infeasible design (its violation ranks it)
OPTIMISER = "pymoo NSGA-II, mixed variables (MixedVariableGA, RankAndCrowding)"


def _pymoo():
    import importlib.util

    if importlib.util.find_spec("pymoo") is None:
        raise ArchsimError("archsim explore needs pymoo: pip install 'pymoo>=0.6.1' (or reinstall archsim: "
                           "pip install -e .)")


class _Store(ResultStore):
    """The results store, with its rows kept in memory: read once when the search starts, then
    each chunk as ``run_points`` writes it (a full read per generation would grow with the
    search)."""

    rows: dict[str, dict]

    def load(self) -> None:
        frame = self.frame()
        self.rows = {} if frame.empty else {r["key"]: r for r in frame.to_dict(orient="records")}

    def write(self, rows: list[dict]) -> Path:
        path = super().write(rows)
        for row in rows:
            self.rows[row["key"]] = row
        return path

    def done_keys(self) -> set[str]:
        return {k for k, r in self.rows.items() if r.get("status") != "error"}


@dataclass
class Outcome:
    """The search's record: what ``explore.json`` holds."""

    space: Space
    seed: int = 0
    evaluated: dict[Design, np.ndarray | None] = field(default_factory=dict)  # min-sense objectives; None: infeasible
    generation_of: dict[Design, int] = field(default_factory=dict)
    generations: list[dict] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)  # the points of this search (designs and baseline)
    simulated: int = 0  # points run by this process
    seconds: float = 0.0
    stopped: str = ""

    def feasible(self, upto: int | None = None) -> tuple[list[Design], np.ndarray]:
        designs = [d for d, f in self.evaluated.items() if f is not None
                   and (upto is None or self.generation_of[d] <= upto)]
        return designs, np.array([self.evaluated[d] for d in designs]).reshape(len(designs), -1)

    def bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        _, values = self.feasible()
        return (values.min(axis=0), values.max(axis=0)) if len(values) else None

    def front(self) -> list[Design]:
        from archsim.dse.pareto import pareto_mask

        designs, values = self.feasible()
        if not designs:
            return []
        mask = pareto_mask(values, ["min"] * values.shape[1])
        return [d for d, m in zip(designs, mask) if m]

    def hypervolume(self, upto: int | None = None, bounds=None) -> float:
        _, values = self.feasible(upto)
        bounds = bounds or self.bounds()
        return hypervolume(values, *bounds) if bounds is not None and len(values) else 0.0


def hypervolume(values: np.ndarray, ideal: np.ndarray, nadir: np.ndarray) -> float:
    """The hypervolume of min-sense ``values`` (n x k), normalised between ``ideal`` and
    ``nadir``, against ``REFERENCE`` in every objective."""
    from archsim.dse.pareto import pareto_mask
    from pymoo.indicators.hv import HV

    values = np.asarray(values, dtype=float)
    if not len(values):
        return 0.0
    span = np.where(nadir > ideal, nadir - ideal, 1.0)
    norm = (values - ideal) / span
    norm = norm[(norm < REFERENCE).all(axis=1)]
    if not len(norm):
        return 0.0
    norm = norm[pareto_mask(norm, ["min"] * norm.shape[1])]
    if norm.shape[1] == 1:
        return float(REFERENCE - norm.min())
    return float(HV(ref_point=np.full(norm.shape[1], REFERENCE))(norm))


def _problem(space: Space, objectives: int):
    from pymoo.core.problem import Problem
    from pymoo.core.variable import Choice, Integer

    variables = {}
    for i, dom in enumerate(space.domains):
        n = dom.size
        variables[f"x{i}"] = (Choice(options=list(range(n))) if dom.categorical or n == 1
                              else Integer(bounds=(0, n - 1)))
    return Problem(vars=variables, n_obj=objectives, n_ieq_constr=1)


def _algorithm(space: Space, seed: int):
    from pymoo.core.mixed import MixedVariableGA
    from pymoo.core.termination import NoTermination
    from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
    from pymoo.util.display.multi import MultiObjectiveOutput

    algorithm = MixedVariableGA(pop_size=space.spec.population, survival=RankAndCrowding(),
                                output=MultiObjectiveOutput())
    algorithm.setup(_problem(space, len(space.spec.objectives)), termination=NoTermination(), seed=seed,
                    verbose=False)
    return algorithm


def _decode(space: Space, x: dict) -> Design:
    return tuple(min(max(int(round(float(x[f"x{i}"]))), 0), dom.size - 1) for i, dom in enumerate(space.domains))


def _encode(space: Space, d: Design) -> dict:
    return {f"x{i}": v for i, v in enumerate(d)}


class _Fresh:
    """Unevaluated designs in place of repeated ones: a neighbour first, then a random one."""

    def __init__(self, space: Space, seed: int):
        self.space = space
        self.rng = np.random.default_rng([seed, 1])
        self.sizes = [dom.size for dom in space.domains]

    def __call__(self, d: Design, taken) -> Design | None:
        movable = [i for i, n in enumerate(self.sizes) if n > 1]
        if not movable:
            return self.any(taken)
        for _ in range(TRIES):
            i = movable[int(self.rng.integers(len(movable)))]
            moved = list(d)
            if self.space.domains[i].categorical:
                moved[i] = int(self.rng.integers(self.sizes[i]))
            else:
                step = int(self.rng.integers(1, 3)) * (1 if self.rng.random() < 0.5 else -1)
                moved[i] = min(max(d[i] + step, 0), self.sizes[i] - 1)
            if tuple(moved) not in taken:
                return tuple(moved)
        return self.any(taken)

    def any(self, taken) -> Design | None:
        """A random unevaluated design (None: the space is evaluated whole, or nearly)."""
        for _ in range(TRIES):
            other = tuple(int(self.rng.integers(n)) for n in self.sizes)
            if other not in taken:
                return other
        if self.space.size <= ENUMERATE:
            left = [d for d in np.ndindex(*self.sizes) if d not in taken]
            if left:
                return tuple(int(v) for v in left[int(self.rng.integers(len(left)))])
        return None


def _objectives(space: Space, rows: dict[str, dict], d: Design) -> tuple[np.ndarray | None, float]:
    """(min-sense objectives, constraint violation) of an evaluated design."""
    violation = space.violation(d)
    if violation > 0:
        return None, violation
    values = []
    for point in space.points(d):
        row = rows.get(point.key)
        if row is None or row.get("status") != "ok":
            return None, 1.0
        values.append([row.get(OBJECTIVES[o][0]) for o in space.spec.objectives])
    figures = np.array(values, dtype=float)
    if not np.isfinite(figures).all():
        return None, 1.0
    out = []
    for j, name in enumerate(space.spec.objectives):
        column = figures[:, j]
        mean = float(np.exp(np.log(column).mean())) if (column > 0).all() else float(column.mean())
        out.append(mean if OBJECTIVES[name][1] == "min" else -mean)
    return np.array(out), 0.0


def _search_value(f: np.ndarray) -> np.ndarray:
    """What the optimiser is told of a feasible design: its objectives (signed as minimised)
    log-scaled, so that crowding weighs a ratio alike at any magnitude (SI values from
    picojoules up: the 1e12 keeps them above 1, where log1p is a logarithm)."""
    return np.sign(f) * np.log1p(np.abs(f) * 1e12)


def explore(file: str | Path, out_dir: str | Path, overrides: Sequence[Override] = (), executor: str = "pool",
            jobs: int | None = None, chunk_size: int | None = None, scheduler: str | None = None,
            evaluations: int | None = None, seconds: float | None = None, seed: int | None = None,
            echo: Callable[[str], None] = print) -> Outcome:
    """Search ``file``'s explore: space; results go to ``out_dir``'s store. ``evaluations``,
    ``seconds`` and ``seed``, when given, replace the spec's (each its own)."""
    _pymoo()
    from pymoo.core.population import Population

    out_dir = Path(out_dir)
    store = _Store(out_dir)
    space = plan_space(file, out_dir, overrides)
    spec = space.spec
    budget = evaluations if evaluations is not None else spec.budget.evaluations
    limit_s = seconds if seconds is not None else spec.budget.seconds
    seed = spec.seed if seed is None else seed
    outcome = Outcome(space, seed)
    start = time.perf_counter()
    echo(f"explore: {space.size:,} designs x {len(space.refs)} workload(s); budget "
         + ", ".join(filter(None, [f"{budget:,} evaluations" if budget else "",
                                   f"{limit_s:g} s" if limit_s else ""])) + f"; seed {seed}")
    with store.writer(), kept_workers():  # one set of workers for every generation: their caches stay warm
        store.load()
        _run(store, space.baseline_points(), outcome, executor, jobs, chunk_size, scheduler)
        algorithm = _algorithm(space, seed)
        fresh = _Fresh(space, seed)
        idle = 0
        while True:
            if budget is not None and len(outcome.evaluated) >= budget:
                outcome.stopped = "budget"
                break
            if limit_s is not None and time.perf_counter() - start >= limit_s:
                outcome.stopped = "time"
                break
            if len(outcome.evaluated) >= space.size:
                outcome.stopped = "space evaluated whole"
                break
            if idle >= STALL:
                outcome.stopped = "no new designs proposed"
                break
            generation = len(outcome.generations) + 1
            pop = algorithm.ask()  # None when mating made nothing new: topped up below
            pop = Population.empty() if pop is None else pop
            designs, taken = [], set(outcome.evaluated)
            for ind in pop:
                d = _decode(space, ind.X)
                if d in taken:
                    d = fresh(d, taken) or d
                    ind.X = _encode(space, d)
                designs.append(d)
                taken.add(d)
            extra = []
            while len(designs) + len(extra) < spec.population and (d := fresh.any(taken)) is not None:
                extra.append(d)
                taken.add(d)
            if extra:
                pop = Population.merge(pop, Population.new(X=[_encode(space, d) for d in extra]))
                designs += extra
            if budget is not None:  # the last generation: only what the budget leaves
                left = budget - len(outcome.evaluated)
                new = [i for i, d in enumerate(designs) if d not in outcome.evaluated]
                keep = sorted(set(range(len(designs))) - set(new[left:]))
                pop, designs = pop[keep], [designs[i] for i in keep]
            added = [d for d in dict.fromkeys(designs) if d not in outcome.evaluated]
            idle = 0 if added else idle + 1
            points = [p for d in added if space.violation(d) == 0 for p in space.points(d)]
            _run(store, points, outcome, executor, jobs, chunk_size, scheduler)
            F, G = [], []
            for d in designs:
                f, violation = _objectives(space, store.rows, d)
                if d not in outcome.evaluated:
                    outcome.evaluated[d] = f
                    outcome.generation_of[d] = generation
                if violation == 0:
                    outcome.keys.update(p.key for p in space.points(d))
                F.append(_search_value(f) if f is not None else np.full(len(spec.objectives), INFEASIBLE_F))
                G.append([violation])
            if len(pop):
                pop.set("F", np.array(F, dtype=float).reshape(len(pop), -1))
                pop.set("G", np.array(G, dtype=float).reshape(len(pop), 1))
                algorithm.tell(infills=pop)
            hv = outcome.hypervolume()
            outcome.generations.append({"generation": generation, "evaluations": len(outcome.evaluated),
                                        "new": len(added), "front": len(outcome.front()),
                                        "seconds": round(time.perf_counter() - start, 3)})
            echo(f"generation {generation}: {len(outcome.evaluated):,} evaluations ({len(added)} new, "
                 f"{outcome.simulated:,} points simulated by this run), front {outcome.generations[-1]['front']} "
                 f"designs, hypervolume {hv:.4f}")
    outcome.seconds = time.perf_counter() - start
    final = outcome.bounds()
    for g in outcome.generations:
        g["hypervolume"] = outcome.hypervolume(g["generation"], final)
    return outcome


def _run(store: _Store, points, outcome: Outcome, executor, jobs, chunk_size, scheduler) -> None:
    """Run the points not yet in the store (one chunk per worker unless ``chunk_size``)."""
    outcome.keys.update(p.key for p in points)
    done = store.done_keys()
    todo = list({p.key: p for p in points if p.key not in done}.values())
    if not todo:
        return
    workers = 1 if executor == "serial" else (jobs or os.cpu_count() or 1)
    size = chunk_size or max(1, math.ceil(len(todo) / workers))
    run_points(todo, store, executor, jobs, size, scheduler, progress=False)
    outcome.simulated += len(todo)
