"""Sweeps at scale: lazy plans up to 10^6 points, parts compacted as they finish (crash-safe,
every row read back exactly once), and readback with pyarrow equal to the per-part pandas read."""

from __future__ import annotations

import os
import resource
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from archsim.config.loader import load_layered
from archsim.config.sweep import MAX_SWEEP_POINTS
from archsim.dse import store as store_module
from archsim.dse.plan import Points, _workload_id, plan_sweep
from archsim.dse.runner import run_points
from archsim.dse.spec import Point, digest, point_key
from archsim.dse.store import MERGED, ResultStore
from archsim.errors import ConfigError
from tests.conftest import TPUV4I, WORKLOADS

DECODE = WORKLOADS / "llama2_7b_layer_decode.yaml"


def sweep_file(tmp_path: Path, axes: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"extends: {TPUV4I}\nsweep:\n  axes:\n{textwrap.indent(textwrap.dedent(axes), '    ')}"
                    f"  workloads: [{DECODE}]\n")
    return path


def rows(store: ResultStore, start: int, n: int, status: str = "ok", reason: str = "") -> list[dict]:
    """Synthetic rows of this code: an ok row has more columns (and integers) than an error row."""
    out = []
    for i in range(start, start + n):
        row = {"key": f"{i:020x}", "role": "point", "config": "sweep.yaml", "workload_file": "w.yaml",
               "workload_id": "w", "code": store.code, "status": status, "reason": reason}
        if status == "ok":
            row |= {"latency_s": 1e-3 * (i + 1), "cycles": 1000 + i, "workload": "decode", "over_tdp": False}
        else:
            row["traceback"] = "Traceback: boom"
        out.append(row)
    return out


