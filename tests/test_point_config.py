"""A sweep point's config from sections validated once per axis value
(``archsim.dse.point_config.PointConfigs``): the config validating the point in full gives, its
known sections the same objects, and a bad point's error the one validating it afresh gives."""

from __future__ import annotations

import pytest

from archsim.config import loader
from archsim.config.loader import load_layered, parse_overrides, validate_hardware
from archsim.dse.point_config import PointConfigs
from archsim.dse.spec import design
from archsim.errors import ConfigError

from conftest import HW

CIM = str(HW / "cim_tpu.yaml")
BASE = ("cim_tpu.yaml", ())


def base():
    return design(load_layered(CIM), [])


def sets(texts):
    return tuple((o.path, o.value) for o in parse_overrides(texts))


def validate(configs, texts):
    return configs.validate(BASE, base, sets(texts), lambda: parse_overrides(texts), CIM)


def afresh(texts):
    return validate_hardware(design(load_layered(CIM), parse_overrides(texts)), CIM)


POINTS = [
    ["mxu.count=2", "hbm.bandwidth=400 GB/s"],
    ["mxu.count=4", "hbm.bandwidth=400 GB/s"],
    ["mxu.count=2", "hbm.bandwidth=800 GB/s"],
    ["mxu.count=4", "hbm.bandwidth=800 GB/s", "cmem.capacity=256 MiB"],
    ["mxu.cim.grid=[16, 16]", "hbm.bandwidth=400 GB/s"],  # a list value, a section within a section
    ["mxu.cim.grid=[16, 16]", "hbm.bandwidth=800 GB/s"],
    ["clock=900 MHz", "mxu.count=2"],  # a value at the top level
    ["clock=1 GHz", "mxu.count=2"],
    ["hbm.bandwidth=400 GB/s", "hbm.bandwidth=800 GB/s"],  # the later value wins
    ["kind=tpu", "mxu.count=2"],  # the chip's kind: always in full
    ["compiler=null", "compiler.prefetch=0.5"],  # a value set inside one set at the top level: in full
    ["mxu.count=2", "hbm.bandwidth=400 GB/s"],  # the first again
]


