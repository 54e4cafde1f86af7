"""pytest wiring: options, the ``impl`` and ``device`` fixtures, contract markers, expected failures, the matrix.

Registered as a pytest plugin (entry point ``pytest11``), so ``pip install attnconf`` is all the set-up: from any
folder, ``python -m pytest --pyargs attnconf.conformance --impl-module my_pkg.mod:obj`` runs the suite on one's own kernel.
The hypothesis profiles live here too: ``ci`` (the default; few examples, derandomized, so every run draws the same
cases) and ``thorough`` (many examples, random), chosen with ``--hypothesis-profile``. Any test that takes an ``impl`` argument runs once per selected
implementation; a test marked ``@pytest.mark.contract("ID")`` is counted under that contract in the matrix.
"""

from __future__ import annotations

import datetime
import fnmatch
import functools
import hashlib
import importlib.resources
import importlib.util
import json
import os
import re
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from . import conformance_report, expected_failures, failures, registry
from .spec import contracts

_PROFILE_COMMON = dict(
    deadline=None,  # kernels compile on first call; wall-clock deadlines would be noise
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
    database=None,  # a failure replayed from a local example database would make the verdict depend on the folder
)
settings.register_profile("ci", max_examples=12, derandomize=True, **_PROFILE_COMMON)
settings.register_profile("thorough", max_examples=300, **_PROFILE_COMMON)
settings.load_profile("ci")  # hypothesis's own plugin loads --hypothesis-profile after this, when it is given

