"""The sweep's interactive report (archsim.dse.html_report): one self-contained, deterministic
HTML file, checked in a real browser (headless Chromium through Selenium): it loads without
console errors, shows every feasible design as its own point and names it on hover."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import pytest

from archsim.dse.html_report import write_html_report
from archsim.dse.plan import plan_sweep
from archsim.dse.report import enrich
from archsim.dse.runner import run_points
from archsim.dse.store import ResultStore
from tests.conftest import HW, TPUV4I, WORKLOADS, run_cli

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
DECODE, DIT = WORKLOADS / "gpt3_30b_layer_decode.yaml", WORKLOADS / "dit_xl_2_block_512.yaml"
# a TPUv4i whose HBM cannot hold the layer: infeasible points, with their reasons
SMALL_HBM = f"""extends: {TPUV4I}
name: TPUv4i-small-HBM
sweep:
  axes:
    hbm.capacity: [64 MiB, 128 MiB]
  workloads: [{DECODE}]
  objectives: [latency, energy, area]
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The bundled CIM sweep (12 designs, TPUv4i the baseline) and the small-HBM TPUv4i (2 more)
    on two workloads: the DiT block fits all 14, the GPT-3 decode layer 12 (not the small HBMs).
    Returns (enriched results, objectives, folder)."""
    folder = tmp_path_factory.mktemp("report")
    small = folder / "small_hbm.yaml"
    small.write_text(SMALL_HBM)
    files = [str(f) for f in sorted(HW.glob("cim_*.yaml"))] + [str(small)]
    plan = plan_sweep(files, [], [str(DECODE), str(DIT)])
    store = ResultStore(folder / "out")
    run_points(plan.points, store, "serial", progress=False)
    objectives = list(plan.objectives)
    return enrich(store.frame(), objectives), objectives, folder


@pytest.fixture(scope="module")
def report(sweep):
    frame, objectives, folder = sweep
    return write_html_report(frame, objectives, folder / "report.html", title="test sweep")


def test_report_is_self_contained_and_names_every_design(sweep, report):
    frame, _, _ = sweep
    page = report.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)  # plotly.js inlined, nothing fetched
    assert not re.search(r"<link[^>]*\bhref\s*=\s*[\"']?https?://", page, re.I)
    assert page.count("Plotly.newPlot(") >= 2 and "plotly.js" in page.lower()
    assert (frame["status"] == "infeasible").sum() == 2 and (frame["status"] == "ok").sum() == 14 + 12
    for design in frame["design"].unique():
        assert html.escape(design) in page, design
    for reason in frame.loc[frame["status"] != "ok", "reason"]:
        assert html.escape(reason) in page
    assert '<section id="infeasible"><h2>Infeasible and invalid points (2)</h2>' in page


def test_report_is_deterministic(sweep, report, tmp_path):
    frame, objectives, _ = sweep
    again = write_html_report(frame, objectives, tmp_path / "again.html", title="test sweep")
    shuffled = write_html_report(frame.sample(frac=1, random_state=1), objectives, tmp_path / "shuffled.html",
                                 title="test sweep")
    assert again.read_bytes() == report.read_bytes() == shuffled.read_bytes()
    link = tmp_path / "link.html"
    link.symlink_to(tmp_path / "elsewhere.html")  # replaced, never followed
    write_html_report(frame, objectives, link, title="test sweep")
    assert not link.is_symlink() and not (tmp_path / "elsewhere.html").exists()


def test_sweep_writes_the_report_and_archsim_report_rebuilds_it(tmp_path):
    config = tmp_path / "counts.yaml"
    config.write_text(f"extends: {TPUV4I}\nsweep:\n  axes:\n    mxu.count: [2, 4]\n  workloads: [{DECODE}]\n")
    out = tmp_path / "out"
    proc = run_cli("sweep", str(config), "--out", str(out), "--executor", "serial", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    plots = [line for line in proc.stdout.splitlines() if line.startswith("plots")]
    assert (out / "report.html").is_file() and len(plots) == 1 and "report.html" in plots[0]
    rebuilt = run_cli("report", str(out), "--out", str(tmp_path / "rebuilt.html"))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.strip() == f"report: {tmp_path / 'rebuilt.html'}"
    assert (tmp_path / "rebuilt.html").read_bytes() == (out / "report.html").read_bytes()
    missing = run_cli("report", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "no such results" in missing.stderr


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Debian Chromium, offline: never Selenium Manager, no network lookups."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        why = f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"the report's browser test cannot run in CI: {why}; .ci/run installs them")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1800", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


# each shown Pareto plot: its marker traces' design names (from their hover text) and point count
VISIBLE_PARETO = """
return Array.from(document.querySelectorAll('.figure[data-kind^=pareto] .plotly-graph-div'))
  .filter(g => g.offsetParent !== null)
  .map(g => ({id: g.id, kind: g.closest('.figure').dataset.kind,
              points: g.data.filter(t => (t.mode || '').includes('markers')).reduce((n, t) => n + t.x.length, 0),
              names: [].concat(...g.data.filter(t => (t.mode || '').includes('markers'))
                                 .map(t => t.hovertext.map(h => h.split('<br>')[0].replace(/<\\/?b>/g, ''))))}));
