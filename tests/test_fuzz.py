"""Fuzzed bad input: every malformed, mistyped, absurd or hostile config, workload or sweep ends
in one clear error and exit code 2 (or a documented limit, or an infeasible run with its
reason), never a traceback or a hang; and config files are data, never code.

- The corpus (``tests/data/fuzz/``, one file per case and ``cases.yaml`` mapping each to the
  command it runs and what it must print) runs through the real CLI entry point, in-process
  with a timeout, and a few cases in a fresh interpreter to prove exit codes end to end.
- Generators mutate the bundled configs and workloads (a leaf replaced by junk of every type,
  magnitude and unit, a key deleted, an unknown key inserted) and check that loading either
  succeeds, and then simulates to finite numbers, or raises archsim's own error, one line per
  problem naming the file.
- The YAML reader refuses every non-standard tag; the package's source calls no ``eval``,
  ``exec``, pickle or unsafe YAML loader; results are read without unpickling.
"""

from __future__ import annotations

import ast
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archsim import api
from archsim.cli import main
from archsim.config.loader import load_layered
from archsim.config.yamlio import read_yaml_text
from archsim.errors import ArchsimError, ConfigError
from tests.conftest import HW, ROOT, TPUV4I, WORKLOADS

CORPUS = ROOT / "tests" / "data" / "fuzz"
MANIFEST = yaml.safe_load((CORPUS / "cases.yaml").read_text())["cases"]
CASE_TIMEOUT_S = 20  # generous: every case takes well under a second


# ------------------------------------------------------------------ running the CLI in-process

class Hang(BaseException):
    """Raised by the alarm; a BaseException so that the CLI's catch-all cannot swallow it."""


