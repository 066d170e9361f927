"""Vector work that feature-caching schedules add to a DiT step, as ops with their own cost.

ToCa and DuCa score tokens (the cached attention map summed per key, normalised, adjusted and
sorted) to choose the ones whose MLP is recomputed; SpeCa measures a forecast's error against
one block run in full. Each is a ``VectorOp`` (the cost models stream its passes through the
vector unit like any other) whose per-element counts are written out beside each function,
from the authors' code (docs/sources/schedules.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from archsim.ir.ops import Pass, VectorOp

MAX_SORT_LOG2 = 24  # a sort of up to 2^24 keys per row (tokens of one image)


@dataclass(frozen=True)
class ScheduleWork(VectorOp):
    """A schedule's own vector work over ``rows`` rows of ``row_length`` elements."""

    kind: ClassVar[str] = "schedule_work"
    PASSES: ClassVar[dict[str, tuple[Pass, ...]]] = {
        # sum: a reduction along an axis other than the row's (the attention map summed over
        # queries per key, the heads' maps averaged): one add per element read.
        "sum": (Pass(1),),
        # torch.nn.functional.normalize(p=2) along the row: squares summed (square, add), then
        # each element scaled by the row's reciprocal norm.
        "l2_normalize": (Pass(2), Pass(1, (), (("rsqrt", 1),))),
        # ToCa's score adjustments per token (cache_functions/score_evaluate.py and
        # cache_cutfresh.py): the cache-frequency score s3 (index to float, / threshold, x weight,
        # add: 4); local_selection_with_bonus over 2 x 2 token blocks (permute into blocks, a copy;
        # the block max, 3 compares per 4 tokens, counted 1; the zero mask and its scatter, 1;
        # mask x max x bonus and the add, 3; permute back, a copy): 11 per token.
        "toca_score": (Pass(11),),
        # SpeCa's relative L1 error (models.py, calculate_relative_l1_error):
        # |x - y| / (|y| + eps), then the mean: sub, abs, abs, add, divide, add: 6 per element.
        "relative_l1": (Pass(6),),
        # argsort of a row of n scores (torch.argsort) as a bitonic network: k(k+1)/2 stages for
        # n padded to 2^k, each element compared and its (score, index) pair selected once per
        # stage: 2 per element per stage. ASSUMPTION: a GPU's segmented sort is not published per
        # element; a bitonic network is the sort a vector unit runs on one row in place.
        **{f"bitonic{k}": (Pass(k * (k + 1)),) for k in range(1, MAX_SORT_LOG2 + 1)},
    }


def sort_function(keys: int) -> str:
    """The bitonic network for ``keys`` per row, padded to a power of two."""
    k = max(1, math.ceil(math.log2(max(keys, 2))))
    if k > MAX_SORT_LOG2:
        raise ValueError(f"a sort of {keys} keys per row is over archsim's 2^{MAX_SORT_LOG2}")
    return f"bitonic{k}"
