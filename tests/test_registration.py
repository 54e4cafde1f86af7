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
         "-p", "no:cacheprovider", "--conformance-report", str(report),
         "--attnconf-isolation", "off",  # registration is the point here, not the worker process
         *args],
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


def test_names_are_unique_and_a_clash_names_both_origins():
    first = registry.register(Implementation("unique-test", _forward, Capabilities()), origin="module one")
    try:
        registry.register(first)  # the same object again is harmless
        with pytest.raises(ValueError, match="already registered by module one.*module two registers another"):
            registry.register(Implementation("unique-test", _forward, Capabilities()), origin="module two")
    finally:
        registry.unregister("unique-test")


def test_without_head_dim_64_an_implementation_registers_and_fails_head_1(tmp_path):
    # a contract to fail in the matrix, not a condition to register
    impl = Implementation("no-64", _forward, Capabilities(head_dims={128}))
    assert impl.capabilities.head_dims == {128}


def test_the_decorator_returns_the_users_function_unchanged():
    from attnconf import implementation

    @implementation("decorated-test", layout="bhsd", capabilities=Capabilities())
    def mine(q, k, v):
        return q * 2

    try:
        x = torch.ones(1, 2, 3, 64)
        assert torch.equal(mine(x, x, x), x * 2)  # the user's own [B, H, S, D] function, as written
        assert registry.registered()["decorated-test"] is mine.attnconf_implementation
        assert registry._register_object(mine, "test") == [mine.attnconf_implementation]  # --impl-module pkg:mine
    finally:
        registry.unregister("decorated-test")


@pytest.mark.parametrize("available,reason", [(True, None), (False, "available=False"), (lambda: True, None),
                                              (lambda: False, "returned False"), (lambda: "no GPU", "no GPU")])
def test_available_takes_a_bool_a_function_of_one_or_a_reason(available, reason):
    impl = Implementation("avail-test", _forward, Capabilities(), available=available)
    got = impl.unavailable_reason()
    assert got is None if reason is None else reason in got


def test_a_plain_function_given_as_a_factory_says_what_was_expected():
    with pytest.raises(ValueError, match="takes arguments, so it is not a factory"):
        registry._register_object(_forward, "--impl-module m:_forward")


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


QUICK = ("-k", "head_dim_64 or square_causal")  # a few tests are enough to see which implementations ran


def test_an_implementation_whose_every_test_skips_for_its_device_fails_the_run(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("the suite runs on CUDA here, where the CUDA-only implementation runs")
    proc, records = run_suite(tmp_path, "--device", "cpu", "--impl-module", "tests.broken.off_device:CUDA_ONLY",
                              "--impl", "cuda-only,eager", *QUICK)
    assert {r["outcome"] for r in records if r["impl"] == "cuda-only"} == {"skipped"}
    assert {r["outcome"] for r in records if r["impl"] == "eager"} == {"passed"}
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "every test of cuda-only skipped: device 'cpu' not declared" in proc.stdout
    # a built-in left out of a device by its manifest, and not named by --impl, skips without failing the run
    proc, _ = run_suite(tmp_path, "--device", "cpu", "--impl", "eager,flash-attn*", *QUICK)
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_no_builtins_leaves_attnconfs_own_implementations_out(tmp_path):
    proc, records = run_suite(tmp_path, "--no-builtins", "--impl-module", "examples.my_attention:my_attention", *QUICK)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert {r["impl"] for r in records} == {"my-sdpa"}
    proc, _ = run_suite(tmp_path, "--no-builtins", "--impl", "eager")
    assert proc.returncode == 4 and "matches no registered implementation" in proc.stderr