@contextmanager
def deadline(seconds: float):
    def _raise(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_main(*args: str, timeout: float = CASE_TIMEOUT_S) -> tuple[int, str, str]:
    """``archsim ARGS`` through the console entry point (``archsim.cli.main``, which maps
    errors to exit codes), in this process: (exit code, stdout, stderr)."""
    runner = CliRunner()
    with runner.isolation() as streams:
        out, err = streams[0], streams[1]
        argv, sys.argv = sys.argv, ["archsim", *args]
        code = 0
        try:
            with deadline(timeout):
                main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = argv
        return code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace")


def _strict_json(text: str):
    """JSON with NaN and Infinity refused (Python's json accepts them by default)."""
    def refuse(name):
        raise AssertionError(f"non-finite number {name} in the output")

    return json.loads(text, parse_constant=refuse)


def _finite_numbers(data) -> None:
    if isinstance(data, float):
        assert math.isfinite(data), data
    elif isinstance(data, dict):
        for value in data.values():
            _finite_numbers(value)
    elif isinstance(data, list):
        for value in data:
            _finite_numbers(value)


def check_outcome(code: int, out: str, err: str, expected_exit: int, expect: list[str], names: str | None) -> None:
    assert "Traceback" not in out + err, err
    assert "internal error" not in err, err
    assert code == expected_exit, (code, out[-2000:], err[-2000:])
    if expected_exit == 2:
        lines = err.strip().splitlines()
        assert lines, "an error must say what is wrong"
        assert all(line.startswith("error: ") for line in lines), err
        assert len(err) < 5000, "an error is a few clear lines, not a dump"
        if names:
            assert names in err, f"the error should name {names}: {err}"
    shown = err if expected_exit == 2 else out
    for fragment in expect:
        assert fragment in shown, f"{fragment!r} not in:\n{shown[-3000:]}"
    if expected_exit in (0, 1) and out.lstrip().startswith(("{", "[")):
        _finite_numbers(_strict_json(out))


# ------------------------------------------------------------------ the corpus

def _generate(kind: str, folder: Path) -> Path:
    """The cases too big (or too many files) to keep in the corpus folder."""
    if kind == "long_line":
        path = folder / "long_line.yaml"
        path.write_text("# a 10 MB line\nname: " + "x" * 10_000_000 + "\n")
    elif kind == "many_values":
        path = folder / "many_values.yaml"
        path.write_text("name: x\nmxu: [" + ",".join(["1"] * 300_000) + "]\n")
    elif kind == "extends_chain":
        for i in range(40):
            (folder / f"chain{i}.yaml").write_text(f"extends: chain{i + 1}.yaml\n")
        (folder / "chain40.yaml").write_text(f"extends: {TPUV4I}\n")
        path = folder / "chain0.yaml"
    elif kind == "fifo":
        path = folder / "pipe.yaml"
        os.mkfifo(path)
    else:
        raise AssertionError(kind)
    return path


def _corpus_files() -> set[str]:
    return {p.name for p in CORPUS.iterdir()}


def test_manifest_covers_the_corpus():
    """Every case file is in the manifest (and exists), and begins with a comment."""
    listed = {c["file"] for c in MANIFEST if not c["file"].startswith("generated:")}
    helpers = {"extends_cycle_b.yaml", "wl_deep_model.json", "wl_list_model.json", "cases.yaml"}
    assert {c.get("names") for c in MANIFEST} <= helpers | listed | {None}
    assert listed | helpers == _corpus_files()
    for name in listed:
        assert (CORPUS / name).read_bytes().startswith(b"# "), name
    assert len(MANIFEST) >= 100


@pytest.mark.parametrize("case", MANIFEST, ids=lambda c: c["file"].removeprefix("generated:"))
def test_corpus_case(case, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    if case["file"].startswith("generated:"):
        path = _generate(case["file"].removeprefix("generated:"), tmp_path)
        names = path.name
    else:
        path = CORPUS / case["file"]
        names = None if case.get("known_issue") else case.get("names", case["file"])
    args = [a.replace("{file}", str(path)).replace("{out}", str(tmp_path / "out")) for a in case["args"]]
    code, out, err = run_main(*args)
    check_outcome(code, out, err, case["exit"], case["expect"], names)
    if args[0] == "sweep" and case["exit"] == 2:
        assert not list((tmp_path / "out").glob("parts/*.parquet")), "bad input fails before any work"


@pytest.mark.parametrize("name, args", [
    ("tag_python_object_apply.yaml", ["validate"]),
    ("yaml_billion_laughs.yaml", ["validate"]),
    ("sweep_huge_product.yaml", ["sweep", "--out", "{out}", "--executor", "serial", "--no-progress"]),
])
def test_real_cli_exit_codes(name, args, tmp_path):
    """In a fresh interpreter, as a user runs it: exit code 2, one clear line, no traceback,
    and nothing executed (the os.system payload would print 'pwned')."""
    args = [a.replace("{out}", str(tmp_path / "out")) for a in args]
    proc = subprocess.run([sys.executable, "-c", "from archsim.cli import main; main()", args[0],
                           str(CORPUS / name), *args[1:]], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "pwned" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {CORPUS / name}"), proc.stderr


# ------------------------------------------------------------------ generators: mutated bundled files

QUANTITY_UNITS = ["GB/s", "TB/s", "GB", "MiB", "B", "bit", "GHz", "Hz", "ns", "s", "pJ", "J", "W", "mm^2", "nm",
                  "pJ/bit", "mm^2/MiB", "TOPS", "foo", "GB/s/s", "Hz*s", "kHz^9", "MiHz", ""]
NUMBERS_AS_TEXT = ["0", "-0", "1", "-1", "0.5", "1e30", "1e-30", "1e40", "1e41", "1e-41", "1e308", "1e400",
                   "1e-400", "nan", "inf", "-inf", "9" * 35, "1e9999", ".5", "1.", "0x10", "1_000"]
MAGNITUDES = [0, 1, -1, 2, 3, 7, 8, 64, 100, 2**31, 2**31 + 1, 2**40, 2**40 + 1, 2**53 + 1, 2**63, 2**64,
              10**30, 10**400, -(2**63)]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(MAGNITUDES),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e30, -1e30, 1e-30, 1e300, 5e-324, 0.0, -0.0]),
    st.text(max_size=12),
    st.builds(lambda n, u: f"{n} {u}".strip(), st.sampled_from(NUMBERS_AS_TEXT), st.sampled_from(QUANTITY_UNITS)),
    st.sampled_from(["ws", "systolic", "cim", "ring", "torus2d", "llm", "dit", "XL", "heun", "reuse:period=0",
                     "icc:rank=0", "toca:attn=2", "speca", "none", "int8", "bf16", "fp32", "1 GHz", "7 nm"]),
)
junk = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=6), scalars, max_size=2))


