"""Cost fingerprints: the content of every config value an op's cost may read, as a key for the
costs shared between chips and design points (``archsim.sim.engine``)."""

from __future__ import annotations

from archsim.config.dumps import dump_text, section_text
from archsim.config.schema import HardwareConfig
from archsim.hw.memory import Level


class CostFingerprint:
    """The content of every config value an op's cost may read, as a key for shared costs.
    An op reads the chip's units, VMEM and the outer levels its tensors live in, never a
    capacity of CMEM or HBM (those decide the placement, which is in the key as the levels):
    so two design points that differ only in HBM bandwidth share the costs of every op whose
    tensors all live on chip."""

    _OUTER = {"cmem": Level.CMEM, "hbm": Level.HBM}

    def __init__(self, core: str, outer: dict[Level, str]):
        self.core = core
        self.outer = outer
        self._keys: dict[tuple[Level, ...], tuple] = {}

    # what no op's cost reads: labels, the design spaces, the TDP flag, the periphery's area
    _UNREAD = frozenset({"name", "description", "sweep", "explore", "tdp", "periphery_area"})

    @classmethod
    def of(cls, hw: HardwareConfig) -> "CostFingerprint":
        """The texts of ``hw.model_dump()`` without what no cost reads: the outer levels' (but
        their capacities) apart, the rest as one (``config.dumps``: made from its sections'
        texts, each once per section object)."""
        capacity = frozenset({"capacity"})
        outer = {level: _interned(section_text(getattr(hw, name), capacity)) for name, level in cls._OUTER.items()}
        return cls(_interned(dump_text(hw, False, cls._UNREAD | frozenset(cls._OUTER))), outer)

    @classmethod
    def unread(cls, path: str) -> bool:
        """Whether no op's cost reads the config value at this key path ("cmem.capacity"):
        design points differing only in such values share every op's cost."""
        head, _, rest = path.partition(".")
        return head in cls._UNREAD or (head in cls._OUTER and rest == "capacity")

    def key(self, levels: tuple[Level, ...]) -> tuple:
        key = self._keys.get(levels)
        if key is None:
            key = self._keys[levels] = (self.core, *(self.outer[lv] for lv in sorted(set(levels)) if lv in self.outer))
        return key


_FINGERPRINTS: dict[str, str] = {}


def _interned(text: str) -> str:
    """One copy of each fingerprint however many design points (and cost keys) share it."""
    if len(_FINGERPRINTS) > 10_000:
        _FINGERPRINTS.clear()
    return _FINGERPRINTS.setdefault(text, text)
