"""Safety of sweeps and of the files archsim writes (issue 15), each fix with its regression:

1. results computed by other model code are never reused nor mixed in: evaluated again;
2. a results table without the columns reports read, a damaged sweep.json and an unknown
   ``plot --color`` column are bad input (exit 2, the file and what is wrong named);
3. Ctrl-C, during start-up imports or a sweep, ends with one line and exit code 130;
4. no file is written through a symbolic link planted at its name;
5. the local Dask cluster admits no client without its credentials;
6. an unreachable ``--scheduler`` fails within seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pandas as pd
import pytest

from archsim.dse import evaluate, runner
from archsim.dse.plan import plan_sweep
from archsim.dse.runner import run_points
from archsim.dse.store import ResultStore
from archsim.errors import ArchsimError
from archsim.fileio import atomic_write_text, open_regular
from tests.conftest import ROOT, TPUV4I, WORKLOADS, run_cli

DECODE = WORKLOADS / "gpt3_30b_layer_decode.yaml"
SWEEP = f"""extends: {TPUV4I}
sweep:
  axes:
    mxu.count: [1, 2]
  workloads: [{DECODE}]
  objectives: [latency, energy, area]
"""
OUTPUTS = ["results.parquet", "results.csv", "summary.txt", "sweep.json", "pareto_latency_energy.png",
           "pareto_latency_energy.svg", "breakdown.png", "breakdown.svg", "parts/.lock"]


def write_sweep(folder: Path, points: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.yaml"
    body = SWEEP if points == 2 else SWEEP.replace("mxu.count: [1, 2]", f"hbm.bandwidth: {{from: 300 GB/s, to: "
                                                   f"1.2 TB/s, steps: {points}}}")
    path.write_text(body)
    return path


def cli(monkeypatch, capsys, *args: str, plots: bool = True) -> tuple[int, str, str]:
    """``archsim ARGS`` in this process: exit code, stdout, stderr."""
    from archsim.cli import main

    if not plots:  # they cost seconds and are not what the test is about
        stub = types.ModuleType("archsim.dse.plots")
        stub.plot_pareto = stub.plot_breakdowns = lambda *a, **k: []
        monkeypatch.setitem(sys.modules, "archsim.dse.plots", stub)
        import archsim.dse

        monkeypatch.setattr(archsim.dse, "plots", stub, raising=False)
    monkeypatch.setattr(sys, "argv", ["archsim", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A finished 2-point sweep's folder (copy it before changing it)."""
    folder = tmp_path_factory.mktemp("results")
    out = folder / "out"
    store = ResultStore(out)
    run_points(plan_sweep([write_sweep(folder)]).points, store, "serial", progress=False)
    store.consolidate()
    (out / "sweep.json").write_text('{"objectives": ["latency", "energy", "area"]}')
    return out


# ----------------------------------------------------------------------------------------------
# 1. other model code


def test_code_fingerprint_covers_the_model_and_only_it(tmp_path):
    package = Path(evaluate.__file__).resolve().parent.parent
    copy = tmp_path / "archsim"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    base = evaluate.fingerprint(copy)
    assert base == evaluate.fingerprint(copy)  # deterministic

    def edited(name: str, data: bytes = b"\n# an edit\n") -> str:
        path = copy / name
        original = path.read_bytes() if path.exists() else None
        path.write_bytes((original or b"") + data)
        try:
            return evaluate.fingerprint(copy)
        finally:
            path.unlink() if original is None else path.write_bytes(original)

    for model in ("hw/energy.py", "sim/engine.py", "dse/evaluate.py", "workloads/dit.py", "hw/new_module.py"):
        assert edited(model) != base, model
    for presentation in ("cli.py", "dse/plots.py", "dse/report.py", "dse/store.py", "fileio.py", "dse/figures_ops.py",
                         "dse/figures_labels.py", "dse/html_report.py", "dse/compare.py"):
        assert edited(presentation) == base, presentation


