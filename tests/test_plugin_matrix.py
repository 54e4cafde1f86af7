"""The conformance matrix the plugin writes: a whole-suite run replaces it, a partial run merges into it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from attnconf.pytest_plugin import partial_run

ROOT = Path(__file__).resolve().parents[1]


def fake_config(args=("conformance",), **options):
    defaults = {"keyword": "", "markexpr": "", "deselect": None, "--impl": [], "lf": False, "maxfail": 0}
    defaults.update(options)
    return SimpleNamespace(args=list(args), getoption=lambda name, default=None: defaults.get(name, default),
                           invocation_params=SimpleNamespace(dir=ROOT))


@pytest.mark.parametrize(
    "args,options,partial",
    [
        (("conformance",), {}, False),
        ((".",), {}, False),
        (("tests", "conformance"), {}, False),
        (("conformance/test_dense.py",), {}, True),
        (("conformance/test_dense.py::test_head_dim_64",), {}, True),
        (("conformance",), {"keyword": "head_dim"}, True),
        (("conformance",), {"markexpr": "not slow"}, True),
        (("conformance",), {"--impl": ["sdpa-*"]}, True),
        (("conformance",), {"maxfail": 1}, True),
    ],
)
def test_partial_runs_are_recognised(args, options, partial):
    assert (partial_run(fake_config(args, **options), pytest.ExitCode.OK) is not None) == partial


def test_an_interrupted_run_is_partial():
    assert partial_run(fake_config(), pytest.ExitCode.INTERRUPTED) is not None


def _run(report: Path, impl: str) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance/test_dense.py", "-k", "test_head_dim_64", "--impl", impl, "-q",
         "-p", "no:cacheprovider", "--conformance-report", str(report),
         "--attnconf-isolation", "off"],  # merging is the point here, not the worker process
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [matrix] = report.glob("*.json")
    return json.loads(matrix.read_text())["records"]


def test_a_partial_run_keeps_the_other_results(tmp_path):
    assert {r["impl"] for r in _run(tmp_path, "eager")} == {"eager"}
    records = _run(tmp_path, "sdpa-math")
    assert {r["impl"] for r in records} == {"eager", "sdpa-math"}
    again = _run(tmp_path, "sdpa-math")  # the same tests once more: replaced, not added
    assert sorted(r["nodeid"] for r in again) == sorted(r["nodeid"] for r in records)
