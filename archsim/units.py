"""Exact parsing of quantities with units ("614 GB/s", "16 MiB", "1.05 GHz", "0.21 pJ").

Values are converted to SI base units (bytes, seconds, joules, metres, ops) and returned as
floats, correctly rounded from exact rational arithmetic, so "100 ns" is exactly the double
nearest 1e-7 and "16 MiB" is exactly 16 * 2**20.

Why not pint: pint 0.25 treats bits and bytes as dimensionless (so "614 GB/s" and "614 GHz"
cannot be told apart), reads "cycles" as radians, adds float noise in conversions and costs
about a second to import. A config needs a small, fixed vocabulary checked strictly; this
module is that.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

from archsim.errors import UnitError

# Base dimensions, in order: information (byte), time (s), energy (J), length (m), count (op).
_BASES = ("B", "s", "J", "m", "op")


class Dim(NamedTuple):
    """Exponents of the base dimensions."""

    byte: int = 0
    time: int = 0
    energy: int = 0
    length: int = 0
    ops: int = 0

    def __mul__(self, other: "Dim") -> "Dim":  # type: ignore[override]
        return Dim(*(a + b for a, b in zip(self, other)))

    def __truediv__(self, other: "Dim") -> "Dim":
        return Dim(*(a - b for a, b in zip(self, other)))

    def __pow__(self, exponent: int) -> "Dim":
        return Dim(*(a * exponent for a in self))


DIMENSIONLESS = Dim()
SIZE = Dim(byte=1)
TIME = Dim(time=1)
FREQUENCY = Dim(time=-1)
BANDWIDTH = Dim(byte=1, time=-1)
ENERGY = Dim(energy=1)
POWER = Dim(energy=1, time=-1)
ENERGY_PER_BYTE = Dim(energy=1, byte=-1)
AREA = Dim(length=2)
LENGTH = Dim(length=1)
AREA_PER_BYTE = Dim(length=2, byte=-1)
OPS_PER_SECOND = Dim(ops=1, time=-1)
POWER_DENSITY = Dim(energy=1, time=-1, length=-2)

# Human names and an example for error messages.
DIM_NAMES: dict[Dim, tuple[str, str]] = {
    DIMENSIONLESS: ("dimensionless number", "1.5"),
    SIZE: ("size", "16 MiB"),
    TIME: ("time", "100 ns"),
    FREQUENCY: ("frequency", "1.05 GHz"),
    BANDWIDTH: ("bandwidth", "614 GB/s"),
    ENERGY: ("energy", "0.21 pJ"),
    POWER: ("power", "175 W"),
    ENERGY_PER_BYTE: ("energy per byte", "3.9 pJ/bit"),
    AREA: ("area", "400 mm^2"),
    LENGTH: ("length", "7 nm"),
    AREA_PER_BYTE: ("area per byte", "1.2 mm^2/MiB"),
    OPS_PER_SECOND: ("operation rate", "138 TOPS"),
    POWER_DENSITY: ("power per area", "0.07 W/mm^2"),
}

# Unit symbols: symbol -> (factor to SI base, dimension).
_UNITS: dict[str, tuple[Fraction, Dim]] = {
    "B": (Fraction(1), SIZE),
    "bit": (Fraction(1, 8), SIZE),
    "s": (Fraction(1), TIME),
    "Hz": (Fraction(1), FREQUENCY),
    "J": (Fraction(1), ENERGY),
    "W": (Fraction(1), POWER),
    "m": (Fraction(1), LENGTH),
    "op": (Fraction(1), Dim(ops=1)),
    "ops": (Fraction(1), Dim(ops=1)),
    "OPS": (Fraction(1), OPS_PER_SECOND),  # operations per second, as in "138 TOPS"
    "FLOPS": (Fraction(1), OPS_PER_SECOND),
}

_SI_PREFIXES: dict[str, Fraction] = {
    "a": Fraction(1, 10**18), "f": Fraction(1, 10**15), "p": Fraction(1, 10**12),
    "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "µ": Fraction(1, 10**6), "μ": Fraction(1, 10**6),
    "m": Fraction(1, 10**3), "c": Fraction(1, 100), "k": Fraction(10**3),
    "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "P": Fraction(10**15), "E": Fraction(10**18),
}
_BINARY_PREFIXES: dict[str, Fraction] = {
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30),
    "Ti": Fraction(2**40), "Pi": Fraction(2**50),
}
# Binary prefixes make sense only for information.
_BINARY_OK = {"B", "bit"}

# At most 30 digits before and after the point, exponents (e-notation) of at most 3 digits,
# unit powers of at most one digit and quantities of at most 100 characters: enough for any
# physical value, and no way to make exact arithmetic run for ever.
MAX_QUANTITY_CHARS = 100
# [0-9], not \d: Python's \d also matches full-width and other scripts' digits ("１６ MiB").
_NUMBER = r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,3})?"
_QUANTITY_RE = re.compile(rf"^\s*({_NUMBER})\s*(.*?)\s*$")


def shorten(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut in the middle when long, for error messages."""
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[: limit // 2]}...{shown[-limit // 2:]} ({len(shown):,} characters)"


_TERM_RE = re.compile(r"^([A-Za-zµμ]+)(?:\^([+-]?[0-9]))?$")


@lru_cache(maxsize=256)
def _parse_symbol(token: str) -> tuple[Fraction, Dim]:
    """A prefixed unit symbol with an optional integer power, e.g. "mm^2", "GB", "pJ"."""
    match = _TERM_RE.match(token)
    if not match:
        raise UnitError(f"cannot read unit {token!r}")
    name, power_text = match.groups()
    power = int(power_text) if power_text else 1
    candidates: list[tuple[Fraction, Dim]] = []
    if name in _UNITS:
        candidates.append(_UNITS[name])
    else:
        for prefixes, binary in ((_BINARY_PREFIXES, True), (_SI_PREFIXES, False)):
            for prefix, scale in prefixes.items():
                rest = name[len(prefix):]
                if name.startswith(prefix) and rest in _UNITS and (not binary or rest in _BINARY_OK):
                    factor, dim = _UNITS[rest]
                    candidates.append((scale * factor, dim))
    if not candidates:
        known = ", ".join(sorted(_UNITS))
        raise UnitError(f"unknown unit {name!r} (known units: {known}, with SI or binary prefixes)")
    factor, dim = candidates[0]
    return factor**power, dim**power


@lru_cache(maxsize=256)
def _parse_unit_expression(text: str) -> tuple[Fraction, Dim]:
    """A product/quotient of unit terms, read left to right: 'GB/s', 'pJ/bit', 'mm^2/MiB'.

    Parentheses are not supported; 'a/b/c' reads as (a/b)/c.
    """
    factor, dim = Fraction(1), DIMENSIONLESS
    if not text:
        return factor, dim
    tokens = re.split(r"\s*([/*·])\s*|\s+", text)
    op = "*"
    for token in tokens:
        if token is None or token == "":
            continue
        if token in "/*·":
            op = token
            continue
        f, d = _parse_symbol(token)
        if op == "/":
            factor, dim = factor / f, dim / d
        else:
            factor, dim = factor * f, dim * d
        op = "*"
    return factor, dim


@lru_cache(maxsize=4096)
def parse_quantity_exact(text: str) -> tuple[Fraction, Dim]:
    """Parse "614 GB/s" into (exact SI value, dimension). Cached: a sweep validates the same
    strings at every design point (errors are raised, never cached)."""
    if len(text) > MAX_QUANTITY_CHARS:
        raise UnitError(f"{shorten(text)} is too long for a quantity (at most {MAX_QUANTITY_CHARS} characters)")
    digit = next((c for c in text if c.isdigit() and not c.isascii()), None)
    if digit is not None:  # read as a number by int() and Fraction(), but not what anyone can check by eye
        raise UnitError(f"{shorten(text)} has the digit {digit!r} (U+{ord(digit):04X}); write numbers with the "
                        "ASCII digits 0-9")
    match = _QUANTITY_RE.match(text)
    if not match:
        raise UnitError(f"{shorten(text)} is not a number followed by a unit")
    number, unit = match.groups()
    if unit[:1].isdigit() or (unit[:1] in ("e", "E", ".") and unit[1:2].isdigit()):
        # the number pattern stops at its limits: the rest of a longer number would be read as a unit
        raise UnitError(f"{shorten(text)} has too many digits (at most 30 before and 30 after the point, "
                        "and an exponent of at most 3 digits)")
    factor, dim = _parse_unit_expression(unit)
    return Fraction(number) * factor, dim


def unit_text(text: str) -> str:
    """The unit of a quantity as written: '400 mm^2' -> 'mm^2'; '' for a plain number."""
    match = _QUANTITY_RE.match(text)
    return match.group(2) if match else ""


def describe(dim: Dim) -> str:
    name, example = DIM_NAMES.get(dim, (None, None))
    if name is None:
        parts = [f"{b}^{e}" for b, e in zip(_BASES, dim) if e]
        return "a quantity of unit " + (" ".join(parts) or "1")
    article = "an" if name[0] in "aeiou" else "a"
    return f"{article} {name}, such as '{example}'"


def parse_quantity(value: object, expected: Dim) -> float:
    """Parse a config value into SI units, checking its dimension.

    A number without a unit is accepted only for dimensionless quantities: every physical
    value in a config must say its unit.
    """
    if isinstance(value, bool):
        raise UnitError(f"expected {describe(expected)}, got a boolean")
    if isinstance(value, (int, float)):
        if expected == DIMENSIONLESS:
            try:
                return float(value)
            except OverflowError:
                raise UnitError(f"{value!r} is too large to represent") from None
        raise UnitError(f"{value!r} has no unit; expected {describe(expected)}")
    if not isinstance(value, str):
        raise UnitError(f"expected {describe(expected)} as a string, got {type(value).__name__}")
    return _parse_text(value, expected)


@lru_cache(maxsize=4096)
def _parse_text(value: str, expected: Dim) -> float:
    """``parse_quantity`` of a string. Cached: a sweep's points validate their file's same
    strings (the clock, the TDP) at every point (errors are raised, never cached)."""
    exact, dim = parse_quantity_exact(value)
    if dim == DIMENSIONLESS and expected != DIMENSIONLESS:
        problem = "its units cancel out" if _QUANTITY_RE.match(value).group(2) else "has no unit"
        raise UnitError(f"{shorten(value)} {problem}; expected {describe(expected)}")
    if dim != expected:
        raise UnitError(f"{shorten(value)} is {describe(dim)}; expected {describe(expected)}")
    return to_float(exact, value)


def to_float(exact: Fraction, text: str) -> float:
    """The double nearest ``exact``; an error where there is none (the written value ``text``
    is beyond about 1.8e308 in SI units, or is non-zero but below about 5e-324)."""
    try:
        value = float(exact)
    except OverflowError:
        raise UnitError(f"{shorten(text)} is too large to represent") from None
    if value == 0 and exact != 0:
        raise UnitError(f"{shorten(text)} is too small to represent")
    return value


_DISPLAY: dict[Dim, tuple[str, tuple[tuple[float, str], ...]]] = {
    SIZE: ("B", ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B"))),
    BANDWIDTH: ("B/s", ((1e12, "TB/s"), (1e9, "GB/s"), (1e6, "MB/s"), (1, "B/s"))),
    TIME: ("s", ((1, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns"), (1e-12, "ps"))),
    FREQUENCY: ("Hz", ((1e9, "GHz"), (1e6, "MHz"), (1e3, "kHz"), (1, "Hz"))),
    ENERGY: ("J", ((1, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ"))),
}


def format_quantity(value: float, dim: Dim, digits: int = 4) -> str:
    """A human-readable rendering, e.g. 134217728 bytes -> '128 MiB'."""
    if dim not in _DISPLAY:
        return f"{value:.{digits}g}"
    _, scales = _DISPLAY[dim]
    for scale, unit in scales:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {unit}"
    scale, unit = scales[-1]
    return f"{value / scale:.{digits}g} {unit}"


_SI_UNITS = {
    SIZE: "B", TIME: "s", FREQUENCY: "Hz", BANDWIDTH: "B/s", ENERGY: "J", POWER: "W",
    ENERGY_PER_BYTE: "J/B", AREA: "m^2", LENGTH: "m", AREA_PER_BYTE: "m^2/B", OPS_PER_SECOND: "OPS",
    POWER_DENSITY: "W/m^2",
}


def si_unit(dim: Dim) -> str:
    """The SI unit string of a dimension, so that f"{value!r} {si_unit(dim)}" parses back."""
    if dim not in _SI_UNITS:
        raise UnitError(f"no unit string for {describe(dim)}")
    return _SI_UNITS[dim]
