"""Validation once per distinct config section (``archsim.config.loader.SectionReuse``): a sweep's
points validated with the sections of earlier points reused are the configs validated afresh,
and a bad point's error is the one validating it afresh gives."""

from __future__ import annotations

import pytest

from archsim.config.loader import SectionReuse, load_layered, parse_overrides, validate_hardware
from archsim.dse.spec import design
from archsim.errors import ConfigError

from conftest import HW

CIM = str(HW / "cim_tpu.yaml")
POINTS = [
    ["mxu.count=2", "hbm.bandwidth=400 GB/s"],
    ["mxu.count=4", "hbm.bandwidth=400 GB/s"],
    ["mxu.count=4", "hbm.bandwidth=800 GB/s", "vmem.capacity=8 MiB"],
    ["mxu.cim.grid=[16, 16]", "cmem.capacity=256 MiB"],
    ["mxu.count=2", "hbm.bandwidth=400 GB/s"],  # the first again: every section known
]


def point(texts):
    return design(load_layered(CIM), parse_overrides(texts))


def test_reused_sections_give_the_config_validated_afresh():
    reuse = SectionReuse()
    for texts in POINTS:
        fresh = validate_hardware(point(texts), CIM)
        reused = validate_hardware(point(texts), CIM, reuse)
        assert reused == fresh
        assert reused.model_dump(mode="json") == fresh.model_dump(mode="json")


def test_a_section_seen_before_is_the_same_object():
    reuse = SectionReuse()
    first = validate_hardware(point(POINTS[0]), CIM, reuse)
    second = validate_hardware(point(POINTS[1]), CIM, reuse)  # another MXU count, the same HBM
    assert second.hbm is first.hbm and second.vpu is first.vpu
    assert second.mxu is not first.mxu and second.mxu.count == 4
    third = validate_hardware(point(POINTS[2]), CIM, reuse)
    assert third.hbm is not first.hbm and third.hbm.bandwidth == 800e9


def test_a_section_alike_but_for_a_value_s_type_is_another_section():
    """A section is known by its raw text: 128.0 lanes is not the 128 lanes validated before
    (an integer field refuses it), so it is validated, and refused, on its own."""
    reuse = SectionReuse()
    validate_hardware(point(["vpu.lanes=128"]), CIM, reuse)
    with pytest.raises(ConfigError, match="vpu.lanes: Input should be a valid integer"):
        validate_hardware(point(["vpu.lanes=128.0"]), CIM, reuse)


@pytest.mark.parametrize("texts", [
    ["cmem.capacity=1 MiB", "vmem.capacity=16 MiB"],  # a check across sections (CMEM backs VMEM)
    ["hbm.bandwidth=fast"],  # a bad value in a section
    ["hbm.bandwdth=1 TB/s"],  # an unknown key
])
def test_a_bad_point_reports_what_validating_it_afresh_reports(texts):
    reuse = SectionReuse()
    validate_hardware(point([]), CIM, reuse)  # every section of the file known
    with pytest.raises(ConfigError) as fresh:
        validate_hardware(point(texts), CIM)
    with pytest.raises(ConfigError) as reused:
        validate_hardware(point(texts), CIM, reuse)
    assert str(reused.value) == str(fresh.value)


def _configs():
    from archsim.api import load_hardware

    files = sorted(HW.glob("*.yaml")) + sorted((HW / "systems").glob("*.yaml"))
    reuse = SectionReuse()
    points = [validate_hardware(point(texts), CIM, reuse) for texts in POINTS]
    return [load_hardware(f) for f in files] + points


def test_texts_made_from_sections_equal_the_whole_dumps():
    """config.dumps: a design's hash and its cost fingerprint, made from its sections' texts,
    are those of the whole dump, on every bundled config (TPUs, GPUs, systems) and sweep points."""
    import hashlib
    import json

    from archsim.dse.evaluate import config_hash
    from archsim.dse.spec import digest
    from archsim.sim.fingerprint import CostFingerprint

    for hw in _configs():
        assert config_hash(hw) == digest(hw.model_dump(mode="json", exclude={"sweep", "explore"}))[:16]
        assert config_hash(hw) == hashlib.sha256(json.dumps(hw.model_dump(mode="json", exclude={"sweep", "explore"}),
                                                            sort_keys=True, default=str).encode()).hexdigest()[:16]
        if hw.kind != "tpu":
            continue
        whole = hw.model_dump(exclude={"name": True, "description": True, "sweep": True, "explore": True, "tdp": True,
                                       "periphery_area": True, "cmem": {"capacity"}, "hbm": {"capacity"}})
        fingerprint = CostFingerprint.of(hw)
        assert fingerprint.outer == {lv: repr(whole.pop(name)) for name, lv in CostFingerprint._OUTER.items()}
        assert fingerprint.core == repr(whole)


def test_sections_a_point_shares_with_its_file_are_known_by_identity():
    """A sweep's points are copies of one loaded file: the sections an override did not touch
    are the file's own objects, found by identity (no text made); the others by their text."""
    base = load_layered(CIM)
    reuse = SectionReuse()
    for texts in POINTS:
        reused = validate_hardware(design(base, parse_overrides(texts)), CIM, reuse)
        assert reused == validate_hardware(point(texts), CIM)
    held = [raw for raw, _ in reuse._same._items.values()]
    assert any(raw is base.data["vpu"] for raw in held)  # untouched by every point
    assert not any(raw is base.data["mxu"] for raw in held)  # every point sets one of its keys


def test_an_override_keeps_the_sources_of_the_keys_it_does_not_replace():
    base = load_layered(CIM)
    layered = design(base, parse_overrides(["hbm.bandwidth=1 TB/s"]))
    assert layered.source_of(("hbm", "bandwidth"), "") == "--set hbm.bandwidth=1 TB/s"
    assert layered.source_of(("hbm", "capacity"), "") == base.source_of(("hbm", "capacity"), "") != ""
    # a section replaced whole: the keys it held are the override's now
    replaced = design(base, parse_overrides(["hbm={bandwidth: 1 TB/s}"]))
    assert replaced.source_of(("hbm", "capacity"), "") == "--set hbm={bandwidth: 1 TB/s}"


def test_a_field_s_text_is_kept_by_its_value_and_type():
    """config.dumps keeps a field's text by its value: values equal as keys but dumped apart
    (1, 1.0 and True; 0.0 and -0.0) keep texts of their own, and an unhashable value (a list)
    is dumped afresh. Each text is the whole dump's, in either order of use."""
    import json

    from pydantic import BaseModel

    from archsim.config.dumps import dump_text

    class Scalars(BaseModel):
        value: bool | int | float | list[int] | None

    values = [1, 1.0, True, 0.0, -0.0, [1, 2], [1, 2, 3], None, float("nan"), 1, -0.0, True]
    for order in (values, values[::-1]):
        for value in order:
            model = Scalars(value=value)
            assert dump_text(model, False) == repr(model.model_dump())
            assert dump_text(model, True) == json.dumps(model.model_dump(mode="json"), sort_keys=True, default=str)