RESULTS_KEY = "attnconf"
# Per contract test, unless --timeout says otherwise: far above the slowest correct test measured (a compiled
# FlexAttention property: 12 s alone on two CPU cores, over 180 s with one thread beside two other suite runs; on a
# GPU, flash-attn 4 JIT-compiles one kernel per shape), so a loaded machine does not turn slowness into a verdict.
DEFAULT_TIMEOUT_S = {"cpu": 900, "cuda": 900}
_records_sink: list[dict] = []  # one record per (test, contract), filled from test reports


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("attnconf", "attention conformance")
    group.addoption(
        "--impl",
        action="append",
        default=[],
        help="run only implementations whose names match these globs (comma-separated or repeated), e.g. 'sdpa-*'",
    )
    group.addoption(
        "--impl-module",
        action="append",
        default=[],
        metavar="MODULE:OBJECT",
        help="import MODULE and register OBJECT (an Implementation, a list of them, or a factory)",
    )
    group.addoption("--device", default="auto", help="device to test on: auto (cuda when available), cpu or cuda")
    group.addoption("--attnconf-seed", type=int, default=0, help="base seed for random inputs (default 0)")
    group.addoption(
        "--conformance-report",
        default=None,
        metavar="DIR",
        help="where to write the conformance matrix (default: conformance/ in the attnconf_reports folder); 'none' to "
        "skip",
    )
    parser.addini(
        "attnconf_reports",
        default="reports",
        help="folder, relative to the rootdir, for conformance matrices and benchmark histories (default: reports)",
    )
    group.addoption("--list-impls", action="store_true", help="list registered implementations and exit")
    group.addoption(
        "--no-builtins",
        action="store_true",
        help="leave attnconf's own implementations out (not even imported): only those of --impl-module and "
        "entry points run",
    )
    group.addoption(
        "--attnconf-isolation",
        choices=("auto", "off"),
        default="auto",
        help="auto (default): without -n, run the tests in one pytest-xdist worker, so a crash (abort, segfault) "
        "is recorded as CRASH and the run goes on; off: run in this process",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Isolation by default: unless told otherwise, the run goes through one pytest-xdist worker process, so an
    implementation that aborts or segfaults costs its test (recorded as CRASH, the worker replaced), not the run."""
    if getattr(config, "workerinput", {}).get(_ISOLATED_KEY) and hasattr(config.option, "benchmark_disable"):
        # the worker of a default (isolated) run, which is never a benchmark run: pytest-benchmark would only warn
        # that xdist disables it
        config.option.benchmark_disable = True
    reason = _no_isolation(config)
    if reason is None:
        config.attnconf_isolating = True
        config.option.numprocesses = 1
        config.option.dist = "load"
        config.option.tx = ["popen"]  # xdist's own cmdline_main may have run already
        if getattr(config.option, "maxworkerrestart", None) is None:
            config.option.maxworkerrestart = 10_000  # every crashing test gets its worker replaced
        if hasattr(config.option, "benchmark_disable"):
            config.option.benchmark_disable = True  # as in the worker, above


def _no_isolation(config: pytest.Config) -> str | None:
    """Why this run goes without a worker process (None: it isolates)."""
    option = config.option
    if config.getoption("--attnconf-isolation") == "off":
        return "--attnconf-isolation off"
    if not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput"):
        return "pytest-xdist is not loaded, or this is a worker already"
    if getattr(option, "numprocesses", None) is not None or getattr(option, "dist", "no") != "no":
        return "-n or --dist given"
    if option.usepdb or getattr(option, "trace", False) or option.collectonly or option.capture == "no":
        return "debugging, collecting or uncaptured output"
    if config.getoption("--list-impls") or getattr(option, "benchmark_only", False):
        return "listing implementations or benchmarking"
    if any("benchmark" in str(arg) for arg in config.args):
        return "benchmarks time in one process (pytest-benchmark disables itself under xdist)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "contract(id): the SPEC.md contract this test executes")
    config.attnconf_device = resolve_device(config.getoption("--device"))
    if config.attnconf_device.type == "cpu":
        # Triton kernels run on the CPU only through its interpreter, which must be chosen before they are defined
        os.environ.setdefault("TRITON_INTERPRET", "1")
    try:
        if not config.getoption("--no-builtins"):
            registry.load_builtin()
        for spec in config.getoption("--impl-module"):
            registry.load_object(spec)
        registry.load_entry_points()
    except ValueError as exc:  # a bad --impl-module, a name clash: one line, exit status 4, no traceback
        raise pytest.UsageError(str(exc)) from None
    patterns = config.attnconf_patterns = [p.strip() for opt in config.getoption("--impl") for p in opt.split(",")]
    try:
        config.attnconf_impls = registry.select(patterns)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    _records_sink.clear()


def resolve_device(option: str) -> torch.device:
    if option == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(option)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda: torch sees no CUDA device here")
    return device


def pytest_report_header(config: pytest.Config) -> list[str]:
    impls = ", ".join(i.name for i in config.attnconf_impls)
    return [
        f"attnconf: device {device_name(config.attnconf_device)}, torch {torch.__version__}, "
        f"seed {config.getoption('--attnconf-seed')}",
        f"attnconf: implementations {impls}",
    ]


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if not config.getoption("--list-impls"):
        return
    for impl in config.attnconf_impls:
        caps = impl.capabilities.on(config.attnconf_device)
        status = impl.unavailable_reason() or impl.capabilities.missing(device=config.attnconf_device) or "available"
        print(f"{impl.name}: {impl.description}\n  status on {config.attnconf_device.type}: {status}")
        for key, value in caps.describe().items():
            if value not in ({}, "", None, []):
                print(f"  {key}: {value}")
    pytest.exit("listed implementations", returncode=0)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" in metafunc.fixturenames:
        impls = metafunc.config.attnconf_impls
        metafunc.parametrize("impl", impls, ids=[i.name for i in impls], indirect=True)


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    return request.config.attnconf_device


@pytest.fixture
def impl(request: pytest.FixtureRequest, device: torch.device) -> registry.Implementation:
    """The implementation under test; skips when it cannot run here or does not declare this device."""
    chosen: registry.Implementation = request.param
    reason = chosen.unavailable_reason() or chosen.capabilities.missing(device=device)
    if reason:
        pytest.skip(f"{chosen.name}: {reason}")
    return chosen


def case_key(item: pytest.Item) -> str:
    """What a test's random inputs derive from: its file name, function and case parameters.

    Never the implementation (every implementation sees the same numbers), never the path or the folder pytest
    starts in (the same verdict from any checkout or installation).
    """
    callspec = getattr(item, "callspec", None)
    params = {} if callspec is None else {k: v for k, v in callspec.params.items() if k != "impl"}
    described = ",".join(f"{k}={_param_text(v)}" for k, v in sorted(params.items()))
    return f"{Path(str(item.path)).stem}::{getattr(item, 'originalname', item.name)}[{described}]"


def _param_text(value) -> str:
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, (str, int, float, bool, type(None))):
        return repr(value)
    return getattr(value, "__name__", None) or type(value).__name__  # a function parameter: its name


def derived_seed(base: int, key: str) -> int:
    """A 63-bit seed from the run's --attnconf-seed and a key (a case key, or a hypothesis draw)."""
    digest = hashlib.sha256(f"{base}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seeded_generator(base: int, key: str) -> torch.Generator:
    """A CPU generator seeded with ``derived_seed(base, key)``."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(derived_seed(base, key))
    return gen


@pytest.fixture
def generator(request: pytest.FixtureRequest) -> torch.Generator:
    """A generator seeded from --attnconf-seed and the case (``case_key``): every test is reproducible alone."""
    return seeded_generator(request.config.getoption("--attnconf-seed"), case_key(request.node))


@pytest.fixture
def example_generator(request: pytest.FixtureRequest):
    """``example_generator(drawn_seed)``: the generator of one hypothesis example, also moved by --attnconf-seed."""
    base = request.config.getoption("--attnconf-seed")
    return lambda drawn: seeded_generator(base, f"example:{drawn}")


@pytest.fixture
def record_comparison(request: pytest.FixtureRequest):
    """Store a ``tolerance.Comparison`` on the test, for the matrix's measured ratios."""

    def record(comparison) -> None:
        request.node.user_properties.append((f"{RESULTS_KEY}.ratio.{comparison.tensor}", comparison.ratio))

    return record


def item_contracts(item: pytest.Item) -> set[str]:
    return {m.args[0] for m in item.iter_markers("contract")}


def is_hypothesis_test(item: pytest.Item) -> bool:
    return getattr(getattr(item, "obj", None), "is_hypothesis_test", False)


def reports_root(config: pytest.Config) -> Path:
    """Where a run writes its matrix and benchmark history: the ``attnconf_reports`` ini value under the rootdir."""
    return Path(config.rootpath, config.getini("attnconf_reports"))


@functools.cache  # asked for every collected test, several times; the answer does not change within a process
def suite_dir() -> Path:
    """The folder of the conformance suite, wherever it is installed."""
    return Path(str(importlib.resources.files("attnconf.conformance"))).resolve()


def suite_nodeid(item: pytest.Item) -> str:
    """The id the matrix and the expected-failure lists give a test: ``conformance/<file>::<test>``, the same from
    a clone (``conformance/...``), an installed package (``--pyargs attnconf.conformance``) or any other folder."""
    path = Path(item.path).resolve()
    suite = suite_dir()
    if suite not in path.parents or "::" not in item.nodeid:
        return item.nodeid
    return f"conformance/{path.relative_to(suite).as_posix()}::{item.nodeid.split('::', 1)[1]}"


def item_impl(item: pytest.Item) -> registry.Implementation | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("impl") if callspec else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    known = contracts()
    base_seed = config.getoption("--attnconf-seed")
    for item in items:
        if base_seed and is_hypothesis_test(item):
            # --attnconf-seed moves the drawn shapes too (hypothesis.seed on the test; it wins over derandomize)
            item.obj._hypothesis_internal_use_seed = derived_seed(base_seed, case_key(item))
        unknown = item_contracts(item) - set(known)
        if unknown:
            raise pytest.UsageError(f"{item.nodeid}: contract {sorted(unknown)} not in conformance/SPEC.md")
    _write_test_index(config, items)
    # a time limit per contract test unless the user set one (pytest-timeout's --timeout, or its ini option)
    if config.pluginmanager.hasplugin("timeout") and not (config.getoption("timeout", None) or config.getini("timeout")):
        limit = DEFAULT_TIMEOUT_S[config.attnconf_device.type]
        for item in items:
            if item_impl(item) is not None and item_contracts(item):
                item.add_marker(pytest.mark.timeout(limit))
    # expected failures, per implementation; warn about entries that match nothing (stale lists)
    used: dict[str, set[str]] = {}
    entries_by_impl = {i.name: expected_failures.for_implementation(i) for i in config.attnconf_impls}
    for item in items:
        chosen = item_impl(item)
        if chosen is None or not entries_by_impl.get(chosen.name):
            continue
        hit = expected_failures.find_reason(entries_by_impl[chosen.name], suite_nodeid(item), item_contracts(item))
        if hit:
            pattern, reason = hit
            used.setdefault(chosen.name, set()).add(pattern)
            # strict, except on hypothesis properties (one failing draw must not decide every draw's verdict) and
            # on numeric edges, whose outcome may turn with the machine's SIMD kernels
            strict = not (is_hypothesis_test(item) or expected_failures.is_numeric_edge(reason))
            item.add_marker(pytest.mark.xfail(reason=f"{chosen.name} expected failure: {reason}", strict=strict))
    # an entry is stale when the tests it could match were collected for that implementation and it matched none
    collected: dict[str, set[str]] = {}
    for item in items:
        chosen = item_impl(item)
        if chosen is not None:
            collected.setdefault(chosen.name, set()).update({suite_nodeid(item).split("::")[0], *item_contracts(item)})
    for name, entries in entries_by_impl.items():
        for pattern in set(entries) - used.get(name, set()):
            scope = collected.get(name, set())
            if pattern in scope or any(fnmatch.fnmatchcase(f, pattern.split("::")[0]) for f in scope):
                config.issue_config_time_warning(
                    pytest.PytestWarning(f"expected failure {pattern!r} of {name} matches no collected test"),
                    stacklevel=2,
                )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach the failure class (``attnconf.failures``) to a failed contract test's report, while the exception is
    at hand; user properties travel with the report (to the pytest-xdist controller too)."""
    report = yield
    if report.failed and call.excinfo is not None and item_contracts(item):
        exc = call.excinfo.value
        report.user_properties.append((f"{RESULTS_KEY}.failure", failures.classify(exc)))
        error_type = failures.error_type(exc)
        if error_type:
            report.user_properties.append((f"{RESULTS_KEY}.error_type", error_type))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed") or _crashed(report):
        _record(report)


def _crashed(report: pytest.TestReport) -> bool:
    return dict(report.user_properties).get(f"{RESULTS_KEY}.failure") == "CRASH"


# ---- pytest-xdist: the run survives a crashing implementation --------------------------------------------------
# A worker that dies (abort, segfault) takes its test's report with it; xdist reports the lost test and replaces the
# worker. The controller collects nothing itself, so each worker writes which implementation and contracts each of
# its tests has into a folder the controller named, and the crash report gets them from there.

_INDEX_KEY = "attnconf_test_index"
_ISOLATED_KEY = "attnconf_isolated"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # xdist controller, once per worker
    folder = getattr(node.config, "attnconf_index_dir", None)
    if folder is None:
        folder = node.config.attnconf_index_dir = tempfile.mkdtemp(prefix="attnconf-index-")
    node.workerinput[_INDEX_KEY] = folder
    node.workerinput[_ISOLATED_KEY] = getattr(node.config, "attnconf_isolating", False)


def _write_test_index(config: pytest.Config, items: list[pytest.Item]) -> None:
    folder = getattr(config, "workerinput", {}).get(_INDEX_KEY)
    if not folder:
        return
    index = {item.nodeid: [item_impl(item).name, sorted(item_contracts(item)), suite_nodeid(item)] for item in items
             if item_impl(item) is not None and item_contracts(item)}
    Path(folder, f"{config.workerinput['workerid']}.json").write_text(json.dumps(index))


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched) -> None:
    folder = getattr(report.node.config if hasattr(report, "node") else None, "attnconf_index_dir", None)
    for path in sorted(Path(folder).glob("*.json")) if folder else []:
        entry = json.loads(path.read_text()).get(crashitem)
        if entry:
            impl_name, cids, nodeid = entry
            report.user_properties += [(f"{RESULTS_KEY}.impl", impl_name), (f"{RESULTS_KEY}.contracts", cids),
                                       (f"{RESULTS_KEY}.nodeid", nodeid),
                                       (f"{RESULTS_KEY}.failure", "CRASH")]
            return



def _record(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    impl_name, cids = props.get(f"{RESULTS_KEY}.impl"), props.get(f"{RESULTS_KEY}.contracts")
    if not impl_name or not cids:
        return
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "failed"
        reason = report.wasxfail
    else:
        outcome = report.outcome
        reason = _skip_reason(report) if report.skipped else (_failure_line(report) if report.failed else "")
    ratios = {k.rsplit(".", 1)[1]: v for k, v in props.items() if k.startswith(f"{RESULTS_KEY}.ratio.")}
    nodeid = props.get(f"{RESULTS_KEY}.nodeid", report.nodeid)
    record = {"impl": impl_name, "nodeid": nodeid, "outcome": outcome, "reason": reason, "ratios": ratios}
    if outcome == "failed":
        record["failure"] = props.get(f"{RESULTS_KEY}.failure") or failures.classify(None, reason)
        if record["failure"] == "CRASH":  # one wording, whichever worker died
            record["reason"] = "the test process died (abort, segfault, or a killed process); the run went on"
        if props.get(f"{RESULTS_KEY}.error_type"):
            record["error_type"] = props[f"{RESULTS_KEY}.error_type"]
    for cid in cids:
        _records_sink.append({**record, "contract": cid})


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return re.sub(r"^Skipped: ", "", str(longrepr[2]))
    return str(longrepr)


def _failure_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is None:  # a lost worker's report carries its message as text
        return str(report.longrepr or "").splitlines()[0][:300] if report.longrepr else ""
    return crash.message.splitlines()[0][:300]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    chosen, cids = item_impl(item), item_contracts(item)
    if chosen is not None and cids:
        item.user_properties.append((f"{RESULTS_KEY}.impl", chosen.name))
        item.user_properties.append((f"{RESULTS_KEY}.contracts", sorted(cids)))
        item.user_properties.append((f"{RESULTS_KEY}.nodeid", suite_nodeid(item)))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def run_metadata(config: pytest.Config) -> dict:
    meta = {
        "device": config.attnconf_device.type,
        "device_name": device_name(config.attnconf_device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.date.today().isoformat(),
        "seed": config.getoption("--attnconf-seed"),
        "implementations": {i.name: i.capabilities.describe() for i in config.attnconf_impls},
    }
    for module, key in (("triton", "triton"), ("flash_attn", "flash_attn")):
        try:
            meta[key] = __import__(module).__version__
        except Exception:
            meta[key] = None
    return meta


def off_device_implementations(config: pytest.Config, records: list[dict]) -> dict[str, str]:
    """Implementations asked for (registered outside attnconf, or named exactly by --impl) whose manifest leaves out
    the run's device, so every one of their tests skipped: name -> why. Such a run fails instead of passing empty."""
    named = set(config.attnconf_patterns)
    ran = {r["impl"] for r in records if r["outcome"] != "skipped"}
    tested = {r["impl"] for r in records}
    found = {}
    for impl in config.attnconf_impls:
        if impl.name in tested - ran and (not registry.is_builtin(impl.name) or impl.name in named):
            reason = impl.capabilities.missing(device=config.attnconf_device)
            if reason:
                found[impl.name] = reason
    return found


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    for name, reason in getattr(config, "attnconf_off_device", {}).items():
        terminalreporter.write_line(
            f"attnconf: every test of {name} skipped: {reason}; declare the device in Capabilities(devices=...) if "
            "it runs there. The run fails rather than pass with nothing tested.", red=True)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    config = session.config
    if not hasattr(config, "workerinput"):
        config.attnconf_off_device = off_device_implementations(config, _records_sink)
        if config.attnconf_off_device and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if not _records_sink or hasattr(config, "workerinput"):
        return
    target = config.getoption("--conformance-report")
    if target == "none":
        return
    directory = Path(target) if target else reports_root(config) / "conformance"
    meta = run_metadata(config)
    stem = conformance_report.report_stem(meta)
    records, how = list(_records_sink), "written to"
    partial = partial_run(config, exitstatus)
    existing = directory / f"{stem}.json"
    if partial and existing.exists():
        # a -k run must not wipe the other tests' results: this run's tests replace theirs, the rest stay
        records, meta = conformance_report.merge([json.loads(existing.read_text()), {"meta": meta, "records": records}])
        how = f"merged ({partial}) into"
    json_path, md_path = conformance_report.write(records, meta, directory, stem)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"attnconf: conformance matrix {how} {md_path} and {json_path.name}")


def _arg_path(config: pytest.Config, arg: str) -> Path:
    """The file or folder a command-line argument names (a module name under ``--pyargs``)."""
    if config.getoption("pyargs", False):
        try:
            spec = importlib.util.find_spec(arg)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin:
            origin = Path(spec.origin)
            return (origin.parent if origin.name == "__init__.py" else origin).resolve()
    return Path(config.invocation_params.dir, arg).resolve()


def partial_run(config: pytest.Config, exitstatus) -> str | None:
    """Why this run did not cover the whole suite (None when it did): such a run is merged into the matrix."""
    if config.getoption("keyword", None) or config.getoption("markexpr", None) or config.getoption("deselect", None):
        return "tests deselected"
    if config.getoption("--impl"):
        return "implementations chosen"
    if config.getoption("lf", False) or config.getoption("maxfail", 0) or exitstatus == pytest.ExitCode.INTERRUPTED:
        return "stopped early or rerunning failures"
    suite = suite_dir()
    for arg in config.args:
        path = _arg_path(config, arg.split("::")[0])
        if "::" in arg or suite in path.parents:  # a test, or a file or folder inside conformance/
            return "part of the suite named"
    return None