def _paths(data, prefix=()) -> list[tuple]:
    """Every key path in ``data``, to sections, lists and leaves (list items by index)."""
    out = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        out.append(prefix + (key,))
        out += _paths(value, prefix + (key,))
    return out


def _container(data, path):
    for key in path[:-1]:
        data = data[key]
    return data


@st.composite
def mutations(draw, base: dict):
    """``base`` with one to three mutations; the key paths mutated, for the error check."""
    data = json.loads(json.dumps(base))  # a deep copy of plain data
    touched = []
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "insert"]))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _container(data, path)
        if action == "replace":
            parent[path[-1]] = draw(junk)
        elif action == "delete":
            del parent[path[-1]]
        else:
            target = _container(data, path + ("",))
            if not isinstance(target, dict):
                continue
            key = draw(st.sampled_from(["lanez", "count ", "Clock", "bandwith", "extra", "kind2", "1", "sweep2"]))
            target[key] = draw(junk)
            path = path + (key,)
        touched.append(tuple(str(p) for p in path))
    return data, touched


def _bundled(folder: Path, pattern: str) -> dict[str, dict]:
    """Bundled files as merged data (``extends:`` resolved), relative file paths made absolute
    so that a copy elsewhere reads the same model configs and traces."""
    out = {}
    for path in sorted(folder.glob(pattern)):
        layered = load_layered(path)
        data = json.loads(json.dumps(layered.data, default=str))
        for key in ("model", "trace"):
            if isinstance(data.get(key), str):
                data[key] = str(layered.directory_of((key,)) / data[key])
        if isinstance(data.get("model"), dict) and isinstance(data["model"].get("from"), str):
            data["model"]["from"] = str(layered.directory_of(("model", "from")) / data["model"]["from"])
        out[path.name] = data
    return out


HARDWARE = _bundled(HW, "*.yaml") | {f"systems/{k}": v for k, v in _bundled(HW / "systems", "*.yaml").items()}
WORKLOAD_FILES = _bundled(WORKLOADS, "*.yaml")
SMALL_WORKLOAD = api.load_workload(WORKLOADS / "gpt3_30b_layer_decode.yaml")


def _check_error(exc: ArchsimError, path: Path, touched: list[tuple], keys=(), other_files: tuple[str, ...] = ()) -> None:
    """One line per problem, each naming the file (or a file it reads) and then a key."""
    text = str(exc)
    assert "Traceback" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= 21, text
    for line in lines:
        assert line.startswith((str(path), *other_files)), line
    if isinstance(exc, ConfigError) and touched and (exc.key or not exc.file):
        # a key's error names a key: one that was mutated, or one a cross-field check blames
        words = {part for path_ in touched for part in path_} | set(keys)
        assert any(f": {word}" in text or f".{word}" in text for word in words if word), (touched, text)


