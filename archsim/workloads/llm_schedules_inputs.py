"""The inputs of the LLM decode schedules (``archsim.workloads.llm_schedules``): acceptance (a
constant rate, a per-position curve or a recorded CSV of accepted lengths), token trees, and
recorded per-layer skip rates. Sources: docs/sources/speculative.md#acceptance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from archsim.errors import ConfigError, FieldError
from archsim.workloads.inputs import whole_number

MEDUSA_TOPK = 10  # FasterDecoding/Medusa medusa/model/utils.py: TOPK = 10, candidates per head

# FasterDecoding/Medusa medusa/model/medusa_choices.py, mc_sim_7b_63: the tree medusa_generate
# uses by default (63 candidate paths; each entry is the top-k rank chosen at each depth).
TREES: dict[str, list[list[int]]] = {
    "mc_sim_7b_63": [
        [0], [0, 0], [1], [0, 1], [2], [0, 0, 0], [1, 0], [0, 2], [3], [0, 3], [4], [0, 4], [2, 0], [0, 5],
        [0, 0, 1], [5], [0, 6], [6], [0, 7], [0, 1, 0], [1, 1], [7], [0, 8], [0, 0, 2], [3, 0], [0, 9], [8],
        [9], [1, 0, 0], [0, 2, 0], [1, 2], [0, 0, 3], [4, 0], [2, 1], [0, 0, 4], [0, 0, 5], [0, 0, 0, 0],
        [0, 1, 1], [0, 0, 6], [0, 3, 0], [5, 0], [1, 3], [0, 0, 7], [0, 0, 8], [0, 0, 9], [6, 0], [0, 4, 0],
        [1, 4], [7, 0], [0, 1, 2], [2, 0, 0], [3, 1], [2, 2], [8, 0], [0, 5, 0], [1, 5], [1, 0, 1],
        [0, 2, 1], [9, 0], [0, 6, 0], [0, 0, 0, 1], [1, 6], [0, 7, 0],
    ],
}


# -- acceptance --------------------------------------------------------------------------------

def chain_probabilities(rates: np.ndarray) -> np.ndarray:
    """P(accepted = j), j = 0..len(rates), when draft position i is accepted with probability
    ``rates[i]`` given every earlier one was (and rejected otherwise, ending the round)."""
    reach = np.concatenate(([1.0], np.cumprod(rates)))  # P(accepted >= j)
    return reach - np.concatenate((reach[1:], [0.0]))


class Acceptance:
    """The acceptance input of a speculative schedule, one of: a constant rate ``a`` (each
    draft accepted with probability a, independently: Leviathan et al. 2023's i.i.d. model,
    expected tokens per verification (1 - a^(k+1)) / (1 - a)); a list, the rate at each draft
    position given the earlier ones were accepted; or a CSV path of accepted drafts per
    verification (columns ``accepted`` and optionally ``count``), found by ``trace_file``."""

    def __init__(self, value: float | list[float] | str, paths=None, key: str = "schedule.acceptance"):
        self.value = value
        self.paths = paths
        self.key = key

    def probabilities(self, depth: int) -> np.ndarray:
        """P(accepted drafts = j), j = 0..depth, for ``depth`` drafts (a tree's depth)."""
        if isinstance(self.value, str):
            path = trace_file(self.value, self.paths, self.key)
            counts = read_named(lambda: read_acceptance_trace(path, depth), path, self.paths, self.key,
                                "acceptance trace")
            return counts / counts.sum()
        if isinstance(self.value, list):
            if len(self.value) != depth:
                raise ConfigError(f"the acceptance curve has {len(self.value)} positions; the schedule drafts "
                                  f"{depth} tokens per verification", key=self.key)
            return chain_probabilities(np.asarray(self.value, dtype=float))
        return chain_probabilities(np.full(depth, float(self.value)))

    def tokens_per_round(self, depth: int) -> float:
        """Expected tokens per verification: the accepted drafts plus the verifier's own token."""
        p = self.probabilities(depth)
        return 1.0 + float(np.dot(np.arange(p.size), p))


def trace_file(value: str, paths=None, key: str = "schedule.acceptance") -> Path:
    """A trace's path: relative to the workload file that names it at ``key`` (``paths``, a
    ``PathResolver``; a command-line option's, to the current folder) or, failing that, as given
    or under workloads/ (``_mask_path``, as the DiT schedules' masks and tables). A path found nowhere is
    the first, for the error."""
    from archsim.workloads.schedules import _mask_path

    first = paths(key, value) if paths is not None else None
    if first is not None and first.exists():  # exists, not is_file: a FIFO given here must be refused
        return first
    other = _mask_path(value)
    return other if other.exists() or first is None else first


def read_named(read, path: Path, paths, key: str, what: str):
    """``read()``, its errors naming the workload file and ``key`` that name ``path``: a problem
    with the file as a whole (missing, a directory, too big) as the workload's, at ``key``;
    one inside it (its line and column) as the file's, saying which workload key names it."""
    try:
        return read()
    except ConfigError as exc:
        named = paths.source(key) if paths is not None else None
        if named is None:
            raise
        if exc.file == str(path):
            raise ConfigError(f"{path}: {exc.message}", file=named, key=key) from None
        raise ConfigError(f"{exc} (the {what} named by {named}, key {key})") from None


def read_acceptance_trace(path: Path, depth: int) -> np.ndarray:
    """Verifications per accepted length 0..depth, from a CSV with a header naming ``accepted``
    (drafts accepted in one verification) and optionally ``count`` (verifications, default 1)."""
    from archsim.workloads.schedules_adaptive import read_table, whole_cell

    def cell(text: str, column: str, where: str) -> int:
        value = whole_cell(text, column, where)
        if column == "count" and value < 1:
            raise ConfigError(f"expected a whole number from 1, got {text!r}", file=where, key=column)
        if column == "accepted" and value > depth:
            raise ConfigError(f"{value} drafts accepted, but the schedule drafts {depth} per verification",
                              file=where, key=column)
        return value

    counts = np.zeros(depth + 1)
    for _, row in read_table(path, "an acceptance trace CSV", ("accepted",), cell, optional=("count",)):
        counts[row["accepted"]] += row.get("count", 1)
    if not counts.any():
        raise ConfigError("the trace has no verifications", file=str(path))
    return counts


AcceptanceValue = float | list[float] | str


def not_a_bool(value):
    """A rate is a number: YAML's true and false (which pydantic would read as 1 and 0) are refused."""
    if isinstance(value, bool) or isinstance(value, list) and any(isinstance(v, bool) for v in value):
        raise ValueError("an acceptance rate is a number in [0, 1], a per-position list of them or a trace CSV path, "
                         "not true or false")
    return value


def check_acceptance(value: AcceptanceValue) -> AcceptanceValue:
    """A rate, or every rate of a curve, in [0, 1]; a trace path is checked when read."""
    rates = value if isinstance(value, list) else [] if isinstance(value, str) else [value]
    if isinstance(value, list) and not value:
        raise ValueError("an acceptance curve needs a rate per draft position")
    for rate in rates:
        if not 0.0 <= rate <= 1.0:  # NaN fails too
            raise ValueError(f"an acceptance rate is a probability in [0, 1], got {rate}")
    return value


# -- token trees --------------------------------------------------------------------------------

class Tree:
    """A token tree of candidate paths (Medusa's ``medusa_choices``): a path ``[i, j]`` is the
    j-th candidate after the i-th; the root is the verifier's last token. ``size`` counts the
    root (the tokens of the verification pass), ``widths[d]`` the nodes at depth d (root: 0)."""

    def __init__(self, paths: list[list[int]]):
        self.paths = [tuple(p) for p in paths]
        self.depth = max((len(p) for p in self.paths), default=0)
        self.size = len(self.paths) + 1
        self.widths = [1] + [sum(len(p) == d for p in self.paths) for d in range(1, self.depth + 1)]

    @classmethod
    def chain(cls, k: int) -> "Tree":
        return cls([[0] * d for d in range(1, k + 1)])


def check_tree(value: str | list[list[int]] | None, key: str = "tree") -> None:
    if value is None or isinstance(value, str) and (value == "chain" or value in TREES):
        return
    if isinstance(value, str):
        raise FieldError(key, f"unknown tree {value!r}; expected chain, {', '.join(TREES)} or a list of paths")
    if not value:
        raise FieldError(key, "an empty tree drafts nothing; give at least one path ([[0]]: one draft)")
    seen = {tuple(p) for p in value}
    if len(seen) != len(value):
        raise FieldError(key, "a path is given twice")
    for path in value:
        if not path:
            raise FieldError(key, "an empty path; the root is implied")
        if tuple(path[:-1]) not in seen and len(path) > 1:
            raise FieldError(key, f"path {list(path)} has no parent {list(path[:-1])} in the tree")


def read_skip_trace(path: Path, layers: int) -> np.ndarray:
    """Per layer, the share of decode tokens skipping it (absent layers: 0), from a CSV of
    columns ``layer`` and ``skip``, one row per layer at most."""
    from archsim.workloads.schedules_adaptive import decimal_cell, read_table, unique

    def cell(text: str, column: str, where: str) -> float:
        if column == "layer":
            value = whole_number(text)
            if value is None or value >= layers:
                raise ConfigError(f"expected a layer from 0 to {layers - 1}, got {text!r}", file=where, key=column)
            return value
        rate = decimal_cell(text, column, where)
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"expected a skip rate in [0, 1), got {text!r}", file=where, key=column)
        return rate

    skip = np.zeros(layers)
    for (layer,), row in unique(path, read_table(path, "a layer-skip trace CSV", ("layer", "skip"), cell),
                                ("layer",)).items():
        skip[layer] = row["skip"]
    return skip