def test_results_of_other_model_code_are_evaluated_again_never_mixed(tmp_path, monkeypatch, capsys, caplog):
    """The bug: a folder written before a model change was resumed ("0 evaluated, 2 already
    done") with the old numbers. Now its parts are set aside and every point evaluated anew."""
    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    code, _, err = cli(monkeypatch, capsys, "sweep", str(path), "--out", str(out), "--executor", "serial",
                       "--no-progress", plots=False)
    assert code == 0 and "2 evaluated (0 already done)" in err, err
    old_parts = sorted(p.name for p in out.glob("parts/part-*.parquet"))
    ours = evaluate.code_fingerprint()
    assert (pd.read_parquet(out / "results.parquet")["code"] == ours).all()

    other = "0123456789abcdef"  # the model code changed
    with monkeypatch.context() as patch:
        evaluate.code_fingerprint.cache_clear()
        patch.setattr(evaluate, "fingerprint", lambda package: other)
        try:
            code, _, err = cli(monkeypatch, capsys, "sweep", str(path), "--out", str(out), "--executor", "serial",
                               "--no-progress", plots=False)
        finally:
            patch.undo()
            evaluate.code_fingerprint.cache_clear()
    assert code == 0 and "2 evaluated (0 already done)" in err, err
    assert "2 results part(s) computed by other archsim model code" in caplog.text
    assert "evaluated again" in caplog.text
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 2 and frame["key"].is_unique and (frame["code"] == other).all()
    assert sorted(p.name for p in out.glob("parts/*.other-code")) == [n + ".other-code" for n in old_parts]
    assert evaluate.code_fingerprint() == ours


def test_rows_of_workers_running_other_code_are_refused(tmp_path, monkeypatch):
    """A Dask worker with another archsim: its rows are not written among this code's."""
    plan = plan_sweep([write_sweep(tmp_path)])
    monkeypatch.setattr(runner, "evaluate_chunk",
                        lambda chunk: [evaluate.evaluate_point(p) | {"code": "elsewhere"} for p in chunk])
    store = ResultStore(tmp_path / "out")
    with pytest.raises(ArchsimError, match=r"other archsim model code \(elsewhere\)"):
        run_points(plan.points, store, "serial", progress=False)
    assert store.frame().empty


def test_kept_workers_serve_every_run_within_and_end_after(tmp_path):
    # a guided search's generations: the pool's worker processes (and their warm caches) serve
    # each run_points call inside kept_workers, the rows are the same as a fresh pool's, and the
    # processes end when it exits
    points = list(plan_sweep([write_sweep(tmp_path / "s", points=4)]).points)
    fresh = ResultStore(tmp_path / "fresh")
    run_points(points, fresh, "pool", workers=2, chunk_size=1, progress=False)
    kept_store = ResultStore(tmp_path / "kept")
    with runner.kept_workers():
        run_points(points[:2], kept_store, "pool", workers=2, chunk_size=1, progress=False)
        pools = list(runner._KEPT[-1].slots)
        pids = sorted(pid for pool in pools for pid in pool._processes)
        run_points(points[2:], kept_store, "pool", workers=2, chunk_size=1, progress=False)
        assert runner._KEPT[-1].slots == pools and len(pids) == 2
        assert sorted(pid for pool in pools for pid in pool._processes) == pids
    assert not runner._KEPT and all(not pool._processes for pool in pools)  # ended
    columns = ["key", "latency_s", "energy_j", "status"]
    a = fresh.frame()[columns].sort_values("key").reset_index(drop=True)
    b = kept_store.frame()[columns].sort_values("key").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


# ----------------------------------------------------------------------------------------------
# 2. damaged results: exit 2, not 3


@pytest.mark.parametrize("dropped", ["latency_s", "status", "area_mm2"])
def test_pareto_on_a_table_missing_columns_names_them(results, tmp_path, monkeypatch, capsys, dropped):
    table = tmp_path / "partial.parquet"
    pd.read_parquet(results / "results.parquet").drop(columns=[dropped]).to_parquet(table)
    code, _, err = cli(monkeypatch, capsys, "pareto", str(table), "--x", "latency", "--y", "area")
    assert code == 2 and f"{table}: not a sweep's results table: no column {dropped}" in err, err
    assert "internal error" not in err


def test_pareto_on_a_table_with_text_for_numbers_names_the_column(results, tmp_path, monkeypatch, capsys):
    table = tmp_path / "text.parquet"
    frame = pd.read_parquet(results / "results.parquet")
    frame.assign(latency_s="fast").to_parquet(table)  # was exit 3: could not convert string to float
    code, _, err = cli(monkeypatch, capsys, "pareto", str(table))
    assert code == 2 and f"{table}: column latency_s: expected numbers" in err, err


@pytest.mark.parametrize("damage", [b"{bad", b"[1]", b'{"objectives": ["nope"]}', b'{"objectives": []}', b"\xff",
                                    b"{}"])
def test_plot_with_a_damaged_sweep_json_names_it(results, tmp_path, monkeypatch, capsys, damage):
    out = tmp_path / "out"
    shutil.copytree(results, out)
    (out / "sweep.json").write_bytes(damage)
    code, _, err = cli(monkeypatch, capsys, "plot", str(out))
    assert code == 2 and f"{out / 'sweep.json'}: damaged" in err and "run the sweep again" in err, err


