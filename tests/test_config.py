"""Hardware configs: units, validation, inheritance, overrides and error reporting."""

import json
import textwrap

import pytest

from archsim.api import load_hardware
from archsim.errors import ConfigError
from tests.conftest import HW, TPUV4I, run_cli


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_tpuv4i_matches_reference(tpuv4i):
    # docs/sources/papers.md#tpuv4i-chip: 4 x 128x128 MXUs at 1.05 GHz = 138 TOPS; VMEM 16 MiB,
    # CMEM 128 MiB, HBM 8 GiB at 614 GB/s.
    assert tpuv4i.clock == 1.05e9
    assert tpuv4i.mxu.count == 4 and tpuv4i.mxu.rows == tpuv4i.mxu.cols == 128
    # 4 x 16384 MACs x 2 ops x 1.05 GHz = 137.6 TOPS, which the paper rounds to 138
    assert 2 * tpuv4i.peak_macs_per_second("int8") == 4 * 16384 * 2 * 1.05e9
    assert 2 * tpuv4i.peak_macs_per_second("bf16") == pytest.approx(138e12, rel=0.003)
    assert tpuv4i.vmem.capacity == 16 * 2**20
    assert tpuv4i.cmem.capacity == 128 * 2**20
    assert tpuv4i.hbm.capacity == 8 * 2**30
    assert tpuv4i.hbm.bandwidth == 614e9


@pytest.mark.parametrize("path", sorted(TPUV4I.parent.glob("*.yaml")), ids=lambda p: p.name)
def test_every_bundled_figure_is_commented(path):
    """Every value line of a bundled config carries a source or an ASSUMPTION note: on the
    line, or in a comment block above a run of uncommented values at the same indentation."""
    assert_every_value_commented(path)


def assert_every_value_commented(path, labels=("name", "description", "kind", "extends", "sweep", "baseline",
                                               "objectives")):
    """Each value line (not a key in ``labels``) has a comment on it or above its run of values."""
    lines = path.read_text().splitlines()

    def is_value(line):
        stripped = line.strip()
        if stripped.startswith("- ") and stripped.endswith((".yaml", ".json")):
            return False  # a file reference, not a figure
        return bool(stripped) and not stripped.startswith("#") and not stripped.endswith(":")

    for i, line in enumerate(lines):
        if not is_value(line) or line.strip().split(":")[0] in labels:
            continue
        indent = len(line) - len(line.lstrip())
        j = i
        while j > 0 and "#" not in lines[j] and is_value(lines[j - 1]) and \
                len(lines[j - 1]) - len(lines[j - 1].lstrip()) == indent:
            j -= 1
        cited = "#" in lines[j] or (j > 0 and lines[j - 1].strip().startswith("#"))
        assert cited, f"uncited value: {line!r}"


def test_extends_inherits_and_overrides(tmp_path):
    child = write(tmp_path, "big.yaml", f"""
        extends: {TPUV4I}
        name: TPUv4i-8mxu
        mxu:
          count: 8
        hbm:
          bandwidth: 1.2 TB/s
    """)
    hw = load_hardware(child)
    assert hw.name == "TPUv4i-8mxu" and hw.mxu.count == 8 and hw.hbm.bandwidth == 1.2e12
    assert hw.mxu.rows == 128 and hw.hbm.capacity == 8 * 2**30  # inherited


def test_set_overrides(tpuv4i):
    hw = load_hardware(TPUV4I, ["mxu.count=8", "hbm.bandwidth=1.2 TB/s", "mxu.fold_model=scalesim"])
    assert (hw.mxu.count, hw.hbm.bandwidth, hw.mxu.fold_model) == (8, 1.2e12, "scalesim")


def test_cyclic_extends(tmp_path):
    write(tmp_path, "a.yaml", "extends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cyclic 'extends'"):
        load_hardware(tmp_path / "a.yaml")


def test_error_names_the_file_that_set_the_key(tmp_path):
    child = write(tmp_path, "child.yaml", f"extends: {TPUV4I}\nhbm:\n  bandwidth: 614\n")
    with pytest.raises(ConfigError) as info:
        load_hardware(child)
    assert str(info.value).startswith(f"{child}: hbm.bandwidth: ")
    assert "has no unit" in str(info.value)


def test_override_error_names_the_option():
    with pytest.raises(ConfigError, match=r"--set mxu.cuont=8: mxu.cuont: unknown key; expected one of: .*count"):
        load_hardware(TPUV4I, ["mxu.cuont=8"])


# One clear line naming file and key, exit code 2, no traceback (the list of bad configs).
BAD_CONFIGS = {
    "unknown key": ("vpu:\n  lanez: 4\n", "vpu.lanez: unknown key"),
    "missing unit": ("hbm:\n  bandwidth: '614'\n", "hbm.bandwidth: '614' has no unit"),
    "negative size": ("vmem:\n  capacity: -16 MiB\n", "vmem.capacity: must be a positive"),
    "wrong type": ("mxu:\n  count: many\n", "mxu.count: Input should be a valid integer"),
    "wrong dimension": ("clock: 1.05 GB\n", "clock: '1.05 GB' is a size"),
    "bad dataflow": ("mxu:\n  dataflow: diagonal\n", "mxu.dataflow: Input should be 'ws', 'os' or 'is'"),
    "duplicate key": ("clock: 1 GHz\nclock: 2 GHz\n", "duplicate key 'clock'"),
    "yaml syntax": ("mxu: [1, 2\n", "YAML syntax error"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_gives_one_clear_line(tmp_path, case):
    body, expected = BAD_CONFIGS[case]
    path = write(tmp_path, "bad.yaml", f"extends: {TPUV4I}\n" + body)
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and expected in lines[0], lines[0]


def test_missing_file_and_missing_key(tmp_path):
    proc = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "nope.yaml: file not found" in proc.stderr
    path = write(tmp_path, "partial.yaml", "name: x\nclock: 1 GHz\n")
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{path}: mxu: required key is missing" in proc.stderr


def test_validate_prints_normalised_si_config():
    proc = run_cli("validate", str(TPUV4I), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)[str(TPUV4I)]
    assert data["hbm"]["bandwidth"] == 614e9 and data["clock"] == 1.05e9
    assert data["vmem"]["capacity"] == 16777216.0


def test_a_layered_copy_shares_nothing_it_writes():
    """Copies share sections until they write (a sweep copies its file per point): neither
    overrides nor merges into a copy reach the original, and the original's later writes do
    not reach the copy."""
    import copy as copy_module

    from archsim.config.loader import load_layered, parse_overrides

    base = load_layered(HW / "cim_tpu.yaml")
    snapshot = copy_module.deepcopy(base.data)
    child = base.copy(parse_overrides(["mxu.cim.grid=[4, 4]", "hbm.bandwidth=1 TB/s", "ici.links=4"]))
    child.merge({"vmem": {"capacity": "1 MiB"}, "mxu": {"cim": {"core_rows": 64}}}, "test")
    assert base.data == snapshot
    base.set(parse_overrides(["cmem.capacity=1 GiB"])[0])
    assert child.data["cmem"]["capacity"] == snapshot["cmem"]["capacity"]
    assert (child.data["mxu"]["cim"]["grid"], child.data["mxu"]["cim"]["core_rows"], child.data["vmem"]["capacity"]) == \
        ([4, 4], 64, "1 MiB")