"""
# plotly runs hovers at most once per 50 ms (a later one waits): each starts after that
HOVER = """
const [id, curve, point, done] = arguments, gd = document.getElementById(id);
setTimeout(() => {
  Plotly.Fx.hover(gd, [{curveNumber: curve, pointNumber: point}]);
  done(gd.querySelector('.hoverlayer').textContent);
}, 120);
"""


def _designs(frame, workload: str) -> list[str]:
    ok = frame[(frame["status"] == "ok") & (frame["workload"] == workload)]
    return sorted(ok["design"])


def test_report_in_a_browser(sweep, report, browser, tmp_path):
    frame, _, _ = sweep
    browser.get(report.as_uri())
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe
    shown = browser.execute_script("return document.getElementById('workload-select').value")
    workload = browser.execute_script(f"return document.getElementById('{shown}').dataset.workload")
    assert workload == "dit-xl-2-block-512"  # the first by name
    plots = browser.execute_script(VISIBLE_PARETO)
    assert [p["kind"] for p in plots] == ["pareto2d"] * 3 + ["pareto3d"]  # latency-energy, -area, energy-area; 3-D
    for plot in plots:  # every feasible design once, none hidden or merged
        assert plot["points"] == 14 and sorted(plot["names"]) == _designs(frame, workload), plot

    gd = plots[0]["id"]
    traces = browser.execute_script(f"return document.getElementById('{gd}').data.map(t => [t.name, t.hovertext])")
    for curve, (name, hovers) in enumerate(traces):
        if hovers:
            text = browser.execute_async_script(HOVER, gd, curve, 0)
            design = re.sub(r"</?b>", "", hovers[0].split("<br>")[0])
            assert design in text and "latency" in text and "energy" in text, (name, text)
    shared = [(curve, i, h) for curve, (_, hovers) in enumerate(traces) for i, h in enumerate(hovers or [])
              if "designs at this point" in h]
    assert shared  # CIM-Design-A equals two CIM-TPU points on every objective
    text = browser.execute_async_script(HOVER, gd, shared[0][0], shared[0][1])
    assert re.search(r"\d designs at this point", text)

    browser.execute_script("const s = document.getElementById('workload-select');"
                           "s.selectedIndex = 1; s.dispatchEvent(new Event('change'));")
    plots = browser.execute_script(VISIBLE_PARETO)
    assert len(plots) == 4 and all(p["points"] == 12 for p in plots)
    assert sorted(plots[0]["names"]) == _designs(frame, "gpt3-30b-layer-decode")

    latency = browser.execute_script("""
        const s = document.querySelector('section.workload:not([hidden])');
        const th = Array.from(s.querySelectorAll('table.results th')).find(h => h.textContent.startsWith('latency'));
        th.click(); th.click();  // descending
        return Array.from(s.querySelectorAll('table.results tbody tr'))
          .map(r => parseFloat(r.cells[th.cellIndex].dataset.v));""")
    assert len(latency) == 12 and latency == sorted(latency, reverse=True)
    bad = browser.execute_script("return document.querySelectorAll('#infeasible tbody tr').length")
    assert bad == 2
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    browser.save_screenshot(str(tmp_path / "report.png"))
