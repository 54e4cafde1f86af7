"""The three ways to register an implementation, and selecting among them (examples/my_attention.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnconf import Capabilities, Implementation, registry

ROOT = Path(__file__).resolve().parent.parent


def run_suite(tmp_path: Path, *args: str, env_path: str | None = None) -> tuple[subprocess.CompletedProcess, list]:
    env = dict(os.environ)
    if env_path:
        env["PYTHONPATH"] = os.pathsep.join([env_path, str(ROOT), env.get("PYTHONPATH", "")])
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance/test_dense.py", "conformance/test_causal.py", "-q",
         "-p", "no:cacheprovider", "--conformance-report", str(report), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    records = []
    for path in report.glob("*.json"):
        records += json.loads(path.read_text())["records"]
    return proc, records


def test_drop_in_modules_register_themselves():
    registry.load_builtin()
    names = set(registry.registered())
    assert {"eager", "sdpa-math"} <= names


def test_command_line_module_object(tmp_path):
    proc, records = run_suite(tmp_path, "--impl-module", "examples.my_attention:my_attention", "--impl", "my-sdpa")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    outcomes = {r["outcome"] for r in records if r["impl"] == "my-sdpa"}
    assert "passed" in outcomes and {r["impl"] for r in records} == {"my-sdpa"}


def test_entry_point(tmp_path):
    dist = tmp_path / "site" / "my_attention_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-attention-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[attnconf.implementations]\nmy-sdpa = examples.my_attention:my_attention\n"
    )
    proc, records = run_suite(tmp_path, "--impl", "my-sdpa", env_path=str(tmp_path / "site"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert any(r["impl"] == "my-sdpa" and r["outcome"] == "passed" for r in records)


def test_unknown_selection_is_a_usage_error(tmp_path):
    proc, _ = run_suite(tmp_path, "--impl", "no-such-impl*")
    assert proc.returncode == 4  # pytest's usage error
    assert "matches no registered implementation" in proc.stderr


def test_bad_module_object_is_reported(tmp_path):
    proc, _ = run_suite(tmp_path, "--impl-module", "examples.my_attention:missing")
    assert proc.returncode != 0
    assert "has no attribute 'missing'" in proc.stderr + proc.stdout


def _forward(q, k, v, **options):
    return q


def test_names_are_unique_and_head_dim_64_is_required():
    first = registry.register(Implementation("unique-test", _forward, Capabilities()))
    try:
        registry.register(first)  # the same object again is harmless
        with pytest.raises(ValueError, match="already registered"):
            registry.register(Implementation("unique-test", _forward, Capabilities()))
    finally:
        registry.unregister("unique-test")
    with pytest.raises(ValueError, match="head_dim 64"):
        Implementation("no-64", _forward, Capabilities(head_dims={128}))


def test_options_not_in_use_are_not_passed():
    seen = {}

    def forward(q, k, v, **options):
        seen.update(options)
        return q

    impl = Implementation("options-test", forward, Capabilities())
    x = torch.zeros(1, 2, 1, 64)
    impl(x, x, x)
    assert seen == {}
    impl(x, x, x, causal="top_left", scale=0.5)
    assert seen == {"causal": "top_left", "scale": 0.5}


def test_unavailable_reason_from_a_crashing_probe():
    def probe():
        raise ImportError("no module named fancy_kernels")

    impl = Implementation("probe-test", _forward, Capabilities(), available=probe)
    assert "fancy_kernels" in impl.unavailable_reason()
