"""attnconf.compat: torch feature gates, the timed run, and the tables across torch versions."""

from __future__ import annotations

import configparser
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from attnconf import compat

ROOT = Path(__file__).resolve().parent.parent
# pytest without attnconf's plugins (what is timed here is the wrapper, not the suite), then --rootdir's value
PLAIN_PYTEST = ["-q", "-p", "no:cacheprovider", "-p", "no:attnconf", "-p", "no:attnconf_benchmarks", "--rootdir"]


def test_versions_ignore_local_and_pre_release_suffixes():
    assert compat.parse_version("2.9.1+cu128") == (2, 9, 1)
    assert compat.parse_version("2.10.0a0+git1234") == (2, 10, 0)
    assert compat.parse_version("2.6") == (2, 6, 0)
    assert compat.by_version(["2.10.0", "2.9.1", "2.14.1", "2.6.0"]) == ["2.6.0", "2.9.1", "2.10.0", "2.14.1"]
    with pytest.raises(ValueError):
        compat.parse_version("main")


def test_at_least_reads_the_installed_torch(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.9.1+cu128")
    assert compat.at_least(2, 9) and compat.at_least(2, 9, 1) and not compat.at_least(2, 10)


def test_inductor_reason_without_a_compiler(monkeypatch):
    monkeypatch.setattr(compat.shutil, "which", lambda name: None)
    assert "g++" in compat.inductor_cpp_reason()


def test_inductor_reason_without_setuptools_names_the_torch_version(monkeypatch):
    monkeypatch.setattr(compat.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setitem(sys.modules, "torch.utils.cpp_extension", None)  # import now raises ImportError
    monkeypatch.setattr(torch, "__version__", "2.9.1+cu128")
    reason = compat.inductor_cpp_reason()
    assert "torch 2.9.1+cu128" in reason and "setuptools" in reason


def test_inductor_reason_is_none_where_it_can_build(monkeypatch):
    monkeypatch.setattr(compat.shutil, "which", lambda name: "/usr/bin/" + name)
    pytest.importorskip("torch.utils.cpp_extension")
    assert compat.inductor_cpp_reason() is None


def test_compiled_flex_takes_the_inductor_reason_and_eager_flex_does_not(monkeypatch):
    from attnconf.impls import flex

    monkeypatch.setattr(compat, "inductor_cpp_reason", lambda: "no toolchain (torch 9.9)")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    assert flex._available(True)() == "no toolchain (torch 9.9)"
    assert flex._available(False)() is None


def test_compiled_flex_before_2_6_is_cuda_only(monkeypatch):
    from attnconf.impls import flex

    monkeypatch.setattr(torch, "__version__", "2.5.1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "torch 2.5.1" in flex._available(True)() and "CUDA only" in flex._available(True)()


def test_run_records_versions_duration_and_exit_status(tmp_path, monkeypatch):
    (tmp_path / "test_one.py").write_text("def test_ok():\n    pass\n\ndef test_bad():\n    assert False\n")
    monkeypatch.setenv("TOX_ENV_NAME", "torch9.9")
    status = compat.run(tmp_path / "reports", "conformance",
                        [str(tmp_path / "test_one.py"), *PLAIN_PYTEST, str(tmp_path)])
    assert status == 1  # pytest's own: one test failed
    records = list((tmp_path / "reports" / "runs").glob("conformance-torch*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["exit_status"] == 1 and record["env"] == "torch9.9" and record["duration_s"] >= 0
    assert record["torch"] == torch.__version__
    assert records[0].name == f"conformance-torch{torch.__version__.split('+')[0]}.json"


def _matrix(directory, version, records, triton="3.2.0"):
    meta = {"torch": version, "triton": triton, "device": "cpu", "device_name": "cpu", "date": "2026-12-01"}
    path = directory / "conformance" / f"cpu-torch{version.split('+')[0]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "records": records}))


def _rec(impl, contract, outcome, reason="", test="t"):
    return {"impl": impl, "contract": contract, "nodeid": f"{contract}::{test}[{impl}]", "outcome": outcome,
            "reason": reason}


def test_compat_table_counts_contracts_and_lists_what_differs(tmp_path):
    _matrix(tmp_path, "2.6.0+cu124", [
        _rec("a", "MASK-1", "passed"), _rec("a", "MASK-1", "failed", "NUMERICS err", test="u"),
        _rec("a", "GQA-1", "skipped", "torch 2.6.0 has no enable_gqa"),
        _rec("b", "MASK-1", "skipped", "b needs CUDA"), _rec("b", "GQA-1", "skipped", "b needs CUDA"),
    ])
    _matrix(tmp_path, "2.10.0+cu128", [
        _rec("a", "MASK-1", "passed"), _rec("a", "MASK-1", "passed", test="u"), _rec("a", "GQA-1", "passed"),
        _rec("b", "MASK-1", "passed"), _rec("b", "GQA-1", "xfailed", "documented deviation"),
    ], triton="3.6.0")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "conformance-torch2.6.0.json").write_text(json.dumps(
        {"torch": "2.6.0+cu124", "numpy": "2.3.5", "duration_s": 300.0, "exit_status": 1, "commit": "abc1234"}))
    text = compat.compat_markdown(tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| 2.")]
    assert [row.split(" | ")[0] for row in rows] == ["| 2.6.0+cu124", "| 2.10.0+cu128"]  # by version, not text
    assert rows[0].split(" | ")[1:7] == ["3.2.0", "2.3.5", "abc1234", "5.0", "1", "1 / 1 / 3 / 0"]
    assert rows[0].endswith("| 0 / 1 / 1 | not run¹ |")  # a: MASK-1 failed, GQA-1 skipped; b unavailable
    assert rows[1].split(" | ")[3:6] == ["?", "?", "?"]  # no run record: no commit or duration claimed
    assert rows[1].endswith("| 2 / 0 / 0 | 1 / 0 / 0 (+1 xfail) |")
    assert "- `b` on torch 2.6.0: b needs CUDA" in text
    differing = text.split("## Verdicts that differ")[1]
    assert "`a` GQA-1: 2.6.0 SKIP (torch 2.6.0 has no enable_gqa); 2.10.0 PASS" in differing
    assert "`a` MASK-1: 2.6.0 FAIL (1/2) (NUMERICS err" in differing or "`a` MASK-1: 2.6.0 FAIL (1/2)" in differing
    # b does not run on 2.6 at all: one line for that, not one per contract; on 2.10 alone nothing differs
    assert "- `b`: not run on torch 2.6.0" in differing
    assert "`b` GQA-1" not in differing and "`b` MASK-1" not in differing
    failures = text.split("## Failures and declared deviations")[1].split("## ")[0]
    assert "- torch 2.6.0: 1\n  - FAIL `MASK-1::u[a]`: NUMERICS err" in failures
    assert "- torch 2.10.0: 1\n  - XFAIL (declared) `GQA-1::t[b]`: documented deviation" in failures


def test_a_contract_missing_from_an_older_run_is_listed_apart(tmp_path):
    _matrix(tmp_path, "2.6.0", [_rec("a", "MASK-1", "passed")])
    _matrix(tmp_path, "2.7.0", [_rec("a", "MASK-1", "passed"), _rec("a", "WINDOW-1", "passed")])
    text = compat.compat_markdown(tmp_path)
    assert "None: every implementation has the same verdict" in text
    assert "- WINDOW-1: not in the runs of torch 2.6.0" in text.split("## Contracts some runs did not have")[1]


def _history(directory, version, times_s, run="0001_x"):
    path = directory / "benchmarks" / f"cpu-torch{version}" / "Linux-CPython-3.11-64bit" / f"{run}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmarks": [
        {"name": f"test_attention[{name}]", "stats": {"min": t}} for name, t in times_s.items()]}))


def test_bench_table_compares_each_version_with_the_previous_one(tmp_path):
    _history(tmp_path, "2.10.0", {"eager-fwd": 0.002, "sdpa-fwd": 0.001})
    _history(tmp_path, "2.6.0", {"eager-fwd": 0.001, "sdpa-fwd": 0.001})
    _history(tmp_path, "2.9.1", {"eager-fwd": 0.001})
    text = compat.bench_markdown(tmp_path)
    assert "| case | spread | 2.6.0 | 2.9.1 | 2.10.0 |" in text
    assert "| `eager-fwd` | 1.00x | 1 | 1 (1.00x) | **2 (2.00x)** |" in text
    assert "| `sdpa-fwd` | 1.00x | 1 | – | 1 (1.00x) |" in text  # compared with the last version that ran it
    assert "- `test_attention[eager-fwd]`: 2.9.1 1 ms -> 2.10.0 2 ms (2.00x" in text
    assert "sdpa-fwd`: " not in text


def test_bench_table_takes_the_best_run_and_flags_only_beyond_the_run_to_run_spread(tmp_path):
    _history(tmp_path, "2.6.0", {"a": 0.001, "b": 0.001}, run="0001_x")
    _history(tmp_path, "2.6.0", {"a": 0.0025, "b": 0.001}, run="0002_x")  # a: 2.5x between two runs of 2.6
    _history(tmp_path, "2.7.0", {"a": 0.002, "b": 0.002}, run="0001_x")
    _history(tmp_path, "2.7.0", {"a": 0.002, "b": 0.002}, run="0002_x")
    text = compat.bench_markdown(tmp_path)
    assert "| `a` | 2.50x | 1 | 2 (2.00x) |" in text  # best of the runs; 2x is inside a's own 2.5x spread
    assert "| `b` | 1.00x | 1 | **2 (2.00x)** |" in text  # b repeats exactly: 2x is a finding
    assert "largest 2.50x" in text
    flagged = text.split("## Slower than the previous version")[1]
    assert "`test_attention[b]`" in flagged and "`test_attention[a]`" not in flagged


def test_table_command_writes_both_and_fails_on_an_empty_folder(tmp_path, capsys):
    assert compat.main(["table", str(tmp_path)]) == 1
    _matrix(tmp_path, "2.6.0", [_rec("a", "MASK-1", "passed")])
    _history(tmp_path, "2.6.0", {"x": 0.001})
    assert compat.main(["table", str(tmp_path), "--output", str(tmp_path / "out")]) == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"compat.md", "benchmarks.md"}


def _tox_deps() -> dict[str, list[str]]:
    """tox.ini's torch environments -> their factor-conditional deps (no tox needed to read them)."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    deps = defaultdict(list)
    for line in ini["testenv"]["deps"].splitlines():
        match = re.match(r"\s*torch2\.\{([\d,]+)\}:\s*(.+)|\s*torch2\.(\d+):\s*(.+)", line)
        if match:
            minors = (match.group(1) or match.group(3)).split(",")
            for minor in minors:
                deps[f"2.{minor}"].append((match.group(2) or match.group(4)).strip())
    return deps


def test_tox_pins_each_torch_with_a_triton_and_starts_at_the_supported_bound():
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    envlist = ini["tox"]["envlist"].strip()
    minors = envlist.removeprefix("torch2.{").removesuffix("}").split(",")
    deps = _tox_deps()
    assert sorted(deps, key=compat.parse_version) == [f"2.{m}" for m in minors]
    for version, pins in deps.items():
        assert f"torch=={version}.*" in pins, version
        assert sum(p.startswith("triton==") for p in pins) == 1, (version, pins)
        triton = compat.parse_version(next(p for p in pins if p.startswith("triton==")).split("==")[1])
        assert ("numpy<2.4" in pins) == (triton < (3, 7, 1)), (version, pins)  # the Triton interpreter's bound
    oldest = min(deps, key=compat.parse_version)
    assert f'"torch>={oldest}"' in (ROOT / "pyproject.toml").read_text()


def test_sdpa_flash_declares_cpu_gqa_exactly_where_its_cpu_kernel_takes_it():
    from attnconf import registered
    from attnconf.impls import sdpa

    manifest = registered()["sdpa-flash"].capabilities.on("cpu")
    assert manifest.gqa == sdpa._takes_gqa(sdpa.SDPBackend.FLASH_ATTENTION, "cpu")
    assert manifest.gqa == compat.at_least(2, 9)  # the version the notes name ("No available kernel" before it)
    assert torch.__version__ in registered()["sdpa-flash"].capabilities.notes


def test_a_partial_rerun_joins_the_full_runs_record(tmp_path):
    (tmp_path / "test_one.py").write_text("def test_ok():\n    pass\n")
    args = [str(tmp_path / "test_one.py"), *PLAIN_PYTEST, str(tmp_path)]
    assert compat.is_partial(["-k", "x"]) and compat.is_partial(["--impl=eager"]) and compat.is_partial(["a.py::t"])
    assert not compat.is_partial(["conformance", "-n", "2", "-o", "attnconf_reports=x"])
    assert compat.run(tmp_path, "conformance", [*args, "-k", "ok"]) == 0  # no full run yet: marked partial
    (record_path,) = (tmp_path / "runs").iterdir()
    assert json.loads(record_path.read_text())["partial"] is True
    record_path.unlink()
    assert compat.run(tmp_path, "conformance", args) == 0
    full = json.loads(record_path.read_text())
    assert compat.run(tmp_path, "conformance", [*args, "-k", "ok"]) == 0
    joined = json.loads(record_path.read_text())
    assert joined["duration_s"] == full["duration_s"] and "partial" not in joined
    assert [r["pytest_args"][-2:] for r in joined["reruns"]] == [["-k", "ok"]]