def test_plot_color_by_an_unknown_column_lists_the_available_ones(results, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    shutil.copytree(results, out)
    (out / "summary.txt").unlink(missing_ok=True)
    code, _, err = cli(monkeypatch, capsys, "plot", str(out), "--color", "set.mxu.cont")
    assert code == 2 and "'set.mxu.cont' is not a column of the results in" in err, err
    assert "available: " in err and "set.mxu.count" in err
    assert not (out / "summary.txt").exists()  # refused before anything is written


# ----------------------------------------------------------------------------------------------
# 3. Ctrl-C


def _interrupt_at_import(module: str) -> str:
    """Python code running archsim's entry point that sends itself SIGINT when ``module`` is
    first imported, as Ctrl-C during start-up would."""
    return ("import os, signal, sys\n"
            "fired = []\n"
            "def hook(event, args):\n"
            f"    if event == 'import' and args[0] == {module!r} and not fired:\n"
            "        fired.append(1)\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "sys.addaudithook(hook)\n"
            "from archsim.cli import main\n"
            "main()\n")


@pytest.mark.parametrize("module, args", [("click", ["--version"]),  # the CLI's own start-up
                                          # a command's imports, which it loads on use
                                          ("numpy", ["validate", "hw_configs/tpuv4i.yaml"]),
                                          ("archsim.api", ["validate", "hw_configs/tpuv4i.yaml"])])
def test_ctrl_c_during_start_up_imports_is_one_line(module, args):
    proc = subprocess.run([sys.executable, "-c", _interrupt_at_import(module), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (130, "interrupted\n"), proc.stderr


def _sweep_process(path: Path, out: Path, *args: str) -> subprocess.Popen:
    """``archsim sweep`` through the installed console script, in its own process group (the
    terminal sends Ctrl-C to a whole group)."""
    script = Path(sys.executable).parent / "archsim"
    command = [str(script)] if script.is_file() else [sys.executable, "-c", "from archsim.cli import main; main()"]
    return subprocess.Popen([*command, "sweep", str(path), "--out", str(out), "--no-progress", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _interrupt(proc: subprocess.Popen, ready, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    try:
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "never ready"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        return proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_ctrl_c_sent_early_by_another_process_is_one_line(tmp_path):
    """SIGINT from outside once the start-up imports are under way (archsim.cli's guard is
    installed before its first import, click: the milliseconds before it, and the
    interpreter's own start, are out of archsim's reach): one line, exit code 130, whenever it
    lands."""
    out = tmp_path / "out"
    started = tmp_path / "started"
    code = (f"import sys, pathlib\nsys.addaudithook(lambda e, a: e == 'import' and a[0] == 'click' and "
            f"pathlib.Path({str(started)!r}).touch())\nfrom archsim.cli import main\nmain()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "sweep", str(write_sweep(tmp_path, 400)), "--out", str(out),
                             "--executor", "serial", "--no-progress"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    err = _interrupt(proc, started.exists)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("interrupted"), err


@pytest.mark.parametrize("executor", ["pool", "dask"])
def test_ctrl_c_during_a_sweep_is_one_line_from_every_process(tmp_path, executor):
    """Ctrl-C reaches the sweep and its workers (one process group): the workers say nothing,
    the sweep says where its points are saved, exit code 130."""
    pytest.importorskip("distributed")
    for attempt in range(2):
        out = tmp_path / f"out{attempt}"
        proc = _sweep_process(write_sweep(tmp_path, 4000), out, "--executor", executor, "--jobs", "2", "--chunk-size", "4")
        err = _interrupt(proc, lambda: any(out.glob("parts/part-*.parquet")))
        # Under the Dask executor about one run in ten on a loaded 2-core machine has finished
        # every point without seeing the signal (exit 0; never a traceback); not yet explained,
        # so a second run is allowed, and two such runs fail the test
        if not (executor == "dask" and proc.returncode == 0 and attempt == 0):
            break
    assert proc.returncode == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    said = f"interrupted: finished points are saved in {out}; run again to resume"
    if executor == "pool":
        assert err.splitlines()[-1] == said, err
    else:  # Dask may log a warning line as its cluster closes (a task cancelled): not a traceback
        assert said in err.splitlines(), err


# ----------------------------------------------------------------------------------------------
# 4. no write through a link


def _plant(folder: Path, names, victims: Path) -> dict[Path, Path]:
    """A symbolic link at each output name, to a file outside (every other one dangling, so a
    write through it would create the file)."""
    victims.mkdir(exist_ok=True)
    links = {}
    for i, name in enumerate(names):
        target = victims / name.replace("/", "_")
        if i % 2 == 0:
            target.write_text("victim")
        link = folder / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        links[link] = target
    return links


def _assert_untouched(links: dict[Path, Path]) -> None:
    for i, (link, target) in enumerate(links.items()):
        if i % 2 == 0:
            assert target.read_text() == "victim", f"written through {link}"
        else:
            assert not target.exists(), f"created through {link}"
        assert not link.is_symlink() and link.is_file(), f"{link} not replaced by a file"


def test_no_output_is_written_through_a_link_in_the_results_folder(tmp_path, monkeypatch, capsys):
    """Links at every name a sweep and ``archsim plot`` write (the tables, the reports, the
    plots, the lock file) are replaced by the files, never followed."""
    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    links = _plant(out, OUTPUTS, tmp_path / "victims")
    code, _, err = cli(monkeypatch, capsys, "sweep", str(path), "--out", str(out), "--executor", "serial",
                       "--no-progress", "--csv")
    assert code == 0, err
    _assert_untouched(links)
    assert len(pd.read_parquet(out / "results.parquet")) == 2

    written_by_plot = ["summary.txt", *(n for n in OUTPUTS if n.endswith((".png", ".svg")))]
    links = _plant(out, written_by_plot, tmp_path / "victims-plot")
    code, _, err = cli(monkeypatch, capsys, "plot", str(out))
    assert code == 0, err
    _assert_untouched(links)


def test_a_link_in_place_of_the_parts_folder_is_refused(tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "parts").symlink_to(elsewhere)
    code, _, err = cli(monkeypatch, capsys, "sweep", str(write_sweep(tmp_path)), "--out", str(out), "--executor",
                       "serial", "--no-progress", plots=False)
    assert code == 2 and f"{out / 'parts'}: a symbolic link" in err and "remove the link" in err, err
    assert not any(elsewhere.iterdir())


def test_file_writers_replace_links_fifos_and_hard_links(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("victim")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a").symlink_to(victim)
    (folder / "dangling").symlink_to(tmp_path / "created")
    atomic_write_text(folder / "a", "mine")
    atomic_write_text(folder / "dangling", "mine")
    assert victim.read_text() == "victim" and not (tmp_path / "created").exists()
    assert (folder / "a").read_text() == "mine" and not (folder / "a").is_symlink()

    (folder / "lock-link").symlink_to(victim)
    os.link(victim, folder / "lock-hard")
    os.mkfifo(folder / "lock-fifo")
    for name in ("lock-link", "lock-hard", "lock-fifo", "lock-new"):
        fd = open_regular(folder / name)
        try:
            os.write(fd, b"lock")
        finally:
            os.close(fd)
        assert (folder / name).read_bytes() == b"lock" and not (folder / name).is_symlink()
    assert victim.read_text() == "victim" and os.stat(victim).st_nlink == 1
    (folder / "lock-dir").mkdir()
    with pytest.raises(OSError):
        open_regular(folder / "lock-dir")


# ----------------------------------------------------------------------------------------------
# 5. and 6. Dask


def test_the_local_dask_cluster_refuses_clients_without_its_credentials(tmp_path):
    distributed = pytest.importorskip("distributed")
    from distributed.security import Security

    cluster = runner._local_cluster(1)
    try:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        strangers = {"plain": lambda: distributed.Client(address, timeout=3),
                     "plain TCP": lambda: distributed.Client("tcp://" + address[len("tls://"):], timeout=3),
                     "other TLS credentials": lambda: distributed.Client(address, security=Security.temporary(),
                                                                         timeout=3)}
        for who, connect in strangers.items():
            # refused: a connection error, or (when the TLS handshake fails while distributed's
            # client is still starting its event loop, seen under load) an AssertionError from
            # its loop runner; pytest.fail below is neither, so a connection is never mistaken
            with pytest.raises((OSError, TypeError, AssertionError)):
                connect().close()
                pytest.fail(f"a client with {who} connected")
        with distributed.Client(cluster) as client:  # the sweep's own client: its credentials
            assert client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
    finally:
        cluster.close()

    plan = plan_sweep([write_sweep(tmp_path)])  # and a sweep runs on it
    store = ResultStore(tmp_path / "out")
    stats = run_points(plan.points, store, "dask", workers=1, progress=False)
    assert stats.evaluated == 2 and (store.frame()["status"] == "ok").all()


def test_an_unreachable_scheduler_fails_within_seconds(tmp_path):
    with socket.socket() as taken:  # bound, not listening: nothing answers on this port
        taken.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        start = time.monotonic()
        proc = run_cli("sweep", str(write_sweep(tmp_path)), "--out", str(tmp_path / "out"), "--scheduler", address,
                       "--no-progress")
        elapsed = time.monotonic() - start
    assert proc.returncode == 2 and f"cannot use the Dask scheduler {address}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < 10, f"{elapsed:.1f} s"
