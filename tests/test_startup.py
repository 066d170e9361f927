"""Start-up: what ``archsim --help`` and ``archsim run`` import, each in a fresh interpreter
(sys.modules at exit), and Ctrl-C while a command loads its modules. No wall-time
assertions (shared machines): bench/run.py times ``archsim --help`` (``cli_help_wall_s``)
and each ``archsim run``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HW = "hw_configs/tpuv4i.yaml"
SMALL = "workloads/dit_xl_2_block_512.yaml"  # one DiT block: simulated in milliseconds

HEAVY = ("networkx", "pandas", "matplotlib", "scipy", "plotly", "pyarrow", "dask")
SIMULATION = ("numpy", "pydantic", "archsim.api")  # what a command needs, never --help


def _modules_at_exit(tmp_path: Path, code: str, *argv: str) -> tuple[set[str], subprocess.CompletedProcess]:
    """Run ``code`` in a fresh interpreter with ``argv``; the top-level and archsim modules
    loaded when it ends (an atexit hook writes them, whatever exit code the CLI gives)."""
    out = tmp_path / "modules.json"
    hook = ("import atexit, json, sys\n"
            f"atexit.register(lambda: open({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n")
    proc = subprocess.run([sys.executable, "-c", hook + code, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert out.exists(), proc.stderr
    names = json.loads(out.read_text())
    return {n for n in names if "." not in n} | {n for n in names if n.startswith("archsim.")}, proc


def _cli(tmp_path: Path, *args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    return _modules_at_exit(tmp_path, "from archsim.cli import main\nmain()\n", *args)


def test_importing_the_cli_loads_no_heavy_library(tmp_path):
    modules, proc = _modules_at_exit(tmp_path, "import archsim.cli\n")
    assert proc.returncode == 0, proc.stderr
    assert not modules & {*HEAVY, *SIMULATION}, sorted(modules & {*HEAVY, *SIMULATION})


def test_help_loads_no_simulation_module(tmp_path):
    modules, proc = _cli(tmp_path, "--help")
    assert proc.returncode == 0 and "Usage: " in proc.stdout, proc.stderr
    for command in ("run", "sweep", "calibrate", "sensitivity"):
        assert f"  {command} " in proc.stdout, proc.stdout
    assert not modules & {*HEAVY, *SIMULATION}, sorted(modules & {*HEAVY, *SIMULATION})


def test_a_commands_help_loads_no_simulation_module(tmp_path):
    modules, proc = _cli(tmp_path, "run", "--help")
    assert proc.returncode == 0 and "--dispatch" in proc.stdout, proc.stderr
    assert not modules & {*HEAVY, *SIMULATION}, sorted(modules & {*HEAVY, *SIMULATION})


def test_run_loads_no_dataframe_plotting_or_graph_library(tmp_path):
    modules, proc = _cli(tmp_path, "run", HW, SMALL)
    assert proc.returncode == 0 and "latency" in proc.stdout, proc.stderr
    assert {"numpy", "pydantic", "archsim.api"} <= modules  # it did simulate
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_run_json_loads_no_dataframe_plotting_or_graph_library(tmp_path):
    modules, proc = _cli(tmp_path, "run", HW, SMALL, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["feasible"], proc.stderr
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_a_pipelined_system_splits_its_layers_without_networkx(tmp_path):
    """Pipeline stages split a layer stack by the ops depending on it (OpGraph.descendants)."""
    code = ("from archsim import api\n"
            "from archsim.system.pipeline import split_pipeline, stack_depth\n"
            "hw = api.load_hardware('hw_configs/systems/tpuv4i_x4_pipeline.yaml')\n"
            "workload = api.load_workload('workloads/gpt3_30b.yaml', hw=hw)\n"
            "split = split_pipeline(workload, 4, lambda op, phase: 1.0)\n"
            "assert len(split.layers) == 4 and sum(split.layers) == stack_depth(workload) > 4, split.layers\n"
            "api.simulate(hw, workload)\n")
    modules, proc = _modules_at_exit(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    assert "archsim.system.pipeline" in modules
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def _interrupt_at_import(module: str) -> str:
    """archsim's entry point, sending itself SIGINT when ``module`` is first imported (Ctrl-C
    while the command loads what it runs)."""
    return ("import os, signal, sys\n"
            "fired = []\n"
            "def hook(event, args):\n"
            f"    if event == 'import' and args[0] == {module!r} and not fired:\n"
            "        fired.append(1)\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "sys.addaudithook(hook)\n"
            "from archsim.cli import main\n"
            "main()\n")


@pytest.mark.parametrize("module", ["click", "numpy", "pydantic", "archsim.api", "archsim.config.schema"])
def test_ctrl_c_while_run_loads_its_modules_is_one_line(module):
    proc = subprocess.run([sys.executable, "-c", _interrupt_at_import(module), "run", HW, SMALL], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (130, "interrupted\n"), proc.stderr
    assert proc.stdout == ""


def test_the_graph_answers_as_networkx_did():
    """OpGraph keeps ops in insertion order, which is the lexicographical topological order
    networkx gave (every edge runs from an earlier op to a later one), and its predecessor,
    successor and descendant queries are networkx's on the same graph."""
    nx = pytest.importorskip("networkx")
    from archsim import api

    hw = api.load_hardware(ROOT / HW)
    for path in ("workloads/dit_xl_2_block_512.yaml", "workloads/llama2_7b.yaml", "workloads/deepseek_v2_lite.yaml"):
        for phase in api.load_workload(ROOT / path, hw=hw).phases:
            graph = phase.graph
            copy = graph.nx
            order = {name: i for i, name in enumerate(copy.nodes)}
            names = [op.name for op in graph.ops()]
            assert names == list(nx.lexicographical_topological_sort(copy, key=order.__getitem__))
            assert len(graph) == copy.number_of_nodes() == len(names)
            assert all(order[u] < order[v] for u, v in copy.edges)
            for name in names:
                assert list(graph.predecessors(name)) == list(copy.predecessors(name))
                assert list(graph.successors(name)) == list(copy.successors(name))
                assert graph.descendants(name) == nx.descendants(copy, name)
                assert all(copy.nodes[name]["op"] is op for op in graph.ops() if op.name == name)


