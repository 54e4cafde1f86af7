"""The benchmark machinery (attnconf/benchmarking/, benchmarks/): FLOP counts, cases, runners, peak memory,
the pytest wiring and the deliberately slowed implementation. No timing is asserted anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import time
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from attnconf import TOP_LEFT, Capabilities, Implementation, benchmarking, registry
from attnconf.benchmarking import BenchCase, case_flops, forward_flops, visible_pairs
from attnconf.reference import causal_visibility, reference_attention

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


def case(**changes) -> BenchCase:
    fields = dict(layout="dense", pass_="fwd", seqlen=16, batch=2, heads=2, head_dim=8, dtype=torch.float32,
                  causal=False)
    return BenchCase(**{**fields, **changes})


# ---- FLOPs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alignment", [None, "top_left", "bottom_right"])
def test_visible_pairs_count_the_mask_exactly(alignment):
    for sq in range(0, 12):
        for sk in range(0, 12):
            expected = sq * sk if alignment is None else int(causal_visibility(sq, sk, alignment).sum())
            assert visible_pairs(sq, sk, alignment) == expected, (sq, sk)


def test_flops_full_causal_backward_and_varlen():
    full = case(seqlen=128, batch=3, heads=4, head_dim=64)
    assert case_flops(full) == 4 * 3 * 4 * 128 * 128 * 64
    causal = case(seqlen=128, batch=3, heads=4, head_dim=64, causal=True)
    assert case_flops(causal) == 4 * 3 * 4 * (128 * 129 // 2) * 64  # exact: the diagonal counts
    assert case_flops(case(pass_="bwd")) == 2.5 * case_flops(case())
    assert case_flops(case(pass_="fwd_bwd")) == 3.5 * case_flops(case())
    packed = case(layout="varlen", seqlen=100, batch=3, heads=2, head_dim=8, causal=True)
    lengths = packed.lengths()
    assert case_flops(packed) == sum(4 * 8 * 2 * (n * (n + 1) // 2) for n in lengths)
    assert forward_flops([5, 0], [7, 3], 1, 1, None) == 4 * 35


# ---- cases and sets -------------------------------------------------------------------------------------------


def test_varlen_lengths_spread_from_half_to_full():
    assert case(layout="varlen", seqlen=1000, batch=5).lengths() == [500, 625, 750, 875, 1000]
    assert case(layout="varlen", seqlen=64, batch=1).lengths() == [64]
    assert case(layout="dense", seqlen=64, batch=3).lengths() == [64, 64, 64]


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_sets_have_unique_ids_head_dim_64_and_every_pass(name):
    cases = benchmarking.BENCH_SETS[name]()
    ids = [(c.layout, c.id) for c in cases]
    assert len(ids) == len(set(ids))
    assert {c.pass_ for c in cases} == set(benchmarking.PASSES)
    assert {c.layout for c in cases} == set(benchmarking.LAYOUTS)
    assert cases[0].head_dim == 64 and any(c.causal for c in cases)


def test_cases_run_cheapest_first():
    flops = [case_flops(c) for c in benchmarking.ordered(benchmarking.gpu_set())]
    assert flops == sorted(flops)


def test_gpu_set_keeps_16k_tokens_per_batch():
    assert {c.batch * c.seqlen for c in benchmarking.gpu_set() if c.layout == "dense"} == {16384}


def test_peers_set_is_the_issue_16_table():
    cases = benchmarking.peers_set()
    assert len({repr(c) for c in cases}) == len(cases) == 24
    assert {(c.layout, c.dtype, c.head_dim, c.heads, c.batch * c.seqlen) for c in cases} == {
        (layout, torch.bfloat16, 64, 16, 16384) for layout in ("dense", "varlen")}
    assert {(c.layout, c.pass_, c.seqlen, c.causal) for c in cases} == {
        (layout, p, s, m) for layout in ("dense", "varlen") for p in ("fwd", "fwd_bwd") for s in (1024, 4096, 16384)
        for m in (False, True)}
    # packed: sequences of different lengths (except the one 16k sequence), none longer than S
    packed = {c.seqlen: c.lengths() for c in cases if c.layout == "varlen"}
    assert packed[16384] == [16384] and len(set(packed[1024])) == 16 and max(packed[4096]) == 4096


def test_skip_reasons_come_from_the_manifest():
    plain = Implementation("t-fwd-only", lambda q, k, v, **_: q, Capabilities(devices={"cpu"}))
    assert "head_dim" in benchmarking.skip_reason(plain, case(head_dim=8), CPU)
    assert "backward" in benchmarking.skip_reason(plain, case(head_dim=64, pass_="bwd"), CPU)
    assert "causal" in benchmarking.skip_reason(plain, case(head_dim=64, causal=True), CPU)
    assert "varlen" in benchmarking.skip_reason(plain, case(head_dim=64, layout="varlen"), CPU)
    assert "devices" in benchmarking.skip_reason(plain, case(head_dim=64), torch.device("cuda"))
    assert benchmarking.skip_reason(plain, case(head_dim=64), CPU) is None
    long = case(head_dim=64, seqlen=8192)
    assert "memory_efficient" in benchmarking.skip_reason(plain, long, CPU, materialised_max_seqlen=4096)
    linear = Implementation("t-linear", lambda q, k, v, **_: q, Capabilities(devices={"cpu"}, memory_efficient=True))
    assert benchmarking.skip_reason(linear, long, CPU, materialised_max_seqlen=4096) is None
    only_br = Capabilities(devices={"cpu"}, causal={"bottom_right"})
    assert benchmarking.causal_alignment(only_br, case(causal=True)) == "bottom_right"
    assert benchmarking.causal_alignment(only_br, case()) is None


class FakeEvent:
    """A CUDA event stand-in whose timestamp is the fake device clock at ``record()``."""

    device_ms = 0.0

    def record(self):
        self.stamp = FakeEvent.device_ms

    def elapsed_time(self, later):
        return later.stamp - self.stamp


def test_event_clock_reads_device_time_between_markers():
    syncs = []
    clock = benchmarking.EventClock(make_event=FakeEvent, synchronize=lambda: syncs.append(1))
    FakeEvent.device_ms = 1000.0
    start = clock()
    assert not syncs  # a start reading returns at once: the host goes on to queue the round's work
    FakeEvent.device_ms += 2.5  # the device works 2.5 ms between the markers, whatever the host clock does
    end = clock()
    assert syncs == [1]  # an end reading waits for the device
    FakeEvent.device_ms += 60_000.0  # a long pause between rounds
    start2 = clock()
    FakeEvent.device_ms += 0.125
    assert end - start == pytest.approx(2.5e-3) and clock() - start2 == pytest.approx(0.125e-3)


def test_event_clock_queues_the_head_start_before_the_start_marker():
    spins = []

    def spin(seconds):  # the device is busy for the head start, before the start event is recorded
        spins.append(seconds)
        FakeEvent.device_ms += seconds * 1e3

    clock = benchmarking.EventClock(make_event=FakeEvent, synchronize=lambda: None, spin=spin)
    clock.lead = 0.004
    start = clock()
    FakeEvent.device_ms += 1.0
    assert clock() - start == pytest.approx(1e-3) and spins == [0.004]  # the head start is not timed
    clock()  # a round that raised: its end reading never comes
    clock.reset()
    start = clock()
    FakeEvent.device_ms += 0.5
    assert clock() - start == pytest.approx(0.5e-3) and len(spins) == 3


def test_host_bound_means_the_head_start_cannot_cover_the_host():
    assert not benchmarking.is_host_bound(0.002)  # a few ms of Python: covered
    assert benchmarking.is_host_bound(0.015)  # the tiled teaching version queues thousands of kernels
    assert not benchmarking.is_host_bound(1.0, "cpu") and not benchmarking.is_host_bound(None)


def test_clock_lead_doubles_the_host_time_within_bounds():
    assert benchmarking.clock_lead(1e-6) == benchmarking.LEAD_MIN
    assert benchmarking.clock_lead(300e-6) == pytest.approx(600e-6)
    assert benchmarking.clock_lead(1.0) == benchmarking.LEAD_MAX


def test_device_clock_follows_the_benchmarked_device():
    benchmarking.use_device_clock(CPU)
    before = benchmarking.device_clock()
    assert benchmarking.device_clock() >= before and benchmarking.clocks._clock is __import__("time").perf_counter


def test_choose_rounds_fills_the_time_within_bounds():
    assert benchmarking.choose_rounds(0.01, 1.0, 5, 100) == 100
    assert benchmarking.choose_rounds(0.05, 1.0, 5, 100) == 20
    assert benchmarking.choose_rounds(2.0, 1.0, 5, 100) == 5


# ---- runners and one benchmark -----------------------------------------------------------------------------------


def _eager():
    registry.load_builtin()
    return registry.registered()["eager"]


@pytest.mark.parametrize("pass_", benchmarking.PASSES)
def test_runner_draws_fresh_inputs_and_times_the_pass(pass_):
    flushes = []
    runner = benchmarking.make_runner(_eager(), case(pass_=pass_, causal=True), CPU, lambda: flushes.append(1))
    (args1, _), (args2, _) = runner.setup(), runner.setup()
    assert len(flushes) == 2
    assert not torch.equal(args1[0], args2[0])  # fresh inputs every round
    out = runner.target(*args1)
    if pass_ == "fwd":
        q, k, v = args1
        assert not out.requires_grad
        torch.testing.assert_close(out, reference_attention(q, k, v, causal=TOP_LEFT))
    elif pass_ == "bwd":
        assert out.grad_fn is not None  # the forward ran in setup; the target ran its backward
    else:
        assert all(t.grad is not None for t in args1[:3])


class FakeBenchmark:
    """The part of pytest-benchmark's fixture that run_benchmark uses."""

    def __init__(self):
        self.extra_info, self.group, self.calls = {}, None, 0

    def pedantic(self, target, setup, rounds, warmup_rounds, iterations):
        times = []
        for _ in range(rounds):
            args, kwargs = setup()
            start = benchmarking.device_clock()
            target(*args, **kwargs)
            times.append(benchmarking.device_clock() - start)
            self.calls += 1
        times.sort()
        self.stats = SimpleNamespace(stats=SimpleNamespace(mean=sum(times) / len(times), median=times[len(times) // 2]))


def test_run_benchmark_records_shape_flops_and_memory():
    bench = FakeBenchmark()
    c = case(layout="varlen", pass_="fwd_bwd", seqlen=64, batch=3, head_dim=64, causal=True)
    info = benchmarking.run_benchmark(bench, _eager(), c, CPU, flush=lambda: None, max_time=0.0, min_rounds=2)
    assert bench.calls == 2 and bench.extra_info == info
    assert info["impl"] == "eager" and info["lengths"] == [32, 48, 64] and info["pass"] == "fwd_bwd"
    assert info["host_seconds"] > 0 and info["clock_lead"] is None  # a CPU clock has no head start
    assert info["flops"] == case_flops(c) and info["tflops"] > 0
    assert info["peak_memory_bytes"] > 0 and bench.group.startswith("varlen fwd_bwd")


def test_time_rounds_times_each_round_after_fresh_setup_as_run_benchmark_does():
    setups, durations = [], [0.002, 0.004, 0.003, 0.005]  # warm-up's call first, then the timed rounds

    def setup():
        setups.append(1)
        return (durations[len(setups) - 1],), {}

    runner = benchmarking.Runner(setup, time.sleep)
    rounds = benchmarking.time_rounds(runner, CPU, max_time=0.0, min_rounds=3)
    assert len(setups) == benchmarking.CPU_WARMUP_ROUNDS + 3  # one setup per call: fresh inputs, cache flush
    assert [r >= d for r, d in zip(rounds, durations[1:])] == [True] * 3
    assert max(rounds) < 0.5  # the rounds time the target, not the setup or warm-up


def test_cpu_peak_memory_sees_torch_allocations():
    size = 8 << 20

    def call():
        big = torch.ones(size // 4)  # 8 MiB, freed before returning
        return big[:4].clone()

    peak, result = benchmarking.peak_memory(call, CPU)
    assert result.shape == (4,)
    assert size <= peak < size + (1 << 20)


def test_peak_memory_shows_eager_growing_quadratically():
    eager = _eager()

    def peak(seqlen):
        q = torch.randn(1, seqlen, 2, 64)
        return benchmarking.peak_memory(lambda: eager(q, q, q), CPU)[0]

    assert peak(512) > 3.5 * peak(256)


def test_suite_disabled_reasons_say_why():
    assert "xdist" in benchmarking.suite_disabled_reason(xdist_active=True, disabled=True)
    assert "--benchmark-disable" in benchmarking.suite_disabled_reason(xdist_active=False, disabled=True)
    assert benchmarking.suite_disabled_reason(xdist_active=False, disabled=False) is None


def test_storage_is_per_device_and_torch_version():
    name = benchmarking.storage_name(CPU)
    assert name == f"cpu-torch{torch.__version__.split('+')[0]}"
    assert benchmarking.storage_dir(CPU, ROOT / "reports") == ROOT / "reports" / "benchmarks" / name
    info = benchmarking.machine_info(CPU)
    assert info["torch"] == torch.__version__ and {"triton", "flash_attn", "cuda"} <= set(info)


# ---- the deliberately slowed implementation ------------------------------------------------------------------


def test_slowed_implementation_does_extra_work_and_keeps_name_and_results():
    from attnconf.benchmarks.slowed_impl import slow_down

    calls = []

    def attention(q, k, v, **options):
        calls.append(1)
        return reference_attention(q, k, v, **options)

    original = registry.register(Implementation("t-slow-target", attention, Capabilities(devices={"cpu"},
                                                                                         backward=True)))
    try:
        slowed = slow_down("t-slow-target")
        assert registry.registered()["t-slow-target"] is slowed and slowed is not original
        q, k, v = (torch.randn(1, 9, 2, 8, requires_grad=True) for _ in range(3))
        out = slowed(q, k, v)
        assert len(calls) == 2  # one extra forward per call
        out.backward(torch.ones_like(out))
        assert len(calls) == 3  # and one more in the backward
        expected = q.detach().clone().requires_grad_()
        ref = reference_attention(expected, k.detach(), v.detach())
        ref.backward(torch.ones_like(ref))
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(q.grad, expected.grad)
    finally:
        registry.unregister("t-slow-target")


# ---- the pytest wiring, end to end (one small subprocess each) ------------------------------------------------


def _pytest(*args, env=None):
    # a fresh benchmark run, not a pytest-xdist worker's child: pytest-benchmark disables itself on seeing a
    # worker's PYTEST_XDIST_WORKER in its environment
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    return subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider",
                           "--impl", "eager", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**clean, **(env or {})})


def test_saved_run_carries_machine_info_extra_info_and_plain_params(tmp_path):
    proc = _pytest("-k", "dense-fwd-fp32 and S256-full", "--benchmark-storage", str(tmp_path),
                   "--benchmark-save", "unit", "--benchmark-min-rounds", "1", "--benchmark-max-time", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (saved,) = tmp_path.glob("*/0001_unit.json")
    data = json.loads(saved.read_text())
    assert data["machine_info"]["attnconf"]["torch"] == torch.__version__
    assert data["attnconf"]["bench_set"] == "cpu" and "eager" in data["attnconf"]["implementations"]
    (bench,) = data["benchmarks"]
    assert bench["params"] == {"impl": "eager", "bench_case": "dense-fwd-fp32-D64-H4-B1-S256-full"}
    assert bench["extra_info"]["seqlen"] == 256 and bench["extra_info"]["peak_memory_bytes"] > 0
    assert bench["options"]["timer"] == "device_clock"


def test_suite_skips_itself_when_benchmarks_are_disabled():
    proc = _pytest("-k", "dense-fwd-fp32 and S256-full", "--benchmark-disable", "-rs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout and "benchmarking is disabled (--benchmark-disable)" in proc.stdout


def test_budget_is_shared_among_the_implementations_still_to_run():
    from attnconf.benchmarks.plugin import _time_limit

    options = {"--bench-budget": 90.0}
    config = SimpleNamespace(getoption=options.get, attnconf_bench_shares={}, attnconf_bench_impl_budget=None,
                             attnconf_bench_queue=["a", "b", "c"], attnconf_bench_started=time.monotonic())
    assert _time_limit(config, "a")[0] == pytest.approx(30.0, abs=0.5)
    config.attnconf_bench_started -= 70.0  # "a" finished early-ish: 70 s gone, 20 left for "b" and "c"
    assert _time_limit(config, "b")[0] == pytest.approx(10.0, abs=0.5)
    assert _time_limit(config, "a")[0] == pytest.approx(30.0, abs=0.5)  # fixed when it started
    config.attnconf_bench_impl_budget = 5.0
    limit, source = _time_limit(config, "c")
    assert limit == 5.0 and "--bench-impl-budget" in source
    options["--bench-budget"] = None
    assert _time_limit(SimpleNamespace(getoption=options.get, attnconf_bench_shares={}, attnconf_bench_queue=[],
                                       attnconf_bench_impl_budget=None), "a") == (None, "")


def test_a_host_bound_case_is_refused_after_warm_up_when_asked(monkeypatch):
    monkeypatch.setattr(benchmarking.runner, "is_host_bound", lambda host_seconds, device_type: True)
    bench = FakeBenchmark()
    with pytest.raises(benchmarking.HostBound, match="host-bound"):
        benchmarking.run_benchmark(bench, _eager(), case(seqlen=32), CPU, flush=lambda: None, max_time=0.0,
                                   min_rounds=2, skip_host_bound=True)
    assert bench.calls == 0  # no timed round: nothing is saved for it
