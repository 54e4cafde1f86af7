"""pytest wiring of the benchmark suite: which set runs, where results are stored, what each saved run records,
and skipping the whole suite where timings would mean nothing.

A pytest plugin of its own (entry point ``pytest11``: ``attnconf_benchmarks``), active where pytest-benchmark is
installed (the ``test`` extra), so the options exist from any folder: ``python -m pytest benchmarks --benchmark-only``
in a clone, ``python -m pytest --pyargs attnconf.benchmarks --benchmark-only`` after ``pip install``. Every registered
implementation is benchmarked through the ``impl`` fixture of the attnconf plugin; each case runs only where the
implementation's capability manifest declares it.
"""

from __future__ import annotations

import gc
import os
import time

import pytest
import torch

from attnconf import benchmarking
from attnconf.pytest_plugin import reports_root, resolve_device


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("attnconf-benchmarks", "attention benchmarks")
    group.addoption(
        "--bench-set",
        choices=["auto", *benchmarking.BENCH_SETS],
        default="auto",
        help="benchmark set: 'cpu' (small, minutes on a laptop), 'gpu' (the full set); auto picks by --device",
    )
    group.addoption(
        "--bench-materialised-max-seqlen",
        type=int,
        default=None,
        metavar="S",
        help="longest sequence for implementations that do not declare memory_efficient (default: the set's, "
        f"{benchmarking.MATERIALISED_MAX_SEQLEN}); 0 for no limit",
    )
    group.addoption(
        "--bench-impl-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="skip an implementation's remaining cases once it has spent SECONDS (cases run cheapest first; "
        f"default per set: { {k: v['impl_budget'] for k, v in benchmarking.SET_DEFAULTS.items()} }); 0 for none",
    )
    group.addoption(
        "--bench-host-bound",
        choices=["run", "skip"],
        default="run",
        help="'skip': skip (after warm-up) the cases whose host time to queue a call is more than the device "
        "clock's head start covers; their timing follows the host CPU's speed, so keep them out of a regression "
        "gate on a shared machine (GPU only)",
    )
    group.addoption(
        "--bench-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="time for the whole session: each implementation, when it starts, gets an equal share of what is "
        "left among those still to run, and skips its remaining cases (cheapest run first) once that is spent; "
        "nothing starts after SECONDS (so that a run bounded in time still saves what it measured)",
    )


def _xdist_active(config: pytest.Config) -> bool:
    return (
        config.getoption("dist", "no") not in ("no", None)
        or "PYTEST_XDIST_WORKER" in os.environ
        or hasattr(config, "workerinput")
    )


def _given(config: pytest.Config, option: str) -> bool:
    return any(arg == option or arg.startswith(option + "=") for arg in config.invocation_params.args)


def _active(config: pytest.Config) -> bool:
    return hasattr(config, "attnconf_bench_set")


def _benchmark_items(config: pytest.Config) -> int:
    return getattr(config, "attnconf_bench_items", 0)


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.hasplugin("benchmark"):
        return  # pytest-benchmark is not installed: the benchmarks cannot run, and nothing else is touched
    config.attnconf_bench_started = time.monotonic()
    device = resolve_device(config.getoption("--device"))
    config.attnconf_bench_device = device
    # pytest-benchmark keys its default folder by OS and Python only; give each device and torch version its own
    # history, so that a CPU run is never compared with a GPU run. An explicit --benchmark-storage wins.
    if not _given(config, "--benchmark-storage"):
        config.option.benchmark_storage = f"file://{benchmarking.storage_dir(device, reports_root(config))}"
    choice = config.getoption("--bench-set")
    config.attnconf_bench_set = ("gpu" if device.type == "cuda" else "cpu") if choice == "auto" else choice
    defaults = benchmarking.SET_DEFAULTS[config.attnconf_bench_set]
    for option in ("benchmark_max_time", "benchmark_min_rounds"):  # the set's defaults, unless given
        if not _given(config, "--" + option.replace("_", "-")):
            setattr(config.option, option, defaults[option])
    budget = config.getoption("--bench-impl-budget")
    config.attnconf_bench_impl_budget = defaults["impl_budget"] if budget is None else (budget or None)
    config.attnconf_bench_spent = {}  # implementation name -> seconds spent benchmarking it
    config.attnconf_bench_shares = {}  # implementation name -> its share of --bench-budget, fixed when it starts
    config.attnconf_bench_queue = []  # implementations with cases to run, in run order (set after collection)
    config.attnconf_bench_current = None
    benchmarking.use_device_clock(device)
    limit = config.getoption("--bench-materialised-max-seqlen")
    config.attnconf_bench_materialised_max = (
        benchmarking.MATERIALISED_MAX_SEQLEN[config.attnconf_bench_set] if limit is None else (limit or None)
    )
    config.attnconf_bench_disabled = benchmarking.suite_disabled_reason(
        xdist_active=_xdist_active(config),
        disabled=config.getoption("benchmark_disable") and not config.getoption("benchmark_enable"),
    )


