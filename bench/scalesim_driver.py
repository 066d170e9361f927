"""Run SCALE-Sim v3 on one GEMM and print its compute cycles and run time as JSON.

Executed by bench/run.py with the Python of an environment where SCALE-Sim is installed
(``pip install scalesim==3.0.0 "numpy<2.4"``; tests/data/scalesim_v3_runs.md has the details
of the config, which is the one the reference runs used). The time is SCALE-Sim's
simulation only: the interpreter's start-up and the import are excluded.

    python bench/scalesim_driver.py ROWS COLS DATAFLOW M K N
"""

import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """[general]
run_name = {name}

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:   8192
FilterSramSzkB:  8192
OfmapSramSzkB:   8192
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Dataflow : {dataflow}
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
FilterCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""

LAYOUT_HEADER = (
    "Layer name, IFMAP Height Intraline Factor, IFMAP Width Intraline Factor, Filter Height Intraline Factor, "
    "Filter Width Intraline Factor, Channel Intraline Factor, Num Filter Intraline Factor, IFMAP Height Intraline "
    "Order, IFMAP Width Intraline Order, Channel Intraline Order, IFMAP Height Interline Order, IFMAP Width "
    "Interline Order, Channel Interline Order, Num Filter Intraline Order, Channel Intraline Order, Filter Height "
    "Intraline Order, Filter Width Intraline Order, Num Filter Interline Order, Channel Interline Order, Filter "
    "Height Interline Order, Filter Width Interline Order,\n"
)


def main() -> None:
    rows, cols, dataflow, m, k, n = sys.argv[1:7]
    from scalesim.scale_sim import scalesim  # imported before the clock starts

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        name = f"r{rows}c{cols}_{dataflow}_M{m}_K{k}_N{n}"
        (work / "cfg.cfg").write_text(CONFIG.format(name=name, rows=rows, cols=cols, dataflow=dataflow))
        # SCALE-Sim's GEMM topology is "name, M, N, K," (its K and N swapped against archsim's)
        (work / "topo.csv").write_text(f"Layer, M, N, K,\ngemm, {m}, {n}, {k},\n")
        (work / "layout.csv").write_text(LAYOUT_HEADER)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            sim = scalesim(save_disk_space=True, verbose=False, config=str(work / "cfg.cfg"),
                           topology=str(work / "topo.csv"), layout=str(work / "layout.csv"), input_type_gemm=True)
            sim.run_scale(top_path=str(work / "out"))
        seconds = time.perf_counter() - start
        report = (work / "out" / name / "COMPUTE_REPORT.csv").read_text().splitlines()[1].split(",")
    print(json.dumps({"cycles": int(float(report[2])), "seconds": seconds}))


if __name__ == "__main__":
    main()
