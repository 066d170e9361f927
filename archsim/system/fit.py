"""What would make an infeasible run fit: the same chips, more of them, sharing the model.

Tried in order, each checked by simulating it: the chips times 2, 4, 8, ... (up to
``MAX_FACTOR``), the extra ones added to tensor parallelism (every layer split across more
chips) and, where the model's heads or widths do not divide, to pipeline parallelism (the
layers split into more stages). The first that fits is the suggestion; a mapping the
workload cannot take (heads not divisible, fewer layers than stages) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from archsim.config.loader import Override, load_hardware, parse_overrides
from archsim.errors import ArchsimError

MAX_FACTOR = 64  # a documented limit: suggestions up to 64 times the chips given


@dataclass(frozen=True)
class Fit:
    sets: tuple[str, ...]  # the --set overrides that make it fit
    latency_s: float  # the run's latency with them

    def flags(self) -> str:
        return " ".join(f"--set {s}" for s in self.sets)


def find_fit(hw_file: Path, overrides: Sequence[Override], workload_file: Path, workload_sets: Sequence[Override],
             dispatch: str = "program") -> Fit | None:
    """The fewest chips (then tensor before pipeline parallelism) on which the run fits; None
    when nothing up to ``MAX_FACTOR`` times the chips does."""
    from archsim import api  # the API imports this package

    system = load_hardware(hw_file, overrides).system
    chips, parallelism = system.chips, system.parallelism
    factor = 2
    while factor <= MAX_FACTOR:
        for scheme in ("tensor", "pipeline"):
            sets = (f"system.chips={chips * factor}", f"system.parallelism.{scheme}={getattr(parallelism, scheme) * factor}")
            try:
                hw = load_hardware(hw_file, [*overrides, *parse_overrides(sets)])
                result = api.simulate(hw, api.load_workload(workload_file, workload_sets, hw), dispatch)
            except (ArchsimError, ValueError):  # a mapping this workload cannot take
                continue
            if result.feasible:
                return Fit(sets, result.latency_s)
        factor *= 2
    return None
