"""The report page in a real browser: headless Chromium draws reports/report.html from disk, and what it drew is
checked against the JSON it came from (cells and their colours per outcome, a cell's tests, the selector, the
side-by-side of two matrices, the benchmark tables and the comparison of two saved runs).

Needs Chromium (Debian: ``apt-get install chromium``; or ATTNCONF_CHROMIUM=/path/to/chrome) and the Python package
playwright (``pip install -e ".[browser]"``; its own browser download is not used). Without them the tests skip and
say which is missing. ATTNCONF_SCREENSHOTS=DIR keeps the screenshots of the committed reports' page there.
"""

from __future__ import annotations

import colorsys
import itertools
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from attnconf import conformance_report, report
from tests.test_report import full_run, save_run

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (1400, 760)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    explicit = os.environ.get("ATTNCONF_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _absent(reason: str):
    """Skip, or fail where ATTNCONF_REQUIRE_BROWSER is set (CI installs Chromium: a skip there would hide it)."""
    if os.environ.get("ATTNCONF_REQUIRE_BROWSER"):
        pytest.fail(reason + " (ATTNCONF_REQUIRE_BROWSER is set)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright import sync_api
    except ImportError:
        _absent("the browser test needs playwright: pip install -e '.[browser]'")
    executable = chromium_path()
    if executable is None:
        _absent("no Chromium here (apt-get install chromium, or set ATTNCONF_CHROMIUM): the report page is not "
                "checked in a browser")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """One loaded page, with the errors it raised and every request it made."""

    def __init__(self, browser, path: Path, width: int = WIDTHS[0]):
        self.page = browser.new_page(viewport={"width": width, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_function("document.documentElement.dataset.ready", timeout=20_000)
        assert self.page.evaluate("document.documentElement.dataset.ready") == "1", self.errors

    def cells(self, selector: str = "#matrix-table td.cell") -> list[dict]:
        return self.page.eval_on_selector_all(selector, """tds => tds.map(td => ({
            impl: td.dataset.impl, contract: td.dataset.contract, outcome: td.dataset.outcome,
            text: td.textContent, color: getComputedStyle(td).backgroundColor}))""")

    def legend_color(self, outcome: str) -> str:
        return self.page.eval_on_selector(f'#legend [data-outcome="{outcome}"] .swatch',
                                          "s => getComputedStyle(s).backgroundColor")

    def offline(self) -> None:
        """Nothing but the file itself and its data: URIs was asked for."""
        assert [u for u in self.requests if not u.startswith(("file:", "data:"))] == []
        assert self.errors == []

    def close(self) -> None:
        self.page.close()


def rgb(color: str) -> tuple[float, float, float]:
    r, g, b = (float(x) for x in re.findall(r"[\d.]+", color)[:3])
    return r / 255, g / 255, b / 255


def expected_cells(path: Path) -> tuple[dict, dict]:
    """What the page must draw for a matrix file, computed from the file alone: (impl, contract) -> cell, and the
    records of each cell."""
    records = json.loads(path.read_text())["records"]
    cells = conformance_report.aggregate(records)
    impls = {impl for impl, _ in cells if not conformance_report.unavailable(cells, impl)}
    by_cell: dict[tuple, list[dict]] = {}
    for rec in records:
        by_cell.setdefault((rec["impl"], rec["contract"]), []).append(rec)
    return {key: cell for key, cell in cells.items() if key[0] in impls}, by_cell


def check_matrix(page: Page, path: Path) -> list[dict]:
    """The drawn matrix is the file's: one cell per run implementation × contract, each with its outcome and text;
    cells the file has no test for are drawn as not tested."""
    cells, _ = expected_cells(path)
    drawn = page.cells()
    impls = {impl for impl, _ in cells}
    contracts = {cid for _, cid in cells}
    assert len(drawn) == len(impls) * len(contracts)
    assert {(c["impl"], c["contract"]) for c in drawn} == {(i, c) for i in impls for c in contracts}
    for c in drawn:
        cell = cells.get((c["impl"], c["contract"]))
        if cell is None:
            assert (c["outcome"], c["text"]) == ("none", "–")
        else:
            assert (c["outcome"], c["text"]) == (cell["outcome"], conformance_report.cell_text(cell)), c
    return drawn


def check_colors(page: Page, drawn: list[dict], path: Path) -> None:
    """One colour per outcome (the legend's), FAIL, XFAIL, SKIP and not tested all different; PASS green, darker
    the larger its err/bound."""
    cells, _ = expected_cells(path)
    for outcome in ("failed", "xfailed", "skipped", "none"):
        colors = {c["color"] for c in drawn if c["outcome"] == outcome}
        assert colors <= {page.legend_color(outcome)}, (outcome, colors)
    legend = {o: page.legend_color(o) for o in ("failed", "xfailed", "skipped", "none")}
    assert len(set(legend.values())) == 4, legend
    passes = []
    for c in drawn:
        if c["outcome"] == "passed":
            r, g, b = rgb(c["color"])
            assert g >= r and g > b, c  # green to yellow-green
            ratio = cells[(c["impl"], c["contract"])]["max_ratio"] or 0.0
            passes.append((ratio, colorsys.rgb_to_hls(r, g, b)[1]))
            assert c["color"] not in legend.values()
    passes.sort()
    lightness = [light for _, light in passes]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(lightness)), passes  # shaded by err/bound
    if passes and passes[-1][0] - passes[0][0] > 0.3:
        assert lightness[0] - lightness[-1] > 0.05  # and visibly so


# ---- a page made of every outcome ---------------------------------------------------------------------------

GPU_META = {"device": "cuda", "device_name": "NVIDIA Test GPU", "torch": "2.11.0+cu130", "triton": "3.6.0",
            "date": "2026-11-21", "seed": 7, "cuda": "13.0", "flash_attn": None}
CPU_META = {"device": "cpu", "device_name": "cpu", "torch": "2.13.0+cpu", "triton": "3.6.0", "date": "2026-12-01",
            "seed": 0, "cuda": None, "flash_attn": None}


def rec(impl, contract, test, outcome, *, reason="", ratios=None, failure=None, case=None):
    nodeid = f"conformance/test_x.py::{test}[{impl}" + (f"-{case}" if case else "") + "]"
    out = {"impl": impl, "contract": contract, "nodeid": nodeid, "outcome": outcome, "reason": reason,
           "ratios": ratios or {}}
    if failure:
        out["failure"] = failure
    return out


def gpu_records() -> list[dict]:
    records = []
    for impl, scale in (("alpha", 1.0), ("beta", 0.1)):
        records += [
            rec(impl, "DENSE-1", "test_random", "passed", ratios={"out": 0.9 * scale, "dq": 0.2 * scale}, case="1"),
            rec(impl, "DENSE-1", "test_random", "passed", ratios={"out": 0.3 * scale}, case="2"),
            rec(impl, "DENSE-3", "test_lengths", "passed", ratios={"out": 0.5 * scale}),
            rec(impl, "CAUSAL-1", "test_square", "passed", ratios={"out": 0.05}),
            rec(impl, "VALID-1", "test_ranks", "passed"),
            rec(impl, "GRAD-1", "test_grads", "skipped", reason=f"{impl}: backward not declared"),
        ]
    records += [
        rec("alpha", "MASK-1", "test_mask", "failed", reason="out err/bound 3.1 <script>alert(1)</script>",
            ratios={"out": 3.1}, failure="NUMERICS", case="causal"),
        rec("alpha", "MASK-1", "test_mask", "passed", ratios={"out": 0.4}, case="full"),
        rec("alpha", "MASK-2", "test_masked_keys", "failed", reason="the test process died", failure="CRASH"),
        rec("beta", "MASK-1", "test_mask", "passed", ratios={"out": 0.02}, case="causal"),
        rec("beta", "CAUSAL-2", "test_bottom_right", "xfailed", reason="beta expected failure: top-left only"),
        rec("gamma", "DENSE-1", "test_random", "skipped", reason="gamma: needs a GPU it has not got"),
        rec("gamma", "MASK-1", "test_mask", "skipped", reason="gamma: needs a GPU it has not got"),
    ]
    return records


def cpu_records() -> list[dict]:
    records = []
    for impl in ("alpha", "beta"):
        records += [
            rec(impl, "DENSE-1", "test_random", "passed", ratios={"out": 0.1}),
            rec(impl, "MASK-1", "test_mask", "passed", ratios={"out": 0.2}),
            rec(impl, "GRAD-1", "test_grads", "passed", ratios={"dq": 0.6}),  # differs: SKIP on the GPU
            rec(impl, "CAUSAL-1", "test_square", "failed" if impl == "beta" else "passed", failure="EXACT",
                reason="not exactly zero"),
        ]
    return records


def write_matrix(path: Path, meta: dict, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "records": records}))
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A reports folder with every outcome, two devices, a partial run in a subfolder, a file that is not a
    matrix, and a benchmark history of three runs (the third 50 % slower); its page written by report.write."""
    reports = tmp_path_factory.mktemp("reports")
    gpu = write_matrix(reports / "conformance" / "nvidia-test-gpu-torch2.11.0.json", GPU_META, gpu_records())
    cpu = write_matrix(reports / "conformance" / "cpu-torch2.13.0.json", CPU_META, cpu_records())
    partial = write_matrix(reports / "conformance" / "rerun-2026-11-22" / "nvidia-test-gpu-torch2.11.0.json",
                           GPU_META, [r for r in gpu_records() if r["contract"] == "MASK-1"])
    (reports / "calibration").mkdir()
    (reports / "calibration" / "cpu.json").write_text(json.dumps({"contracts": {}}))
    storage = reports / "benchmarks" / "nvidia-test-gpu-torch2.11.0"
    save_run(storage, 1, "baseline", full_run())
    save_run(storage, 2, "recheck", full_run(scale=1.03))
    save_run(storage, 3, "slowed", [b for b in full_run(slowed="flash") if b["extra_info"]["impl"] == "flash"])
    report.write(reports, threshold=0.10)
    return {"reports": reports, "page": reports / "report.html", "gpu": gpu, "cpu": cpu, "partial": partial,
            "storage": storage}


def select(page: Page, selector: str, *, label: str | None = None, value: str | None = None) -> None:
    if label is not None:
        page.page.select_option(selector, label=label)
    else:
        page.page.select_option(selector, value=value)


def test_page_draws_every_matrix_as_its_json_says(browser, made):
    page = Page(browser, made["page"])
    try:
        devices = page.page.eval_on_selector_all("#select-device option", "os => os.map(o => o.textContent)")
        assert devices == ["cpu", "NVIDIA Test GPU"]  # the main matrices first, by path
        check_colors(page, check_matrix(page, made["cpu"]), made["cpu"])
        select(page, "#select-device", label="NVIDIA Test GPU")
        runs = page.page.eval_on_selector_all("#select-run option", "os => os.map(o => o.textContent)")
        assert len(runs) == 2 and runs[0].startswith("conformance/nvidia-test-gpu") and "partial run" in runs[1]
        drawn = check_matrix(page, made["gpu"])
        check_colors(page, drawn, made["gpu"])
        outcomes = {c["outcome"] for c in drawn}
        assert outcomes == {"failed", "xfailed", "passed", "skipped", "none"}  # the page above shows them all
        assert {c["text"] for c in drawn if c["outcome"] == "failed"} == {"FAIL NUMERICS (1/2)", "FAIL CRASH (0/1)"}
        assert "gamma" not in {c["impl"] for c in drawn}  # ran nowhere: listed, not drawn
        assert "gamma: gamma: needs a GPU" in page.page.text_content("#matrix-notrun")
        select(page, "#select-run", value=page.page.eval_on_selector_all(
            "#select-run option", "os => os[1].value"))
        check_matrix(page, made["partial"])
        page.offline()
    finally:
        page.close()


def test_a_cell_opens_its_tests_with_ratios_reasons_and_commands(browser, made):
    page = Page(browser, made["page"])
    try:
        select(page, "#select-device", label="NVIDIA Test GPU")
        assert not page.page.is_visible("#details")
        page.page.click('#matrix-table td[data-impl="alpha"][data-contract="MASK-1"]')
        assert page.page.is_visible("#details")
        _, by_cell = expected_cells(made["gpu"])
        tests = page.page.eval_on_selector_all("#details .test", """ds => ds.map(d => ({
            nodeid: d.dataset.nodeid, outcome: d.dataset.outcome, ratios: d.querySelector('.ratios').textContent,
            reason: (d.querySelector('.reason') || {}).textContent || '', cmd: d.querySelector('.cmd').textContent}))""")
        expected = by_cell[("alpha", "MASK-1")]
        assert [t["nodeid"] for t in tests] == [r["nodeid"] for r in expected]
        assert [t["outcome"] for t in tests] == [r["outcome"] for r in expected]
        failing = tests[0]
        assert failing["ratios"] == "err/bound: out 3.10"
        assert failing["reason"] == expected[0]["reason"]  # drawn as text: the <script> in it never ran
        assert failing["cmd"] == ("python -m pytest 'conformance/test_x.py::test_mask[alpha-causal]' --impl 'alpha' "
                                  "--attnconf-seed 7 --device cuda")
        assert "FAIL NUMERICS" in page.page.text_content("#details .test .badge")
        page.page.keyboard.press("Escape")
        assert not page.page.is_visible("#details")
        # the keyboard opens a cell too
        page.page.focus('#matrix-table td[data-impl="beta"][data-contract="CAUSAL-2"]')
        page.page.keyboard.press("Enter")
        assert page.page.eval_on_selector_all("#details .test", "ds => ds.map(d => d.dataset.outcome)") == ["xfailed"]
        page.offline()
    finally:
        page.close()


def test_implementation_selector_hides_and_shows_columns(browser, made):
    page = Page(browser, made["page"])
    try:
        select(page, "#select-device", label="NVIDIA Test GPU")
        page.page.uncheck('#select-impls input[value="alpha"]')
        assert {c["impl"] for c in page.cells()} == {"beta"}
        page.page.click("#matrix-controls button:text('none')")
        assert page.cells() == []
        page.page.click("#matrix-controls button:text('all')")
        assert {c["impl"] for c in page.cells()} == {"alpha", "beta"}
    finally:
        page.close()


def differing(a: Path, b: Path) -> set[tuple[str, str]]:
    """Cells of the implementations both matrices ran whose outcome or failure classes differ."""
    ca, _ = expected_cells(a)
    cb, _ = expected_cells(b)
    impls = {i for i, _ in ca} & {i for i, _ in cb}
    contracts = {c for _, c in ca} | {c for _, c in cb}

    def key(cell):
        return None if cell is None else (cell["outcome"], sorted(set(cell["failures"]) - {"FAIL"}))

    return {(i, c) for i in impls for c in contracts if key(ca.get((i, c))) != key(cb.get((i, c)))}


def test_two_matrices_side_by_side_mark_the_cells_that_differ(browser, made):
    page = Page(browser, made["page"])
    try:
        labels = page.page.eval_on_selector_all("#compare-a option", "os => os.map(o => o.textContent)")
        # by default the first main matrix against a main matrix of another device
        assert page.page.eval_on_selector("#compare-a", "s => s.selectedOptions[0].textContent").startswith("cpu")
        assert "NVIDIA Test GPU" in page.page.eval_on_selector("#compare-b", "s => s.selectedOptions[0].textContent")
        marked = {(c["impl"], c["contract"]) for c in page.page.eval_on_selector_all(
            "#compare-table td.pair", "tds => tds.filter(td => td.dataset.differs === '1')"
            ".map(td => ({impl: td.dataset.impl, contract: td.dataset.contract}))")}
        expected = differing(made["cpu"], made["gpu"])
        assert marked == expected and ("alpha", "GRAD-1") in expected and ("alpha", "MASK-1") in expected
        assert page.page.eval_on_selector("#compare-summary", "p => p.dataset.differ") == str(len(expected))
        # a cell opens both sides' tests
        page.page.click('#compare-table td[data-impl="alpha"][data-contract="GRAD-1"]')
        outcomes = page.page.eval_on_selector_all("#details .test", "ds => ds.map(d => d.dataset.outcome)")
        assert sorted(outcomes) == ["passed", "skipped"]
        page.page.keyboard.press("Escape")
        # a matrix against itself: nothing differs
        gpu = next(i for i, label in enumerate(labels) if label.startswith("NVIDIA Test GPU · torch 2.11.0+cu130 · "
                                                                             "conformance/nvidia"))
        select(page, "#compare-a", value=str(gpu))
        select(page, "#compare-b", value=str(gpu))
        assert page.page.eval_on_selector("#compare-summary", "p => p.dataset.differ") == "0"
        page.offline()
    finally:
        page.close()


def test_benchmark_tables_sort_and_two_runs_compare_with_regressions_marked(browser, made):
    page = Page(browser, made["page"])
    try:
        runs = report.load_runs(made["storage"])
        shown = report.most_complete(runs)
        article = 'article.storage[data-storage="nvidia-test-gpu-torch2.11.0"]'
        assert page.page.eval_on_selector_all(f"{article} .figures img", "is => is.map(i => i.naturalWidth > 0)") \
            == [True, True, True]  # TFLOP/s, memory, history
        rows = page.page.eval_on_selector_all(f"{article} .bench-results tbody tr", "trs => trs.map(t => t.dataset.name)")
        assert sorted(rows) == sorted(shown.results)
        page.page.click(f"{article} .bench-results th[data-key=median_ms]")
        page.page.click(f"{article} .bench-results th[data-key=median_ms]")  # second click: ascending
        rows = page.page.eval_on_selector_all(f"{article} .bench-results tbody tr", "trs => trs.map(t => t.dataset.name)")
        medians = [shown.results[name].stats["median"] for name in rows]
        assert medians == sorted(medians)
        # the default comparison: the baseline against the newest run, the slowed one
        flagged = page.page.eval_on_selector_all(f"{article} .bench-compare tr.regression",
                                                 "trs => trs.map(t => t.dataset.name)")
        expected = report.regressions(runs[2], runs[0], 0.10)
        assert sorted(flagged) == sorted(name for name, _ in expected) and len(expected) == 6
        page.page.fill(f"{article} .compare-threshold", "60")  # the slowed run is 50 % slower
        assert page.page.eval_on_selector_all(f"{article} .bench-compare tr.regression", "t => t.length") == 0
        page.page.fill(f"{article} .compare-threshold", "10")
        select(page, f"{article} .compare-run-b", value="1")  # the recheck, 3 % slower: nothing flagged
        assert page.page.eval_on_selector(f"{article} .bench-compare-summary", "p => p.dataset.regressions") == "0"
        page.offline()
    finally:
        page.close()


# ---- the committed reports --------------------------------------------------------------------------------------


def test_page_of_the_committed_reports(browser, tmp_path):
    """The page of reports/ as committed (plots kept as they are): the CPU and the H100 matrices, the plots and a
    two-run comparison with the slowed run's regressions; screenshots at two widths."""
    reports = tmp_path / "reports"
    shutil.copytree(ROOT / "reports", reports, ignore=shutil.ignore_patterns("report.html", "report.md"))
    report.write(reports, replot=False)
    keep = Path(os.environ["ATTNCONF_SCREENSHOTS"]) if os.environ.get("ATTNCONF_SCREENSHOTS") else tmp_path
    keep.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page = Page(browser, reports / "report.html", width)
        try:
            devices = page.page.eval_on_selector_all("#select-device option", "os => os.map(o => o.textContent)")
            assert devices[:2] == ["cpu", "NVIDIA H100 80GB HBM3"]
            cpu = reports / "conformance" / "cpu-torch2.13.0.json"
            check_colors(page, check_matrix(page, cpu), cpu)
            page.page.screenshot(path=str(keep / f"report-{width}-matrix.png"))
            select(page, "#select-device", label="NVIDIA H100 80GB HBM3")
            h100 = reports / "conformance" / "nvidia-h100-80gb-hbm3-torch2.11.0.json"
            check_colors(page, check_matrix(page, h100), h100)
            page.page.locator("#compare").scroll_into_view_if_needed()
            page.page.screenshot(path=str(keep / f"report-{width}-compare.png"))

            figures = page.page.eval_on_selector_all(".figures img", "is => is.map(i => i.naturalWidth)")
            assert len(figures) == (reports / "report.md").read_text().count("](plots/") and all(figures)
            storage = reports / "benchmarks" / "nvidia-h100-80gb-hbm3-torch2.11.0"
            runs = report.load_runs(storage)
            article = f'article.storage[data-storage="{storage.name}"]'
            flagged = page.page.eval_on_selector_all(f"{article} .bench-compare tr.regression",
                                                     "trs => trs.map(t => t.dataset.name)")
            expected = report.regressions(runs[-1], runs[0], 0.10)
            assert expected and sorted(flagged) == sorted(name for name, _ in expected)
            page.page.locator(f"{article} .bench-compare-summary").scroll_into_view_if_needed()
            page.page.screenshot(path=str(keep / f"report-{width}-benchmarks.png"))
            page.page.click('#matrix-table td.cell[data-outcome="passed"]')
            page.page.screenshot(path=str(keep / f"report-{width}-details.png"))
            page.offline()
        finally:
            page.close()