def eager_frame(store: ResultStore) -> pd.DataFrame:
    """The reader before compaction existed: every part read by pandas, oldest first (by mtime),
    a key's newest final row (else its newest error row) kept, pieces concatenated by pandas."""
    paths = sorted(store.parts.glob("part-*.parquet"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    parts = [pd.read_parquet(p) for p in paths]
    rows = pd.DataFrame({
        "key": np.concatenate([part["key"].to_numpy(dtype=object) for part in parts]),
        "final": np.concatenate([(part["status"] != "error").to_numpy(dtype=bool) for part in parts]),
        "part": np.repeat(np.arange(len(parts)), [len(part) for part in parts]),
        "row": np.concatenate([np.arange(len(part)) for part in parts]),
    })
    kept = rows.iloc[np.argsort(rows["final"].to_numpy(), kind="stable")].drop_duplicates("key", keep="last")
    kept = kept.sort_values(["part", "row"])
    pieces = [parts[i].iloc[g["row"].to_numpy()] for i, g in kept.groupby("part", sort=True)]
    frame = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0].reset_index(drop=True)
    return frame.sort_values("key", kind="stable").reset_index(drop=True)


def fill(store: ResultStore, compact: bool) -> None:
    """40 parts of a few thousand rows: errors later retried (ok), errors retried as errors
    (the newest wins), a part of error rows only."""
    with store.writer():
        for k in range(40):
            store.write(rows(store, k * 100, 100))
            if k % 10 == 3:
                store.write(rows(store, 10_000 + k, 5, "error", f"first failure {k}"))
            if k % 10 == 7:
                store.write(rows(store, 10_000 + k - 4, 2, "error", f"second failure {k}"))
                store.write(rows(store, 10_000 + k - 4, 1))
            time.sleep(0.002)  # distinct modification times: the order of the parts is the order written
            if compact:
                store.compact()


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal rows; columns that are all null in one (another layout's superseded rows) aside."""
    keep = [c for c in a.columns if c in b.columns and a[c].notna().any()]
    assert set(c for c in b.columns if b[c].notna().any()) <= set(keep)
    pd.testing.assert_frame_equal(a[keep], b[keep], check_dtype=False)


def test_readback_of_many_parts_equals_the_eager_read(tmp_path):
    store = ResultStore(tmp_path / "out")
    fill(store, compact=False)
    assert len(list(store.parts.glob("part-*.parquet"))) > 40
    frame = store.frame()
    pd.testing.assert_frame_equal(frame, eager_frame(store), check_exact=True)
    assert frame["key"].is_unique and len(frame) == 4000 + 20
    assert (frame["status"] == "ok").sum() == 4000 + 4  # one retried error of each second failure


def test_compaction_keeps_every_row_once(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "FAN_IN", 4)
    reference = ResultStore(tmp_path / "plain")
    fill(reference, compact=False)
    store = ResultStore(tmp_path / "out")
    fill(store, compact=True)
    names = [p.name for p in store.parts.glob("part-*.parquet")]
    assert len(names) < 20 and any(n.startswith(MERGED + "L2-") for n in names)
    same_rows(store.frame(), reference.frame())
    assert store.done_keys() == reference.done_keys()


class Crash(BaseException):
    """A kill at this point: nothing after it runs."""


def test_a_crash_between_the_merged_part_and_deleting_its_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "FAN_IN", 4)
    out = tmp_path / "out"
    store = ResultStore(out)
    with store.writer():
        for k in range(4):
            store.write(rows(store, k * 10, 10) + rows(store, 100, 1, "error", f"try {k}"))
            time.sleep(0.002)
    expected = store.frame()
    small = sorted(p.name for p in store.parts.glob("part-*.parquet"))
    real = Path.unlink
    with monkeypatch.context() as patch:
        patch.setattr(Path, "unlink", lambda self, missing_ok=False: (_ for _ in ()).throw(Crash()))
        with pytest.raises(Crash), store.writer():
            store.compact()
    present = sorted(p.name for p in store.parts.glob("part-*.parquet"))
    merged = [n for n in present if n.startswith(MERGED)]
    assert len(merged) == 1 and set(small) < set(present)  # the merged part and every part it replaces
    meta = pq.read_schema(out / "parts" / merged[0]).metadata
    assert all(n.encode() in meta[store_module.MANIFEST] for n in small)
    reader = ResultStore(out, create=False)
    pd.testing.assert_frame_equal(reader.frame(), expected, check_exact=True)  # each row once, the newest error
    assert reader.frame().loc[lambda f: f["key"] == f"{100:020x}", "reason"].item() == "try 3"
    assert Path.unlink is real
    again = ResultStore(out)
    again.clean()  # the next run deletes the leftovers
    assert sorted(p.name for p in again.parts.glob("part-*.parquet")) == merged
    pd.testing.assert_frame_equal(again.frame(), expected, check_exact=True)


def test_a_crash_while_writing_the_merged_part_or_before_compacting(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "FAN_IN", 4)
    out = tmp_path / "out"
    store = ResultStore(out)
    with store.writer():  # parts written, the run killed before it compacted them
        for k in range(6):
            store.write(rows(store, k * 10, 10))
    expected = store.frame()

    def half(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1 half a file")
        raise Crash()

    with monkeypatch.context() as patch:
        patch.setattr(store_module.pq, "write_table", half)
        with pytest.raises(Crash), store.writer():
            store.compact()
    assert not list(out.glob(f"parts/{MERGED}*"))  # (Python removed its temporary; a SIGKILL leaves one:)
    (out / "parts" / f".tmp-{'0' * 32}.parquet").write_bytes(b"PAR1 half a file")
    pd.testing.assert_frame_equal(ResultStore(out, create=False).frame(), expected, check_exact=True)
    resumed = ResultStore(out)
    resumed.clean()
    assert not list(out.glob("parts/.tmp-*"))
    with resumed.writer():
        assert resumed.compact()
    assert len(list(out.glob("parts/part-*.parquet"))) == 3  # 4 merged into one, 2 left
    pd.testing.assert_frame_equal(resumed.frame(), expected, check_exact=True)


def test_resume_after_compaction_skips_done_points(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "FAN_IN", 2)
    plan = plan_sweep([sweep_file(tmp_path, "mxu.count: [1, 2, 4]\nhbm.bandwidth: [300 GB/s, 600 GB/s, 900 GB/s, "
                                            "1.2 TB/s]\n")])
    store = ResultStore(tmp_path / "out")
    first = run_points(plan.points[:7], store, "serial", chunk_size=1, progress=False)
    assert list(store.parts.glob(f"{MERGED}*"))
    second = run_points(plan.points, store, "serial", chunk_size=1, progress=False)
    assert (first.evaluated, second.skipped, second.evaluated) == (7, 7, 5)
    frame = store.frame()
    assert len(frame) == 12 and frame["key"].is_unique and (frame["status"] == "ok").all()
    assert set(frame["key"]) == set(plan.points.keys.astype(str))


def test_compacted_parts_of_other_code_are_never_mixed(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "FAN_IN", 2)
    out = tmp_path / "out"
    store = ResultStore(out)
    with store.writer():
        for k in range(4):
            store.write(rows(store, k * 10, 10))
            store.compact()
    assert [p.name[:len(MERGED) + 2] for p in out.glob("parts/part-*.parquet")] == [MERGED + "L2"]
    other = ResultStore(out)
    other._code = "0123456789abcdef"  # the model code changed since
    assert other.frame().empty
    with other.writer():  # a writer sets them aside and merges nothing of theirs with its own
        assert other.done_keys() == set()
        other.write([dict(r, code=other.code) for r in rows(store, 0, 3)])
        other.write([dict(r, code=other.code) for r in rows(store, 3, 3)])
        other.compact()
    assert len(list(out.glob("parts/*.other-code"))) == 1
    frame = other.frame()
    assert len(frame) == 6 and (frame["code"] == other.code).all()
    assert store.frame().empty  # and the old code's reader sees none of the new code's rows


def test_a_200000_point_plan_is_lazy(tmp_path):
    path = sweep_file(tmp_path, "hbm.bandwidth: {from: 300 GB/s, to: 1.2 TB/s, steps: 1000}\n"
                                "vmem.capacity: {from: 4 MiB, to: 64 MiB, steps: 200}\n")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    plan = plan_sweep([path])
    seconds = time.perf_counter() - start
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    assert len(plan.points) == 200_000 and plan.configs == 200_000
    assert isinstance(plan.points, Points) and plan.points.keys.nbytes == 20 * 200_000
    assert seconds < 60 and grown_mib < 300, (seconds, grown_mib)
    # the first chunk as the eager plan made it: every combination in order, keyed by spec.point_key
    layered = load_layered(path)
    spec = layered.data["sweep"]
    from archsim.config.sweep import SweepSpec

    combos = SweepSpec.model_validate(spec).combinations()[:64]
    base = digest({k: v for k, v in layered.data.items() if k not in ("sweep", "description")})
    w, w_over = str(DECODE), "[]"
    w_id = _workload_id(w, w_over, ())
    eager = [Point(point_key(base, c, w_id, ()), str(path), c, w, w_over, "point", w_id) for c in combos]
    assert list(plan.points[:64]) == eager
    assert plan.points[-1].overrides == (("hbm.bandwidth", "1200000000000.0 B/s"), ("vmem.capacity", "67108864.0 B"))
    assert plan.points.without({p.key for p in eager})[0] == plan.points[64]


def test_a_plan_over_the_limit_names_the_file(tmp_path):
    assert MAX_SWEEP_POINTS == 1_000_000
    path = sweep_file(tmp_path, "hbm.bandwidth: {from: 300 GB/s, to: 1.2 TB/s, steps: 100000}\n"
                                "mxu.count: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]\n")
    with pytest.raises(ConfigError) as error:
        plan_sweep([path])
    message = str(error.value)
    assert str(path) in message and "1,100,000 design points" in message and "limit is 1,000,000" in message


def test_points_run_with_the_capacities_no_cost_reads_varying_fastest(tmp_path):
    # a grid (count x CMEM x bandwidth x HBM capacity, two workloads): evaluated per workload,
    # count and bandwidth outside, the two capacities (placement only) inside; a permutation
    from archsim.sim.fingerprint import CostFingerprint

    path = tmp_path / "grid.yaml"
    path.write_text(f"extends: {TPUV4I}\nsweep:\n  baseline: null\n  axes:\n    mxu.count: [1, 2]\n"
                    f"    cmem.capacity: [64 MiB, 128 MiB, 256 MiB]\n    hbm.bandwidth: [300 GB/s, 600 GB/s]\n"
                    f"    hbm.capacity: [16 GiB, 32 GiB]\n"
                    f"  workloads: [{DECODE}, {WORKLOADS / 'gpt3_30b_layer_decode.yaml'}]\n")
    points = plan_sweep([path]).points
    grouped = points.grouped(CostFingerprint.unread)
    assert sorted(grouped.keys.tolist()) == sorted(points.keys.tolist())
    seen = [(p.workload_id, *(v for _, v in p.overrides)) for p in grouped]
    workloads = sorted({p.workload_id for p in points}, key=[p.workload_id for p in points].index)
    # by hand: workload, then count, then bandwidth, then CMEM, then HBM capacity
    expected = [(w, n, c, bw, cap) for w in workloads for n in (1, 2) for bw in ("300 GB/s", "600 GB/s")
                for c in ("64 MiB", "128 MiB", "256 MiB") for cap in ("16 GiB", "32 GiB")]
    assert seen == expected
    assert [CostFingerprint.unread(p) for p in ("cmem.capacity", "hbm.capacity", "hbm.bandwidth", "vmem.capacity")] \
        == [True, True, False, False]


def test_a_worker_sees_a_config_edited_between_chunks_and_stats_it_once_a_chunk(tmp_path, monkeypatch):
    # a long-lived worker's caches are keyed by each file's stamp: an edit between two chunks is
    # seen; within a chunk each file is looked at once (not twice a point)
    from archsim.dse import evaluate

    config = tmp_path / "chip.yaml"
    config.write_text(f"extends: {TPUV4I}\nhbm:\n  bandwidth: 600 GB/s\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"extends: {config}\nsweep:\n  baseline: null\n  axes:\n    mxu.count: [1, 2, 4]\n"
                     f"  workloads: [{DECODE}]\n")
    points = list(plan_sweep([sweep]).points)
    evaluate.evaluate_chunk(points[:1])  # files loaded: from now on only the stamps stat them
    looked = []
    real = evaluate.Path.stat
    monkeypatch.setattr(evaluate.Path, "stat", lambda self, *a, **k: looked.append(self.name) or real(self, *a, **k))
    first = evaluate.evaluate_chunk(points)
    # once each for 3 points: the sweep file, the files it extends, the workload
    assert sorted(looked) == sorted([sweep.name, config.name, TPUV4I.name, DECODE.name])
    # the sweep's base config now sets another bandwidth (the sweep file is rewritten, as an
    # editor saves it: a new stamp)
    sweep.write_text(sweep.read_text() + "hbm:\n  bandwidth: 300 GB/s\n")
    os_stat = sweep.stat()
    os.utime(sweep, ns=(os_stat.st_atime_ns, os_stat.st_mtime_ns + 10**9))
    second = evaluate.evaluate_chunk(points)
    assert all(a["status"] == b["status"] == "ok" for a, b in zip(first, second))
    assert all(b["latency_s"] > a["latency_s"] for a, b in zip(first, second))  # half the bandwidth: slower


def _count_sweep(folder, config, workload):
    """A sweep file of two MXU counts of ``config`` on ``workload``."""
    sweep = folder / "sweep.yaml"
    sweep.write_text(f"extends: {config}\nsweep:\n  baseline: null\n  axes:\n    mxu.count: [1, 2]\n"
                     f"  workloads: [{workload}]\n")
    return sweep


def test_a_worker_builds_a_workload_again_when_a_file_it_reads_changes(tmp_path):
    # a model's config.json is read by the workload, not extended: the worker checks the workload
    # it built against the one the sweep planned (its id), and builds it afresh when they differ;
    # a worker whose files differ from the plan's fails the point instead of mixing its rows in
    from archsim.dse import evaluate

    model = tmp_path / "model.json"
    model.write_text((WORKLOADS / "models" / "llama2_7b.json").read_text().replace('"num_hidden_layers": 32',
                                                                                   '"num_hidden_layers": 8'))
    workload = tmp_path / "llm.yaml"
    workload.write_text("kind: llm\nname: small\nmodel: model.json\nbatch: 1\nprompt_len: 64\noutput_len: 4\n")
    sweep = _count_sweep(tmp_path, TPUV4I, workload)
    before = list(plan_sweep([sweep]).points)
    first = evaluate.evaluate_chunk(before)
    model.write_text(model.read_text().replace('"num_hidden_layers": 8', '"num_hidden_layers": 4'))
    after = list(plan_sweep([sweep]).points)  # a new plan: the workload's new id
    assert {p.workload_id for p in after}.isdisjoint({p.workload_id for p in before})
    second = evaluate.evaluate_chunk(after)
    assert all(r["status"] == "ok" for r in first + second)
    assert all(b["latency_s"] < a["latency_s"] for a, b in zip(first, second))  # half the layers: faster
    evaluate._WORKLOADS.clear()  # a fresh worker, reading today's files for the old plan
    evaluate._CHECKED.clear()
    stale = evaluate.evaluate_chunk(before)
    assert all(r["status"] == "invalid" and "not the one the sweep planned" in r["reason"] for r in stale)


def test_a_worker_sees_an_edit_to_a_file_the_config_extends(tmp_path):
    # the chain's every file is stamped: an edit to a parent (the sweep file untouched) is seen
    # by a worker that evaluated the same points before, in its configs and its workloads
    from archsim.dse import evaluate

    config = tmp_path / "chip.yaml"
    config.write_text(f"extends: {TPUV4I}\nhbm:\n  bandwidth: 600 GB/s\n")
    model = tmp_path / "decode.yaml"
    model.write_text(DECODE.read_text())
    workload = tmp_path / "workload.yaml"
    workload.write_text("extends: decode.yaml\n")
    sweep = _count_sweep(tmp_path, config, workload)
    points = list(plan_sweep([sweep]).points)
    first = evaluate.evaluate_chunk(points)

    def edit(path, old, new):
        path.write_text(path.read_text().replace(old, new))
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    edit(config, "600 GB/s", "300 GB/s")
    second = evaluate.evaluate_chunk(points)
    assert all(r["status"] == "ok" for r in first + second)
    assert all(b["latency_s"] > a["latency_s"] for a, b in zip(first, second))  # half the bandwidth: slower
    assert all(a["config_hash"] != b["config_hash"] for a, b in zip(first, second))
    length = model.read_text().split("kv_len:")[1].split()[0] if "kv_len:" in model.read_text() else None
    assert length is not None, "the workload file has no kv_len to edit"
    edit(model, f"kv_len: {length}", f"kv_len: {int(length) * 2}")
    stale = evaluate.evaluate_chunk(points)  # planned with the workload as it was: not mixed in
    assert all(r["status"] == "invalid" and "not the one the sweep planned" in r["reason"] for r in stale)
    third = evaluate.evaluate_chunk(list(plan_sweep([sweep]).points))
    assert all(c["latency_s"] > b["latency_s"] for b, c in zip(second, third))  # twice the KV cache: slower