def _write(data: dict, folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def _simulate_finite(hw) -> None:
    """Simulate a small workload: a clear error (a dtype the chip lacks), an infeasible run,
    or finite numbers."""
    try:
        result = api.simulate(hw, SMALL_WORKLOAD)
    except ArchsimError as exc:
        assert len(str(exc).splitlines()) == 1 and "Traceback" not in str(exc), str(exc)
        return
    summary = result.summary()
    if result.feasible:
        _finite_numbers(json.loads(json.dumps(summary)))
        assert result.latency_s > 0


@settings(max_examples=120, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(sorted(HARDWARE)).flatmap(lambda name: st.tuples(st.just(name), mutations(HARDWARE[name]))))
def test_mutated_hardware_loads_or_fails_clearly(case):
    name, (data, touched) = case
    with tempfile.TemporaryDirectory() as folder:
        path = _write(data, Path(folder), "mutated.yaml")
        try:
            with deadline(CASE_TIMEOUT_S):
                hw = api.load_hardware(path)
        except ArchsimError as exc:
            _check_error(exc, path, touched, {str(p[-1]) for p in _paths(data)})
            return
        with deadline(CASE_TIMEOUT_S):
            _simulate_finite(hw)


@settings(max_examples=120, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(sorted(WORKLOAD_FILES)).flatmap(
    lambda name: st.tuples(st.just(name), mutations(WORKLOAD_FILES[name]))))
def test_mutated_workloads_load_or_fail_clearly(case):
    name, (data, touched) = case
    with tempfile.TemporaryDirectory() as folder:
        path = _write(data, Path(folder), "mutated.yaml")
        try:
            with deadline(CASE_TIMEOUT_S):
                workload = api.load_workload(path)
        except ArchsimError as exc:
            # a model config or trace the workload reads may be the file at fault
            _check_error(exc, path, touched, {str(p[-1]) for p in _paths(data)}, other_files=(str(WORKLOADS),))
            return
        assert workload.phases and workload.macs >= 0


@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutations(HARDWARE["tpuv4i.yaml"]))
def test_mutated_config_through_the_cli(case):
    """The CLI's view of the same: exit 0, or exit 2 with 'error: FILE: ...' lines."""
    data, _ = case
    with tempfile.TemporaryDirectory() as folder:
        path = _write(data, Path(folder), "mutated.yaml")
        code, out, err = run_main("validate", str(path), "--json")
    assert code in (0, 2), (code, err)
    assert "Traceback" not in out + err
    if code == 2:
        assert all(line.startswith(f"error: {path}") for line in err.strip().splitlines()), err
    else:
        _finite_numbers(_strict_json(out))


@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["mxu.count", "hbm.bandwidth", "clock", "vmem.capacity", "system.chips", "mxu.rows",
                        "technology.node", "vpu.lanes", "hbm.latency", "static_power"]), junk)