# Modules a chip's run of a DiT block does not need, imported where they are used (issue 22).
LOADED_ON_USE = (
    "archsim.cli_dse",  # the design-space commands
    "archsim.calibrate.command", "archsim.dse.sensitivity_command",
    "archsim.system.result", "archsim.system.schedule", "archsim.ir.summary",  # report.py: annotations only
    "archsim.ir.mla",  # multi-head latent attention (DeepSeek)
    "archsim.hw.matrix.cim",  # a systolic chip's run builds no CIM model
    "archsim.workloads.schedules_taylor", "archsim.workloads.schedules_toca",  # schedules named by a workload
    "archsim.workloads.schedules_adaptive", "archsim.workloads.schedules_harmonica",
    "archsim.workloads.schedules_ops", "archsim.workloads.inputs",
)


def test_a_chips_run_loads_only_what_it_uses(tmp_path):
    modules, proc = _cli(tmp_path, "run", HW, SMALL)
    assert proc.returncode == 0 and "latency" in proc.stdout, proc.stderr
    assert {"archsim.hw.matrix.systolic", "archsim.workloads.schedules"} <= modules
    assert not modules & set(LOADED_ON_USE), sorted(modules & set(LOADED_ON_USE))


def test_a_language_models_run_loads_no_diffusion_schedule_nor_speculative_lowering(tmp_path):
    code = ("from archsim import api\n"
            "hw = api.load_hardware('hw_configs/tpuv4i.yaml')\n"
            "assert api.load_workload('workloads/llama2_7b.yaml', hw=hw).name == 'llama2-7b'\n")
    modules, proc = _modules_at_exit(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    lazy = {"archsim.workloads.schedules", "archsim.workloads.schedules_adaptive", "archsim.workloads.llm_schedules_eagle",
            "archsim.workloads.llm_schedules_ssd", "archsim.ir.mla"}
    assert "archsim.workloads.llm_schedules" in modules
    assert not modules & lazy, sorted(modules & lazy)


def test_schedules_loaded_on_use_are_listed_and_found(tmp_path):
    """The schedules in their own modules are listed (the names errors and field descriptions
    give) and parsed as when they were imported with the registry."""
    code = ("import sys\n"
            "from archsim.workloads import llm_schedules, schedules\n"
            "llm_names = llm_schedules.schedule_names()\n"
            "assert 'archsim.workloads.llm_schedules_eagle' not in sys.modules\n"
            "assert type(llm_schedules.parse_llm_schedule('eagle')).__name__ == 'Eagle'\n"
            "llm_schedules.load_schedule_modules()\n"
            "assert llm_names == sorted(llm_schedules._SCHEDULES), llm_names\n"
            "assert 'archsim.workloads.schedules_toca' not in sys.modules\n"
            "names = schedules.schedule_names()\n"
            "assert {'none', 'reuse', 'icc', 'l2c', 'taylorseer', 'toca', 'duca', 'teacache', 'magcache',\n"
            "        'harmonica'} <= set(names), names\n"
            "assert 'teacache' in schedules.STEP_KINDS and 'harmonica' in schedules.STEP_KINDS\n")
    modules, proc = _modules_at_exit(tmp_path, code)
    assert proc.returncode == 0, proc.stderr


def test_a_step_kind_of_a_schedule_module_loads_it(tmp_path):
    """STEP_KINDS finds TeaCache's and HarmoniCa's step kinds before anything imported them."""
    code = ("from archsim.workloads.schedules import STEP_KINDS\n"
            "assert 'full' not in STEP_KINDS\n"
            "assert STEP_KINDS['harmonica'] is not None\n"
            "assert 'teacache' in STEP_KINDS and 'magcache' in STEP_KINDS\n")
    modules, proc = _modules_at_exit(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    assert "archsim.workloads.schedules_harmonica" in modules


@pytest.mark.parametrize("given, expected", [(None, "1"), ("3", "3")])
def test_a_run_loads_numpy_with_one_blas_thread_unless_told(tmp_path, given, expected):
    """archsim run multiplies no matrices with BLAS: OpenBLAS's thread pool (spinning on the
    other cores) is one thread, unless OPENBLAS_NUM_THREADS says otherwise."""
    import os

    out = tmp_path / "threads.txt"
    code = ("import atexit, os, sys\n"
            f"atexit.register(lambda: open({str(out)!r}, 'w').write(os.environ.get('OPENBLAS_NUM_THREADS', '')))\n"
            "from archsim.cli import main\nmain()\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | (
        {"OPENBLAS_NUM_THREADS": given} if given else {})
    proc = subprocess.run([sys.executable, "-c", code, "run", HW, SMALL], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == expected