@pytest.hookimpl(trylast=True)  # after the plugin's ``impl`` parametrization, so ids read "<impl>-<case>"
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bench_case" in metafunc.fixturenames and _active(metafunc.config):
        cases = benchmarking.ordered(benchmarking.BENCH_SETS[metafunc.config.attnconf_bench_set]())
        metafunc.parametrize("bench_case", cases, ids=[f"{c.layout}-{c.id}" for c in cases])


def pytest_collection_finish(session: pytest.Session) -> None:
    """Which implementations have cases to run here, in run order: the ones --bench-budget is shared among."""
    config = session.config
    if not _active(config) or not _benchmark_items(config):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"attnconf benchmarks: set {config.attnconf_bench_set}, storage "
                            f"{config.getoption('benchmark_storage')}")
        if config.attnconf_bench_disabled:
            reporter.write_line(f"attnconf {config.attnconf_bench_disabled}")
    device = config.attnconf_bench_device
    queue, probed = [], {}
    for item in session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        impl, case = params.get("impl"), params.get("bench_case")
        if impl is None or case is None or impl.name in queue:
            continue
        if impl.name not in probed:
            probed[impl.name] = impl.unavailable_reason() or impl.capabilities.missing(device=device)
        if not probed[impl.name] and not benchmarking.skip_reason(impl, case, device,
                                                                  config.attnconf_bench_materialised_max):
            queue.append(impl.name)
    config.attnconf_bench_queue = queue


