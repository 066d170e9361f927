from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archsim import units
from archsim.errors import UnitError


@pytest.mark.parametrize(
    "text, expected, dim",
    [
        ("614 GB/s", 614e9, units.BANDWIDTH),
        ("1.2 TB/s", 1.2e12, units.BANDWIDTH),
        ("16 MiB", 16 * 2**20, units.SIZE),
        ("8 GiB", 8 * 2**30, units.SIZE),
        ("1.05 GHz", 1.05e9, units.FREQUENCY),
        ("0.21 pJ", 0.21e-12, units.ENERGY),
        ("3.9 pJ/bit", 3.9e-12 * 8, units.ENERGY_PER_BYTE),
        ("100 ns", 1e-7, units.TIME),
        ("400 mm^2", 4e-4, units.AREA),
        ("175 W", 175.0, units.POWER),
        ("7 nm", 7e-9, units.LENGTH),
        ("138 TOPS", 138e12, units.OPS_PER_SECOND),
        ("2048B/s", 2048.0, units.BANDWIDTH),
    ],
)
def test_parses_to_si(text, expected, dim):
    assert units.parse_quantity(text, dim) == expected


def test_conversion_is_exact():
    # exact rational arithmetic, rounded once: no float noise
    assert units.parse_quantity("100 ns", units.TIME) == 1e-7
    assert units.parse_quantity_exact("1.05 GHz")[0] == Fraction(1_050_000_000)
    assert units.parse_quantity("16 MiB", units.SIZE) == 16777216.0


@pytest.mark.parametrize(
    "value, expected, message",
    [
        ("614 GB", units.BANDWIDTH, "is a size"),
        ("614 GHz", units.BANDWIDTH, "is a frequency"),
        ("614", units.BANDWIDTH, "has no unit"),
        (614, units.BANDWIDTH, "has no unit"),
        ("5 furlongs", units.SIZE, "unknown unit"),
        ("GB", units.SIZE, "not a number"),
        (True, units.SIZE, "boolean"),
        ([1, 2], units.SIZE, "as a string"),
        ("1 MiHz", units.FREQUENCY, "unknown unit"),  # binary prefixes only for information
    ],
)
def test_rejects_wrong_or_missing_units(value, expected, message):
    with pytest.raises(UnitError, match=message):
        units.parse_quantity(value, expected)


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["", "k", "M", "G", "T"]))
def test_si_prefix_scaling(number, prefix):
    scale = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[prefix]
    assert units.parse_quantity(f"{number} {prefix}B/s", units.BANDWIDTH) == float(number * scale)


def test_format_roundtrip():
    assert units.format_quantity(128 * 2**20, units.SIZE) == "128 MiB"
    assert units.format_quantity(614e9, units.BANDWIDTH) == "614 GB/s"
