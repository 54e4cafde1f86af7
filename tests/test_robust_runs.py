"""A run survives implementations that crash, hang, fail to import or return the wrong thing, and says which
failure it saw where; the correct implementations' cells do not change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SELECT = ["-k", "test_output_dtype_device_shape or test_custom_scale or test_head_dim_64"]


def _entry_point_that_fails_to_import(folder: Path) -> None:
    """An installed distribution (a dist-info on the path) whose attnconf entry point names a missing module."""
    info = folder / "brokenpkg-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenpkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[attnconf.implementations]\nbroken-import = brokenpkg_missing.mod:impl\n")


def _run(tmp_path: Path, name: str, impls: str, site: Path | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / name
    once = tmp_path / f"{name}-once"  # each crash and the hang happen once (tests/broken/impls.py)
    once.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), str(site or ""),
                                                                     os.environ.get("PYTHONPATH", "")])),
               ATTNCONF_BROKEN_ONCE=str(once))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance/test_dense.py", "-q", "-p", "no:cacheprovider", "--device",
         "cpu", "--impl-module", "tests.broken.impls:BROKEN", "--impl", impls, "--conformance-report", str(report),
         "--timeout", "20", *SELECT],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    files = list(report.glob("*.json"))
    assert files, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(files[0].read_text())


def _cells(data: dict, impl: str) -> dict:
    return {(r["nodeid"].split("[")[0], r["nodeid"].split("[")[1].replace(impl, "IMPL")): (r["outcome"], r.get("failure"))
            for r in data["records"] if r["impl"] == impl}


def test_one_default_run_survives_every_kind_of_broken_implementation(tmp_path):
    site = tmp_path / "site"
    _entry_point_that_fails_to_import(site)
    proc, data = _run(tmp_path, "all", "broken-*,eager,sdpa-math", site)
    assert proc.returncode == 1, proc.stdout[-3000:]  # tests failed, the run itself did not
    failures = {}
    for rec in data["records"]:
        if rec["outcome"] == "failed":
            failures.setdefault(rec["impl"], set()).add(rec["failure"])
    assert failures == {
        "broken-abort": {"CRASH"}, "broken-segfault": {"CRASH"}, "broken-hang": {"TIMEOUT"},
        "broken-raise": {"ERROR"}, "broken-shape": {"SHAPE"}, "broken-lse": {"SHAPE"}, "broken-no-64": {"FAIL"},
    }
    no_64 = {r["contract"] for r in data["records"] if r["impl"] == "broken-no-64" and r["outcome"] == "failed"}
    assert no_64 == {"HEAD-1"}
    skipped = {r["reason"] for r in data["records"] if r["impl"] == "broken-import"}
    assert len(skipped) == 1 and "brokenpkg_missing" in skipped.pop()
    lse = next(r for r in data["records"] if r["impl"] == "broken-lse" and r["outcome"] == "failed")
    assert "(out, lse?)" in lse["reason"]
    matrix = next((tmp_path / "all").glob("*.md")).read_text()
    assert "FAIL CRASH" in matrix and "FAIL TIMEOUT" in matrix and "broken-import" in matrix
    # the correct implementations' verdicts are those of a run without the broken ones
    _, alone = _run(tmp_path, "alone", "eager,sdpa-math")
    for impl in ("eager", "sdpa-math"):
        assert _cells(data, impl) == _cells(alone, impl)
        assert all(outcome == "passed" for outcome, _ in _cells(alone, impl).values())


def _verdicts(tmp_path: Path, name: str, *args: str) -> dict:
    report = tmp_path / name
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance/test_masks.py", "-q", "-p",
         "no:cacheprovider", "--device", "cpu", "--impl", "eager,tiled-pytorch", "--conformance-report",
         str(report), *args],
        cwd=ROOT, env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}, capture_output=True,
        text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = json.loads(next(report.glob("*.json")).read_text())["records"]
    return {(r["impl"], r["nodeid"], r["contract"]): r["outcome"] for r in records}


def test_two_workers_give_the_matrix_of_one_process(tmp_path):
    # -n 2 spreads the tests over two worker processes; the inputs depend on the test and the seed only, so every
    # verdict equals that of a run in this one process
    serial = _verdicts(tmp_path, "serial", "--attnconf-isolation", "off")
    spread = _verdicts(tmp_path, "spread", "-n", "2")
    assert len(serial) >= 40 and "passed" in serial.values()
    assert spread == serial