def _time_limit(config: pytest.Config, name: str) -> tuple[float | None, str]:
    """(seconds ``name`` may spend, how that was set): its share of --bench-budget and/or --bench-impl-budget."""
    shares = config.attnconf_bench_shares
    budget = config.getoption("--bench-budget")
    if name not in shares and budget is not None:
        waiting = [n for n in config.attnconf_bench_queue if n not in shares] or [name]  # this one included
        left = budget - (time.monotonic() - config.attnconf_bench_started)
        shares[name] = max(0.0, left) / len(waiting)
    limits = []
    if shares.get(name) is not None:
        limits.append((shares[name], f"its share of --bench-budget {budget:g} s"))
    cap = config.attnconf_bench_impl_budget
    if cap is not None:
        limits.append((cap, f"--bench-impl-budget {cap:g} s"))
    return min(limits) if limits else (None, "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _active(config):
        return
    benchmarks = [item for item in items if "benchmark" in getattr(item, "fixturenames", ())]
    config.attnconf_bench_items = len(benchmarks)
    reason = config.attnconf_bench_disabled
    for item in benchmarks if reason else ():
        item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    if not _active(config) or not _benchmark_items(config):
        return
    if config.attnconf_bench_disabled:
        terminalreporter.write_line(f"attnconf {config.attnconf_bench_disabled}", yellow=True)
        return
    session = getattr(config, "_benchmarksession", None)
    rows = [(b.param or b.name, b.extra_info) for b in getattr(session, "benchmarks", [])
            if b.extra_info.get("tflops") is not None]
    if rows:  # pytest-benchmark's tables show times only: the rates and memory that the JSON keeps, per case
        terminalreporter.write_sep("-", "attnconf: TFLOP/s (median round) and peak memory per case")
        for line in benchmarking.summary_lines(rows):
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def cache_flusher(device: torch.device) -> benchmarking.CacheFlusher:
    return benchmarking.CacheFlusher(device)


@pytest.fixture
def run_case(impl, device, cache_flusher, benchmark, request):  # impl first: it skips before a benchmark exists
    """``run_case(case)``: skip outside the manifest, past a time budget, when the shape does not fit on the GPU or
    (with --bench-host-bound=skip) when the case is host-bound; otherwise benchmark it."""
    config = request.config
    spent = config.attnconf_bench_spent

    def measure(case: benchmarking.BenchCase) -> dict:
        out_of_memory = None
        try:
            return benchmarking.run_benchmark(
                benchmark, impl, case, device, flush=cache_flusher,
                max_time=float(config.getoption("benchmark_max_time")),
                min_rounds=config.getoption("benchmark_min_rounds"),
                skip_host_bound=config.getoption("--bench-host-bound") == "skip",
            )
        except benchmarking.HostBound as exc:
            pytest.skip(f"{impl.name}: {exc} (--bench-host-bound=skip)")
        except torch.cuda.OutOfMemoryError as exc:
            out_of_memory = str(exc).splitlines()[0]
            benchmark.has_error = True  # whatever was measured before is incomplete: not saved
        # outside the except block, so the traceback's frames (and their tensors) are gone before the cache is freed
        torch.cuda.empty_cache()
        pytest.skip(f"{impl.name}: out of GPU memory at this shape ({out_of_memory})")

    def run(case: benchmarking.BenchCase) -> dict:
        reason = benchmarking.skip_reason(impl, case, device, config.attnconf_bench_materialised_max)
        if reason:
            pytest.skip(f"{impl.name}: {reason}")
        budget = config.getoption("--bench-budget")
        if budget is not None and time.monotonic() - config.attnconf_bench_started > budget:
            pytest.skip(f"the benchmark time budget (--bench-budget {budget:g} s) is spent")
        limit, source = _time_limit(config, impl.name)
        if limit is not None and spent.get(impl.name, 0.0) > limit:
            pytest.skip(f"{impl.name} has spent its benchmark time ({spent[impl.name]:.0f} s > {limit:.0f} s, "
                        f"{source}); its cases run cheapest first")
        if config.attnconf_bench_current != impl.name:
            # a clean slate for each implementation: nothing the previous one cached is collected mid-round
            config.attnconf_bench_current = impl.name
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        started = time.monotonic()
        try:
            return measure(case)
        finally:
            spent[impl.name] = spent.get(impl.name, 0.0) + time.monotonic() - started

    return run


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-benchmark, which may be absent
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info["attnconf"] = benchmarking.machine_info(config.attnconf_bench_device)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-benchmark, which may be absent
def pytest_benchmark_update_commit_info(config: pytest.Config, commit_info: dict) -> None:
    # a copy of the working tree on a GPU machine has no .git, or a stale one that names an older commit: the caller
    # says which commit it is, and that wins over whatever git reports there
    if os.environ.get("ATTNCONF_COMMIT"):
        commit_info.update(id=os.environ["ATTNCONF_COMMIT"], source="ATTNCONF_COMMIT", dirty=None, time=None,
                           author_time=None)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-benchmark, which may be absent
def pytest_benchmark_update_json(config: pytest.Config, benchmarks, output_json: dict) -> None:
    for bench in output_json["benchmarks"]:  # parameters by name, not as unserializable objects
        bench["params"] = {key: _plain(value) for key, value in (bench.get("params") or {}).items()}
    output_json["attnconf"] = {
        "bench_set": config.attnconf_bench_set,
        "storage": benchmarking.storage_name(config.attnconf_bench_device),
        "implementations": {i.name: i.description for i in config.attnconf_impls},
        "args": list(config.invocation_params.args),
        # how busy the host was: timings from a shared machine are only as steady as its load (not machine_info,
        # which pytest-benchmark compares between runs and would then always call different)
        "host_load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _plain(value):
    if isinstance(value, benchmarking.BenchCase):
        return f"{value.layout}-{value.id}"
    return getattr(value, "name", value)