def counting(monkeypatch):
    calls = []
    real = loader.validate_hardware

    def count(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr("archsim.dse.point_config.validate_hardware", count)
    return calls


def test_points_are_the_configs_validated_afresh(monkeypatch):
    configs = PointConfigs()
    calls = counting(monkeypatch)
    for _ in range(2):  # the second time round, every section is known
        for texts in POINTS:
            got = validate(configs, texts)
            assert got == afresh(texts)
            assert got.model_dump(mode="json") == afresh(texts).model_dump(mode="json")
    # in full: the points setting a value not seen before in its section (0-4; 8, its HBM's two
    # values in turn), 6 (the file's own HBM section, not yet seen unset), and the kind's and the
    # compiler's every time
    assert len(calls) == 7 + 2 * 2


def test_a_point_of_known_values_is_made_of_the_sections_seen(monkeypatch):
    configs = PointConfigs()
    first, second, third = (validate(configs, texts) for texts in POINTS[:3])
    calls = counting(monkeypatch)
    fourth = validate(configs, ["mxu.count=4", "hbm.bandwidth=800 GB/s"])  # its two values seen apart
    assert calls == []
    assert fourth.mxu is second.mxu and fourth.hbm is third.hbm and fourth.vpu is first.vpu
    assert (fourth.mxu.count, fourth.hbm.bandwidth) == (4, 800e9)


def test_a_value_of_another_type_is_another_section():
    """128.0 lanes is not the 128 lanes validated before (an integer field refuses it)."""
    configs = PointConfigs()
    validate(configs, ["vpu.lanes=128"])
    with pytest.raises(ConfigError, match="vpu.lanes: Input should be a valid integer"):
        validate(configs, ["vpu.lanes=128.0"])


@pytest.mark.parametrize("texts", [
    ["cmem.capacity=1 MiB", "vmem.capacity=16 MiB"],  # a check across sections, of known sections
    ["clock=fast"],  # a bad value at the top level
    ["hbm.bandwidth=fast"],  # a bad value in a section
    ["hbm.bandwdth=1 TB/s"],  # an unknown key
    ["hbm=1 TB/s"],  # a value replacing a section
])
def test_a_bad_point_reports_what_validating_it_afresh_reports(texts):
    configs = PointConfigs()
    for known in (["cmem.capacity=1 MiB", "vmem.capacity=1 MiB"], ["vmem.capacity=16 MiB"], []):
        validate(configs, known)  # the bad point's sections, each known and valid on its own
    with pytest.raises(ConfigError) as fresh:
        afresh(texts)
    with pytest.raises(ConfigError) as reused:
        validate(configs, texts)
    assert str(reused.value) == str(fresh.value)


@pytest.mark.parametrize("file, texts", [
    ("a100_80gb.yaml", [["hbm.bandwidth=1 TB/s"], ["hbm.bandwidth=2 TB/s"]]),  # a GPU: its kernel table has no model
    ("tpuv4i.yaml", [["compiler.prefetch=0.5"], ["compiler.prefetch=0.25"]]),  # a section the file lacks
])
def test_a_gpu_and_a_section_the_file_lacks_are_made_of_sections_seen(monkeypatch, file, texts):
    path = str(HW / file)
    configs = PointConfigs()

    def made(point):
        return configs.validate((file, ()), lambda: design(load_layered(path), []), sets(point),
                                lambda: parse_overrides(point), path)

    firsts = [made(point) for point in texts]
    calls = counting(monkeypatch)
    for point, first in zip(texts, firsts):
        again = made(point)
        assert again == first == validate_hardware(design(load_layered(path), parse_overrides(point)), path)
        assert again.hbm is first.hbm
    assert calls == []


def test_a_value_set_inside_one_set_at_the_top_level_is_validated_in_full():
    """TPUv3 has no CMEM: `cmem=null` then `cmem.capacity` makes a CMEM of that capacity alone,
    which is refused, whatever sections are known (not a chip without CMEM)."""
    path, texts = str(HW / "tpuv3.yaml"), ["cmem=null", "cmem.capacity=64 MiB"]
    configs = PointConfigs()

    def made(point):
        return configs.validate(("tpuv3.yaml", ()), lambda: design(load_layered(path), []), sets(point),
                                lambda: parse_overrides(point), path)

    made([])  # every section of the file known
    with pytest.raises(ConfigError) as fresh:
        validate_hardware(design(load_layered(path), parse_overrides(texts)), path)
    with pytest.raises(ConfigError) as reused:
        made(texts)
    assert str(reused.value) == str(fresh.value)


# values a sweep might set, alone or in order: good and bad, new and repeated, top-level and
# nested, sections the file lacks, a value set inside one set at the top level, other kinds
SETS = [("cmem=null", "cmem.capacity=64 MiB"), ("compiler=null", "compiler.prefetch=0.5"), ("cmem=null",),
        ("mxu.count=2",), ("mxu.count=4",), ("mxu.count=4.0",), ("hbm.bandwidth=400 GB/s",), ("hbm.bandwidth=800 GB/s",),
        ("cmem.capacity=64 MiB",), ("cmem.capacity=1 MiB",), ("vmem.capacity=16 MiB",), ("clock=1 GHz",),
        ("clock=fast",), ("compiler.prefetch=0.5",), ("system.chips=2",), ("static_power=5 W",), ("leakage=null",),
        ("kind=gpu",), ("hbm.bandwidth.x=1",), ("foo.bar=1",), ("tdp=null",), ("mxu.cim.grid=[16, 16]",),
        ("hbm=1 TB/s",), ("technology.node=7 nm",), ("compiler={prefetch: 0.5}",)]  # the last: a mapping at the top level


def test_random_points_are_what_validating_them_afresh_gives():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    def outcome(make):
        try:
            return "ok", make().model_dump_json()
        except ConfigError as exc:
            return "error", str(exc)

    point = st.lists(st.sampled_from(SETS), max_size=3).map(lambda sets_: [t for s in sets_ for t in s])

    @settings(max_examples=40, deadline=None)
    @given(st.sampled_from(["cim_tpu.yaml", "tpuv3.yaml", "a100_80gb.yaml"]), st.lists(point, min_size=1, max_size=8))
    def check(file, points):
        path, configs = str(HW / file), PointConfigs()
        for texts in [[]] + points + points:  # the file alone first: its sections known
            fresh = outcome(lambda: validate_hardware(design(load_layered(path), parse_overrides(texts)), path))
            assert outcome(lambda: configs.validate((file, ()), lambda: design(load_layered(path), []), sets(texts),
                                                    lambda: parse_overrides(texts), path)) == fresh

    check()
