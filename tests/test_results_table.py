"""The typed results table at scale: ``typed`` and ``label`` work per distinct cell and design
(not per row), and ``ResultStore.consolidate`` orders rows before loading them. Each is
checked against a row-by-row reference written here, on random frames of mixed cells."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.dse import report
from archsim.dse.report import _order, _plain, _shown, label, results_table, table_order, typed


def reference_label(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """``label``'s design and design_id, a row at a time (the definition)."""
    fields = report.swept_fields(frame)
    names = report._names(fields)
    labels, idents = [], []
    for i in range(len(frame)):
        config = str(_plain(frame["config"].iloc[i]))
        hardware = _plain(frame["hardware"].iloc[i]) if "hardware" in frame.columns else None
        values = [_plain(frame[f].iloc[i]) for f in fields]
        shown = [f"{names[f]}={_shown(f, v)}" for f, v in zip(fields, values) if v is not None]
        labels.append(" ".join([hardware if isinstance(hardware, str) and hardware else config, *shown]))
        idents.append((config, *values))
    base = {ident for ident, role in zip(idents, frame["role"]) if role == "baseline"}
    order = sorted(set(idents), key=lambda ident: (ident not in base, *map(_order, ident)))
    ids = {ident: f"D{n}" for n, ident in enumerate(order, 1)}
    return labels, [ids[ident] for ident in idents]


# swept cells as a results part holds them: JSON text of numbers, quantities, lists, booleans
CELLS = st.sampled_from([None, json.dumps(1), json.dumps(2), json.dumps(16), json.dumps(2.5), json.dumps([16, 8]),
                         json.dumps([8, 8]), json.dumps("300 GB/s"), json.dumps("1.2 TB/s"), json.dumps(True),
                         json.dumps("int8"), json.dumps("bf16")])


@st.composite
def frames(draw):
    n = draw(st.integers(1, 40))
    frame = pd.DataFrame({
        "key": [f"k{i:04d}" for i in range(n)],
        "config": draw(st.lists(st.sampled_from(["a.yaml", "b.yaml", "c10.yaml", "c9.yaml"]), min_size=n, max_size=n)),
        "hardware": draw(st.lists(st.sampled_from([None, "", "TPU", "CIM-TPU"]), min_size=n, max_size=n)),
        "role": draw(st.lists(st.sampled_from(["point", "point", "baseline"]), min_size=n, max_size=n)),
        "workload_file": draw(st.lists(st.sampled_from(["w.yaml", "v.yaml"]), min_size=n, max_size=n)),
        "workload_id": draw(st.lists(st.sampled_from(["w1", "w2", "w10"]), min_size=n, max_size=n)),
        "status": "ok", "latency_s": 1.0, "energy_j": 1.0, "area_mm2": 1.0, "energy_mxu_j": 1.0,
    })
    for field in draw(st.lists(st.sampled_from(["set.mxu.count", "set.hbm.bandwidth", "set.mxu.cim.grid",
                                                  "set.flag"]), unique=True, max_size=4)):
        frame[field] = draw(st.lists(CELLS, min_size=n, max_size=n))
    return frame


@settings(max_examples=150, deadline=None)
@given(frames())
def test_label_equals_the_row_by_row_definition(frame):
    # typed first, as results_table does; then each column of mixed cells as text or numbers
    typed_frame = typed(frame)
    labelled = label(typed_frame)
    design, design_id = reference_label(typed_frame)
    assert labelled["design"].tolist() == design
    assert labelled["design_id"].tolist() == design_id
    assert "design" not in typed_frame.columns  # the caller's frame is left as it was


def test_label_tells_python_equal_values_alike_and_missing_cells_apart():
    # 1 and 1.0 name one design (as Python values are equal); a missing value is no value
    frame = pd.DataFrame({"key": ["a", "b", "c", "d"], "config": ["x.yaml"] * 4, "hardware": ["H"] * 4,
                          "role": ["point"] * 4, "set.n": pd.Series([1, 1.0, None, np.nan], dtype=object)})
    labelled = label(frame)
    assert labelled["design_id"].tolist() == ["D2", "D2", "D1", "D1"]  # missing sorts first
    assert labelled["design"].tolist() == ["H n=1", "H n=1", "H", "H"]


def test_typed_columns_equal_a_cell_by_cell_decoding():
    raw = pd.DataFrame({"set.mxu.count": [json.dumps(4), None, json.dumps(8)],
                        "set.hbm.bandwidth": [json.dumps("300 GB/s"), json.dumps("1.2 TB/s"), None],
                        "set.mxu.cim.grid": [json.dumps([16, 8]), json.dumps([8, 8]), json.dumps([16, 8])],
                        "set.on": [json.dumps(True), None, json.dumps(False)]})
    out = typed(raw)
    assert out["set.mxu.count"].dtype == "Int64" and out["set.mxu.count"].tolist()[::2] == [4, 8]
    assert out["set.mxu.count"].isna().tolist() == [False, True, False]
    bandwidth = out["set.hbm.bandwidth [B/s]"]
    assert bandwidth.iloc[0] == 300e9 and bandwidth.iloc[1] == 1.2e12 and np.isnan(bandwidth.iloc[2])
    assert out["set.mxu.cim.grid"].tolist() == ["16x8", "8x8", "16x8"]
    assert out["set.on"].dtype == "boolean" and out["set.on"].isna().tolist() == [False, True, False]


@settings(max_examples=60, deadline=None)
@given(frames())
def test_table_order_is_the_order_results_table_gives(frame):
    # consolidate orders a sweep's rows from their lead columns before loading the rest: the
    # table it then makes is in order already (and equal to the table of any row order)
    shuffled = frame.sample(frac=1, random_state=0).reset_index(drop=True)
    lead = shuffled[[c for c in shuffled.columns if report.table_reads(c)]]
    arranged = shuffled.iloc[table_order(lead)].reset_index(drop=True)
    expected = results_table(shuffled)
    got = results_table(arranged)
    pd.testing.assert_frame_equal(got, expected)
    assert got["key"].tolist() == arranged["key"].tolist()  # nothing moved: no second copy


@pytest.mark.parametrize("rows", [200_000])
def test_a_large_table_is_typed_and_labelled_in_seconds(rows):
    import time

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"key": [f"{i:08x}" for i in range(rows)], "config": "cim.yaml", "hardware": "CIM",
                          "role": "point", "workload_file": "w.yaml", "workload_id": "w",
                          "set.mxu.count": [json.dumps(int(v)) for v in rng.integers(1, 9, rows)],
                          "set.hbm.bandwidth": [json.dumps(f"{v} GB/s") for v in rng.integers(300, 3000, rows)]})
    start = time.perf_counter()
    out = label(typed(frame))
    assert time.perf_counter() - start < 10  # row by row: about 6 s per 10^5 rows
    first = out.iloc[0]
    assert first["design"] == f"CIM count={json.loads(frame['set.mxu.count'][0])} " \
                              f"bandwidth={json.loads(frame['set.hbm.bandwidth'][0])}"
