"""attnconf.report: loading saved runs, regression verdicts, the history pick, plots and the self-contained page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from attnconf import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MACHINE = {"device": "cuda", "device_name": "NVIDIA Test GPU", "torch": "2.11.0+cu130", "cuda": "13.0",
           "triton": "3.6.0", "flash_attn": None}


def bench(impl: str, seqlen: int, mean: float, *, pass_="fwd", causal=False, batch=1, memory=None) -> dict:
    name = f"test_dense[{impl}-{pass_}-bf16-D64-H2-B{batch}-S{seqlen}-{'causal' if causal else 'full'}]"
    flops = 4 * 2 * 64 * seqlen * seqlen * batch
    return {
        "fullname": f"benchmarks/test_attention.py::{name}", "name": name,
        "stats": {"mean": mean, "median": mean, "min": mean * 0.9, "max": mean * 1.1, "stddev": 0.0, "rounds": 5},
        "extra_info": {"impl": impl, "layout": "dense", "pass": pass_, "seqlen": seqlen, "batch": batch, "heads": 2,
                       "head_dim": 64, "dtype": "bf16", "causal": causal, "flops": flops,
                       "tflops": flops / mean / 1e12, "peak_memory_bytes": memory,
                       "memory_method": "torch.cuda.max_memory_allocated"},
    }


def save_run(storage: Path, number: int, label: str, benchmarks: list[dict]) -> None:
    folder = storage / "Linux-CPython-3.12-64bit"
    folder.mkdir(parents=True, exist_ok=True)
    data = {"datetime": f"2026-11-2{number}T10:00:00+00:00", "machine_info": {"attnconf": MACHINE},
            "commit_info": {"id": f"{number}" * 12}, "benchmarks": benchmarks,
            "attnconf": {"host_load_1min": 0.5}}
    (folder / f"{number:04d}_{label}.json").write_text(json.dumps(data))


def full_run(scale: float = 1.0, slowed: str | None = None) -> list[dict]:
    out = []
    for impl, per_pair, linear in (("flash", 1e-10, True), ("eager", 3e-10, False)):
        for seqlen in (512, 1024, 2048):
            for pass_ in ("fwd", "fwd_bwd"):
                factor = scale * (1.5 if impl == slowed else 1.0) * (3.5 if pass_ == "fwd_bwd" else 1.0)
                memory = 4096 * seqlen if linear else 8 * seqlen * seqlen
                out.append(bench(impl, seqlen, per_pair * seqlen * seqlen * factor, pass_=pass_, memory=memory))
    return out


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    storage = tmp_path / "benchmarks" / "nvidia-test-gpu-torch2.11.0"
    save_run(storage, 1, "baseline", full_run())
    save_run(storage, 2, "recheck", full_run(scale=1.03))
    save_run(storage, 3, "slowed", [b for b in full_run(slowed="flash") if b["extra_info"]["impl"] == "flash"])
    return tmp_path


def test_runs_load_in_order_and_the_most_complete_is_shown(reports):
    runs = report.load_runs(reports / "benchmarks" / "nvidia-test-gpu-torch2.11.0")
    assert [r.title for r in runs] == ["0001_baseline", "0002_recheck", "0003_slowed"]
    assert report.most_complete(runs).title == "0002_recheck"  # newest of the full runs, never the partial one


def test_regressions_beyond_the_threshold_only(reports):
    baseline, recheck, slowed = report.load_runs(reports / "benchmarks" / "nvidia-test-gpu-torch2.11.0")
    assert report.regressions(recheck, baseline, 0.10) == []  # +3 % is noise at a 10 % threshold
    found = report.regressions(slowed, baseline, 0.10)
    assert len(found) == len(slowed.results) and all(abs(c - 0.5) < 1e-9 for _, c in found)


def test_history_pick_prefers_the_benchmark_in_most_runs_then_the_largest(reports):
    runs = report.load_runs(reports / "benchmarks" / "nvidia-test-gpu-torch2.11.0")
    assert report.pick_history_benchmark(runs).endswith("test_dense[flash-fwd_bwd-bf16-D64-H2-B1-S2048-full]")
    assert "eager-fwd-bf16-D64-H2-B1-S512" in report.pick_history_benchmark(runs, "*eager-fwd-*S512*")
    assert report.pick_history_benchmark(runs, "no-such-benchmark") is None


def test_growth_exponent_tells_linear_from_quadratic():
    assert report.growth_exponent([(s, 3.0 * s) for s in (256, 512, 1024)]) == pytest.approx(1.0)
    assert report.growth_exponent([(s, 0.5 * s * s) for s in (256, 512, 1024)]) == pytest.approx(2.0)
    assert report.growth_exponent([(256, 1.0)]) is None


def test_number_formatting():
    assert [report.fmt_number(v) for v in (312.44, 1.2345, 0.012345, 0, None)] == ["312", "1.23", "0.0123", "0", "–"]
    assert report.fmt_bytes(3 << 20) == "3.00 MiB" and report.fmt_percent(0.571) == "+57.1 %"


def embedded(page: str) -> dict:
    found = re.findall(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.DOTALL)
    assert len(found) == 1
    return json.loads(found[0])


def test_page_finds_every_matrix_and_embeds_its_cells_and_tests(tmp_path):
    """Matrices anywhere under the reports folder (the main ones first), never benchmark histories or other JSON;
    each cell as the Markdown matrix aggregates it, with its tests' records; a reason that holds </script> or an
    infinite err/bound survives the embedding."""
    meta = {**MACHINE, "date": "2026-11-21", "seed": 3}
    records = [
        {"impl": "flash", "contract": "DENSE-1", "nodeid": "conformance/t.py::a[flash]", "outcome": "passed",
         "reason": "", "ratios": {"out": 0.8, "dq": 0.1}},
        {"impl": "flash", "contract": "MASK-1", "nodeid": "conformance/t.py::b[flash]", "outcome": "failed",
         "reason": "bad </script><b>", "ratios": {"out": float("inf")}, "failure": "NONFINITE"},
        {"impl": "off", "contract": "DENSE-1", "nodeid": "conformance/t.py::a[off]", "outcome": "skipped",
         "reason": "off: no GPU", "ratios": {}},
    ]
    for rel in ("conformance/gpu.json", "conformance/rerun/gpu.json", "a-first/gpu.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps({"meta": meta, "records": records}))
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "x.json").write_text(json.dumps({"records": "not a matrix"}))
    (tmp_path / "broken.json").write_text("{")
    save_run(tmp_path / "benchmarks" / "gpu-torch2.11.0", 1, "baseline", full_run())

    found = [rel.as_posix() for rel, _ in report.find_matrices(tmp_path)]
    assert found == ["conformance/gpu.json", "a-first/gpu.json", "conformance/rerun/gpu.json"]
    data = report.page_data(tmp_path)
    main = data["matrices"][0]
    assert main["main"] and not data["matrices"][1]["main"]
    assert main["impls"] == ["flash"] and main["not_run"] == {"off": "off: no GPU"} and main["seed"] == 3
    assert main["contracts"] == ["DENSE-1", "MASK-1"]  # spec order
    dense = main["cells"]["flash DENSE-1"]
    assert (dense["o"], dense["t"], dense["r"], dense["w"]) == ("passed", "PASS 0.80 out", 0.8, "out")
    mask = main["cells"]["flash MASK-1"]
    assert (mask["o"], mask["f"]) == ("failed", ["NONFINITE"])
    nodeid, outcome, reason, failure, ratios = main["records"][mask["k"][0]]
    assert ratios == {"out": float("inf")}
    assert (data["strings"][nodeid], outcome, data["strings"][reason], failure) == (
        "conformance/t.py::b[flash]", "failed", "bad </script><b>", "NONFINITE")

    report.write(tmp_path, threshold=0.10)
    page = (tmp_path / "report.html").read_text()
    assert embedded(page) == json.loads(json.dumps(report._finite(data)))  # what the script reads is the data
    assert page.count("</script>") == 2  # the data's and the script's: the reason did not close either
    assert embedded(page)["matrices"][0]["cells"]["flash MASK-1"]["r"] == "inf"
    # self-contained: nothing loaded from elsewhere (plots inline, no script or style by address)
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert page.count('src="data:image/png;base64,') == 3
    assert '<article class="storage" data-storage="gpu-torch2.11.0">' in page


def test_write_produces_markdown_html_and_plots(reports):
    conformance = reports / "conformance"
    conformance.mkdir()
    records = [{"impl": "flash", "contract": "DENSE-1", "nodeid": "x", "outcome": "passed", "reason": "",
                "ratios": {"out": 0.8}}]
    (conformance / "gpu.json").write_text(json.dumps({"meta": {**MACHINE, "date": "2026-11-21", "seed": 0},
                                                      "records": records}))
    md_path, html_path = report.write(reports, threshold=0.10)
    text = md_path.read_text()
    assert "| DENSE-1 " in text and "PASS 0.80" in text  # the conformance matrix with its measured ratio
    assert "0 of 12 slower by > 10%" in text  # the recheck against the baseline
    assert "| 0002_recheck | 2026-11-22 10:00:00 | 2222222222 | 0.5 | 12 |" in text
    assert "6 of 6 slower by > 10% (worst +50.0 %)" in text  # the slowed run
    pngs = sorted(p.name for p in (reports / "plots").glob("*.png"))
    assert pngs == ["nvidia-test-gpu-torch2.11.0-dense-bf16-d64-memory.png",
                    "nvidia-test-gpu-torch2.11.0-dense-bf16-d64-tflops.png", "nvidia-test-gpu-torch2.11.0-history.png"]
    assert all((reports / "plots" / p).read_bytes().startswith(PNG_MAGIC) for p in pngs)
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == 3 and 'src="plots/' not in page


def test_report_without_results_says_so(tmp_path):
    text = report.build_markdown(tmp_path)
    assert "No conformance matrix saved yet" in text and "No benchmark run saved yet" in text


def test_the_mask_pictures_come_from_the_reference_predicates():
    from attnconf import masks
    from attnconf.reference import visibility

    patterns = {caption: mask for _, caption, mask in masks.contract_patterns()}
    bottom_right = next(m for c, m in patterns.items() if c.startswith("causal, bottom-right"))
    assert torch.equal(bottom_right, visibility(6, 10, batch=1, causal="bottom_right")[0, 0])
    window = next(m for c, m in patterns.items() if c.startswith("sliding window (left 2, right 1)"))
    assert torch.equal(window, visibility(6, 10, batch=1, window=(2, 1))[0, 0])
    assert [row.sum().item() for row in window] == [4] * 5 + [3]  # keys i+4-2 .. i+4+1, clipped at the end
    text = "\n".join(report.mask_section())
    assert "**WINDOW-1**" in text and masks.picture(window) in text


def test_a_matrix_with_passes_above_one_is_marked_as_using_the_older_ratio():
    def record(ratio):
        return {"impl": "k", "contract": "DENSE-1", "nodeid": "conformance/test_dense.py::t[k]", "outcome": "passed",
                "reason": "", "ratios": {"out": ratio}}

    strings = report.Strings()
    new = report.matrix_data(Path("conformance/a.json"), {"meta": {}, "records": [record(0.4)]}, strings)
    old = report.matrix_data(Path("conformance/b.json"), {"meta": {}, "records": [record(2.1)]}, strings)
    assert not new["older_ratio"] and old["older_ratio"]
