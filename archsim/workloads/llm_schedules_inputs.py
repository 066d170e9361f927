"""The inputs of the LLM decode schedules (``archsim.workloads.llm_schedules``): acceptance (a
constant rate, a per-position curve or a recorded CSV of accepted lengths), token trees, and
recorded per-layer skip rates. Sources: docs/sources/speculative.md#acceptance."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from archsim.errors import ConfigError, FieldError
from archsim.workloads.inputs import read_text, whole_number

MAX_ACCEPT_BYTES = 16 * 2**20  # a documented limit: an acceptance trace CSV of at most 16 MiB
MAX_ACCEPT_ROWS = 1_000_000  # a documented limit: rows of an acceptance trace
ACCEPT_COLUMNS = ("accepted", "count")

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
    verification (columns ``accepted`` and optionally ``count``)."""

    def __init__(self, value: float | list[float] | str, source: str = "schedule.acceptance"):
        self.value = value
        self.source = source

    def probabilities(self, depth: int) -> np.ndarray:
        """P(accepted drafts = j), j = 0..depth, for ``depth`` drafts (a tree's depth)."""
        if isinstance(self.value, str):
            counts = read_acceptance_trace(trace_path(self.value), depth)
            return counts / counts.sum()
        if isinstance(self.value, list):
            if len(self.value) < depth:
                raise ConfigError(f"the acceptance curve has {len(self.value)} positions; the schedule drafts "
                                  f"{depth} tokens per verification", key=self.source)
            return chain_probabilities(np.asarray(self.value[:depth], dtype=float))
        return chain_probabilities(np.full(depth, float(self.value)))

    def tokens_per_round(self, depth: int) -> float:
        """Expected tokens per verification: the accepted drafts plus the verifier's own token."""
        p = self.probabilities(depth)
        return 1.0 + float(np.dot(np.arange(p.size), p))


def trace_path(path: str) -> Path:
    """A CSV path as given (relative to the current folder) or, failing that, under workloads/."""
    resolved = Path(path)
    if not resolved.exists():  # exists, not is_file: a FIFO given here must be refused, not skipped
        bundled = Path(__file__).resolve().parents[2] / "workloads" / path
        resolved = bundled if bundled.exists() else resolved
    return resolved


def read_acceptance_trace(path: Path, depth: int) -> np.ndarray:
    """Verifications per accepted length 0..depth, from a CSV with a header naming ``accepted``
    (drafts accepted in one verification) and optionally ``count`` (verifications, default 1)."""
    text = read_text(path, "an acceptance trace CSV", "acceptance traces", MAX_ACCEPT_BYTES, "16 MiB")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [cell.strip() for cell in next(reader, None) or []]
        if not header:
            raise ConfigError(f"the trace is empty; expected a header row {','.join(ACCEPT_COLUMNS)}", file=str(path))
        for column in header:
            if column not in ACCEPT_COLUMNS or header.count(column) > 1:
                what = "repeated" if column in ACCEPT_COLUMNS else "unknown"
                raise ConfigError(f"{what} column {column!r}; expected accepted and optionally count", file=f"{path}:1")
        if "accepted" not in header:
            raise ConfigError("missing column 'accepted'", file=f"{path}:1")
        counts = np.zeros(depth + 1)
        rows = 0
        for cells in reader:
            if not cells:
                continue
            rows += 1
            where = f"{path}:{reader.line_num}"
            if rows > MAX_ACCEPT_ROWS:
                raise ConfigError(f"more than {MAX_ACCEPT_ROWS:,} rows; archsim's limit for an acceptance trace",
                                  file=where)
            if len(cells) != len(header):
                raise ConfigError(f"the row has {len(cells)} cells, expected {len(header)} ({', '.join(header)})",
                                  file=where)
            row = dict(zip(header, cells))
            accepted = whole_number(row["accepted"])
            if accepted is None:
                raise ConfigError(f"expected a whole number from 0, got {row['accepted']!r}", file=where, key="accepted")
            if accepted > depth:
                raise ConfigError(f"{accepted} drafts accepted, but the schedule drafts {depth} per verification",
                                  file=where, key="accepted")
            count = whole_number(row.get("count", "1"))
            if count is None or count < 1:
                raise ConfigError(f"expected a whole number from 1, got {row.get('count')!r}", file=where, key="count")
            counts[accepted] += count
    except csv.Error as exc:
        raise ConfigError(f"cannot read the acceptance trace: {exc}", file=f"{path}:{reader.line_num}") from None
    if not rows:
        raise ConfigError("the trace has no verifications", file=str(path))
    return counts


AcceptanceValue = float | list[float] | str


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
    seen = {tuple(p) for p in value}
    if len(seen) != len(value):
        raise FieldError(key, "a path is given twice")
    for path in value:
        if not path:
            raise FieldError(key, "an empty path; the root is implied")
        if tuple(path[:-1]) not in seen and len(path) > 1:
            raise FieldError(key, f"path {list(path)} has no parent {list(path[:-1])} in the tree")


def read_skip_trace(path: Path, layers: int) -> np.ndarray:
    """Per layer, the share of decode tokens skipping it (absent layers: 0)."""
    text = read_text(path, "a layer-skip trace CSV", "layer-skip traces", MAX_ACCEPT_BYTES, "16 MiB")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header = [c.strip() for c in rows[0]] if rows else []
    if sorted(header) != ["layer", "skip"]:
        raise ConfigError(f"expected the header layer,skip, got {','.join(header) or 'nothing'}", file=f"{path}:1")
    skip = np.zeros(layers)
    seen: set[int] = set()
    for line, cells in enumerate(rows[1:], start=2):
        if not cells:
            continue
        where = f"{path}:{line}"
        if len(cells) != 2:
            raise ConfigError(f"the row has {len(cells)} cells, expected 2 (layer, skip)", file=where)
        row = dict(zip(header, (c.strip() for c in cells)))
        layer = whole_number(row["layer"])
        if layer is None or layer >= layers:
            raise ConfigError(f"expected a layer from 0 to {layers - 1}, got {row['layer']!r}", file=where, key="layer")
        if layer in seen:
            raise ConfigError(f"a second row for layer {layer}", file=where, key="layer")
        seen.add(layer)
        try:
            rate = float(row["skip"])
        except ValueError:
            rate = math.nan
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"expected a skip rate in [0, 1), got {row['skip']!r}", file=where, key="skip")
        skip[layer] = rate
    return skip