def test_junk_overrides(key, value):
    """``--set KEY=VALUE`` with junk: the same clear errors, naming the option."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
    try:
        hw = api.load_hardware(TPUV4I, [f"{key}={text}"])
    except ArchsimError as exc:
        assert all(line.startswith(("--set ", str(TPUV4I))) for line in str(exc).splitlines()), str(exc)
        return
    _simulate_finite(hw)


# ------------------------------------------------------------------ config is data, never code

NON_STANDARD_TAGS = [
    "!!python/object:os.system", "!!python/object/apply:os.system", "!!python/object/new:os.system",
    "!!python/name:os.system", "!!python/module:os", "!!python/tuple", "!!python/str", "!!python/bytes",
    "!!python/none", "!!python/list", "!!python/dict", "!!binary", "!!set", "!!omap", "!!pairs", "!!timestamp",
    "!!value", "!custom", "!include", "!ENV", "!<tag:example.com,2000:app/foo>", "!<!bar>", "!",
]


@pytest.mark.parametrize("tag", NON_STANDARD_TAGS)
@pytest.mark.parametrize("node", ["{tag} x", "{tag} [1, 2]", "{tag} {{a: 1}}", "\n  - {tag} x"])
def test_yaml_rejects_every_non_standard_tag(tag, node):
    text = "name: " + node.format(tag=tag) + "\n"
    with pytest.raises(ConfigError, match="is not allowed: config files are data"):
        read_yaml_text(text, "t.yaml")


def test_standard_tags_and_plain_values_still_read():
    data = read_yaml_text("a: !!str 1\nb: !!int 2\nc: !!float 3\nd: !!bool true\ne: !!null ~\nf: !!seq [1]\n"
                          "g: !!map {x: 1}\nh: 2024-01-01\ni: =\nj: &k {y: 2}\nk: {<<: *k, z: 3}\n", "t.yaml")
    assert data == {"a": "1", "b": 2, "c": 3.0, "d": True, "e": None, "f": [1], "g": {"x": 1},
                    "h": "2024-01-01", "i": "=", "j": {"y": 2}, "k": {"y": 2, "z": 3}}


def test_overrides_and_schedules_are_data_too():
    for bad in ["name=!!python/name:os.system", "name=!!python/object/apply:os.getcwd []"]:
        with pytest.raises(ConfigError, match="is not allowed"):
            api.load_hardware(TPUV4I, [bad])
    with pytest.raises(ConfigError, match="is not allowed"):
        api.load_workload(WORKLOADS / "dit_xl_2.yaml", ["schedule=reuse:period=!!python/name:os.getpid"])


# Builtins that run text as code.
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__", "execfile"}
# Modules whose loaders run code from the data they read.
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "runpy"}
# Methods that do, whatever they are called on: pandas' pickles, importlib, PyYAML's unsafe loaders.
FORBIDDEN_METHODS = {"read_pickle", "to_pickle", "import_module", "unsafe_load", "unsafe_load_all", "full_load",
                     "full_load_all", "load_all"}
# PyYAML's load is safe only with the strict safe loader.
YAML_LOADERS = {"_StrictLoader"}


def _source_files() -> list[Path]:
    return sorted((ROOT / "archsim").rglob("*.py"))


def forbidden_uses(source: str, name: str = "<source>") -> list[str]:
    """Where ``source`` runs data as code or unpickles it."""
    problems = []
    tree = ast.parse(source, name)
    yaml_names = {"yaml"} | {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                             for a in n.names if a.name == "yaml"}
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            problems += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in FORBIDDEN_MODULES:
                problems.append(f"{where}: from {module} import ...")
            if module.split(".")[0] == "yaml" and any(a.name in ("load", "Loader", "UnsafeLoader", "FullLoader",
                                                                   "unsafe_load", "full_load") for a in node.names):
                problems.append(f"{where}: from yaml import an unsafe loader")
            problems += [f"{where}: import {a.name}" for a in node.names
                         if a.name in FORBIDDEN_BUILTINS | FORBIDDEN_METHODS]
        elif isinstance(node, ast.Call):
            func = node.func
            keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS:
                problems.append(f"{where}: {func.id}()")
            if isinstance(func, ast.Attribute):
                owner = ast.unparse(func.value)
                if func.attr in FORBIDDEN_METHODS:
                    problems.append(f"{where}: {owner}.{func.attr}()")
                if owner in yaml_names and func.attr == "load" and keywords.get("Loader") not in YAML_LOADERS:
                    problems.append(f"{where}: yaml.load(Loader={keywords.get('Loader')})")
                if keywords.get("allow_pickle") not in (None, "False"):
                    problems.append(f"{where}: {owner}.{func.attr}(allow_pickle=...)")
        elif isinstance(node, ast.Attribute) and ast.unparse(node.value) in yaml_names and node.attr in (
                "Loader", "UnsafeLoader", "FullLoader", "unsafe_load", "full_load"):
            problems.append(f"{where}: yaml.{node.attr}")
    return problems


def test_package_never_evaluates_or_unpickles():
    """No eval/exec/compile, no pickle/marshal/shelve/joblib, no unsafe YAML loader, no
    read_pickle or import_module, in any module of the package: configs, workloads and results
    are data. (Only the package is scanned: this test builds a pickle on purpose.)"""
    problems = [p for path in _source_files() for p in forbidden_uses(path.read_text(), str(path.relative_to(ROOT)))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source", [
    "eval(text)", "exec(text)", "compile(text, 'f', 'exec')", "__import__(name)", "import pickle",
    "from pickle import loads", "import marshal", "import shelve", "import joblib", "import dill",
    "import cloudpickle", "yaml.load(text)", "yaml.load(text, Loader=yaml.Loader)", "yaml.unsafe_load(text)",
    "yaml.full_load(text)", "yaml.load_all(text)", "import yaml as y\ny.load(t, Loader=y.UnsafeLoader)",
    "pd.read_pickle(path)", "frame.to_pickle(path)", "importlib.import_module(name)", "np.load(p, allow_pickle=True)",
    "from yaml import load",
])
def test_the_scan_finds_each_forbidden_use(source):
    assert forbidden_uses(source), source


def test_the_scan_allows_safe_uses():
    assert not forbidden_uses("yaml.load(t, Loader=_StrictLoader)\nyaml.safe_dump(d)\nre.compile('x')\n"
                              "json.loads(t)\npd.read_parquet(p)\nnp.load(p)\nload(s)\nyaml.parse(t, Loader=_Base)")


def test_the_yaml_loader_is_safe():
    from archsim.config import yamlio

    assert issubclass(yamlio._StrictLoader, (yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    constructors = set(yamlio._StrictLoader.yaml_constructors) | set(yamlio._StrictLoader.yaml_multi_constructors)
    assert not [c for c in constructors if c and "python" in c]


def test_results_are_read_without_unpickling(tmp_path):
    """A Parquet file whose column claims the legacy pickled extension type (the payload of
    CVE-2023-47248) is read, or refused, without running the payload."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from archsim.dse.results_file import load_results

    version = tuple(int(p) for p in pa.__version__.split(".")[:3] if p.isdigit())
    assert version >= (14, 0, 1), "pyarrow before 14.0.1 unpickles extension types from files"
    marker = tmp_path / "pwned"

    class Payload:
        def __init__(self, target: Path):
            self.target = target

        def __reduce__(self):
            return (Path.touch, (self.target,))

    import pickle  # only here: to build the hostile file

    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Payload(probe)))
    assert probe.exists(), "the payload works when unpickled"
    field = pa.field("x", pa.int64(), metadata={b"ARROW:extension:name": b"arrow.py_extension_type",
                                                b"ARROW:extension:metadata": pickle.dumps(Payload(marker))})
    table = pa.Table.from_arrays([pa.array([1, 2])], schema=pa.schema([field]))
    (tmp_path / "out").mkdir()
    pq.write_table(table, tmp_path / "out" / "results.parquet")
    try:
        load_results(tmp_path / "out")
    except (ArchsimError, Exception):  # refusing the file is fine; running the payload is not
        pass
    assert not marker.exists()


def test_readme_documents_the_limits():
    from archsim.config import loader, sweep, yamlio
    from archsim.config.fields import MAX_COUNT, MAX_MAGNITUDE, MIN_MAGNITUDE
    from archsim.workloads import base, dit, dllm

    readme = (ROOT / "README.md").read_text()
    limits = readme[readme.index("**Limits**"):][:1200]
    assert (yamlio.MAX_YAML_BYTES, MAX_COUNT, base.MAX_TENSOR_ELEMENTS) == (2**20, 2**40, 2**50)
    for shown in ("1 MiB", "2^40", "2^50", f"{yamlio.MAX_YAML_NODES:,} values", f"{yamlio.MAX_YAML_DEPTH} levels",
                  f"{loader.MAX_EXTENDS_DEPTH} files", f"{MIN_MAGNITUDE:g} to {MAX_MAGNITUDE:g}",
                  f"{sweep.MAX_SWEEP_POINTS:,} points", f"{sweep.MAX_RANGE_STEPS:,} steps",
                  f"{dit.MAX_FORWARDS:,} network", f"{dllm.MAX_TRACE_ROWS:,} rows", f"{dllm.MAX_FORWARD_SHAPES:,} distinct"):
        assert shown in limits, shown
