"""Benchmark machinery: the benchmark cases, FLOP counts, honest timing, peak memory, machine info, storage.

Used by the pytest-benchmark tests in ``benchmarks/`` and by the MEM-1 contract (``conformance/test_memory.py``).

Timing rules (what makes a GPU number honest):
- a round is the device time between two CUDA events around the call, read after waiting for the device, so it
  covers all the work the call launched (``EventClock``); the host gets a head start (a spin kernel before the
  start event, twice the host time a warm call takes to queue its work), so the host's launch latency, which
  varies from run to run, is not what is timed, unless the call is host-bound or synchronizes;
- warm-up calls run first, so compilation, autotuning and lazy initialisation stay out of the statistics;
- every round gets freshly drawn inputs, and a buffer larger than the last-level cache is overwritten after they
  are drawn, so no round finds its operands already in cache;
- peak memory is measured on a separate call, never inside a timed round.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from .capabilities import BOTTOM_RIGHT, TOP_LEFT, Capabilities
from .registry import Implementation
from .varlen import cu_seqlens_from_lengths

STORAGE_FOLDER = "benchmarks"  # under the reports folder (the attnconf_reports ini value under the rootdir)

PASSES = ("fwd", "bwd", "fwd_bwd")
LAYOUTS = ("dense", "varlen")
BACKWARD_FLOP_FACTOR = 2.5  # the backward does 2.5x the forward's matmul work (5 products of the forward's 2)
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}

# ---- cases and the two benchmark sets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchCase:
    """One benchmarked shape and pass. ``causal`` is a square causal mask (Sq = Sk, so both alignments agree).

    Dense: ``batch`` sequences of ``seqlen``. Varlen: a packed batch of ``batch`` sequences whose lengths spread
    evenly from ``seqlen // 2`` to ``seqlen`` (fixed, so every run measures the same batch).
    """

    layout: str
    pass_: str
    seqlen: int
    batch: int
    heads: int
    head_dim: int
    dtype: torch.dtype
    causal: bool

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS or self.pass_ not in PASSES:
            raise ValueError(f"layout must be one of {LAYOUTS} and pass one of {PASSES}")

    @property
    def backward(self) -> bool:
        return self.pass_ != "fwd"

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, str(self.dtype).replace("torch.", ""))

    @property
    def id(self) -> str:
        mask = "causal" if self.causal else "full"
        return f"{self.pass_}-{self.dtype_name}-D{self.head_dim}-H{self.heads}-B{self.batch}-S{self.seqlen}-{mask}"

    def lengths(self) -> list[int]:
        """The sequence lengths of the batch (all ``seqlen`` for dense)."""
        if self.layout == "dense" or self.batch == 1:
            return [self.seqlen] * self.batch
        low = self.seqlen // 2
        return [low + round(i * (self.seqlen - low) / (self.batch - 1)) for i in range(self.batch)]

    def needs(self) -> dict:
        """Capabilities this case needs, as keyword arguments of ``Capabilities.missing`` (causal apart)."""
        return dict(dtype=self.dtype, head_dim=self.head_dim, varlen=self.layout == "varlen",
                    backward=self.backward, seqlen=self.seqlen)

    def describe(self) -> dict:
        """JSON-friendly fields, stored in each result's ``extra_info``."""
        out = asdict(self)
        out["pass"] = out.pop("pass_")
        out["dtype"] = self.dtype_name
        if self.layout == "varlen":
            out["lengths"] = self.lengths()
        return out

    def __repr__(self) -> str:  # pytest-benchmark stores params with repr
        return f"{self.layout}:{self.id}"


def _cases(layout, passes, seqlens, dtypes, head_dims, causals, *, tokens=None, batch=1, heads=None):
    """Cartesian product; ``tokens`` fixes batch x seqlen (as flash-attention's benchmarks do); ``heads``: D -> H."""
    return [
        BenchCase(layout, p, s, max(1, tokens // s) if tokens else batch, heads[d], d, dt, c)
        for dt in dtypes for d in head_dims for p in passes for c in causals for s in seqlens
    ]


def cpu_set() -> list[BenchCase]:
    """A few minutes on a 2-core CPU; the memory plot still shows eager's quadratic growth."""
    fp32, both = [torch.float32], (False, True)
    return (
        _cases("dense", PASSES, (256, 512, 1024), fp32, (64,), both, heads={64: 4})
        + _cases("dense", ("fwd", "fwd_bwd"), (1024,), [torch.bfloat16], (64,), (False,), heads={64: 4})
        + _cases("varlen", ("fwd", "fwd_bwd"), (256, 1024), fp32, (64,), both, batch=4, heads={64: 4})
    )


def gpu_set() -> list[BenchCase]:
    """16k tokens per batch, heads x head_dim = 2048 (flash-attention's benchmark convention); head dim 64 first.

    Sized so that a baseline and a compared rerun of every implementation fit in one 9-minute device call.
    """
    bf16, both, tokens = [torch.bfloat16], (False, True), 16384
    heads = {64: 32, 128: 16}
    return (
        _cases("dense", PASSES, (1024, 2048, 4096, 8192, 16384), bf16, (64,), both, tokens=tokens, heads=heads)
        + _cases("dense", PASSES, (4096, 16384), bf16, (128,), both, tokens=tokens, heads=heads)
        + _cases("dense", PASSES, (4096,), [torch.float16], (64,), both, tokens=tokens, heads=heads)
        + _cases("varlen", PASSES, (2048, 16384), bf16, (64,), both, tokens=tokens, heads=heads)
    )


def peers_set() -> list[BenchCase]:
    """The peer table of issue 16 (one run, every peer beside triton-flash): bf16, head dim 64, 16 heads, S = 1k, 4k,
    16k, full and causal, forward and forward+backward; dense batches of 16k tokens, and packed (varlen) batches of
    as many sequences (16k / S), their lengths spread evenly from S/2 to S (16 sequences of 512-1024 tokens,
    4 of 2048-4096, one of 16384), for the implementations that take packed batches (flash-attn 2/4 varlen,
    torch-varlen, flex-compiled with a document mask, triton-flash natively)."""
    shape = dict(tokens=16384, heads={64: 16})
    return [case for layout in LAYOUTS for case in _cases(
        layout, ("fwd", "fwd_bwd"), (1024, 4096, 16384), [torch.bfloat16], (64,), (False, True), **shape)]


BENCH_SETS: dict[str, Callable[[], list[BenchCase]]] = {"cpu": cpu_set, "gpu": gpu_set, "peers": peers_set}


def ordered(cases: list[BenchCase]) -> list[BenchCase]:
    """Cheapest first, so that a time budget cuts the most expensive cases of an implementation, not the rest."""
    return sorted(cases, key=lambda c: (case_flops(c), c.layout, c.id))


# Per set: rounds and time per benchmark (pytest-benchmark's --benchmark-max-time / --benchmark-min-rounds, unless
# given), and the seconds one implementation may spend before its remaining cases are skipped (--bench-impl-budget):
# the Triton interpreter can cost minutes per case on a CPU. On a GPU, --bench-budget shares its time among the
# implementations instead (see attnconf/benchmarks/plugin.py). Ten rounds at least: one slow round then moves the mean
# by a tenth of its excess, not a fifth.
SET_DEFAULTS: dict[str, dict] = {
    "cpu": {"benchmark_max_time": "0.2", "benchmark_min_rounds": 3, "impl_budget": 60.0},
    "gpu": {"benchmark_max_time": "0.1", "benchmark_min_rounds": 10, "impl_budget": None},
    "peers": {"benchmark_max_time": "0.1", "benchmark_min_rounds": 10, "impl_budget": None},
}
# Implementations that materialise the [S, S] score matrix (memory_efficient not declared) stop at this length in
# each set: at 16k tokens and 32 heads one bf16 copy of it is 8 GiB at S = 8192, and such a run costs minutes
# while showing nothing the shorter lengths do not (the memory plot's S^2 slope is plain from 1k to 4k).
MATERIALISED_MAX_SEQLEN: dict[str, int | None] = {"cpu": None, "gpu": 4096, "peers": 4096}


def causal_alignment(caps: Capabilities, case: BenchCase) -> str | None:
    """The alignment to ask for (with Sq = Sk any declared one is the same mask); None for a full mask."""
    if not case.causal:
        return None
    declared = caps.causal
    return TOP_LEFT if TOP_LEFT in declared else BOTTOM_RIGHT if BOTTOM_RIGHT in declared else None


def skip_reason(impl: Implementation, case: BenchCase, device: torch.device,
                materialised_max_seqlen: int | None = None) -> str | None:
    """Why ``case`` is outside what ``impl`` declares on ``device`` (or beyond the set's length limit for
    implementations that materialise the score matrix), or None when it may run."""
    reason = impl.capabilities.missing(device=device, **case.needs())
    caps = impl.capabilities.on(device) if reason is None else None
    if reason is None and case.causal and causal_alignment(caps, case) is None:
        reason = "causal attention not declared (capability: causal)"
    if (reason is None and not caps.memory_efficient and materialised_max_seqlen is not None
            and case.seqlen > materialised_max_seqlen):
        reason = (f"memory_efficient not declared: this set runs implementations that materialise the score "
                  f"matrix up to S={materialised_max_seqlen} (--bench-materialised-max-seqlen)")
    return reason


# ---- FLOPs ------------------------------------------------------------------------------------------------------


def visible_pairs(seqlen_q: int, seqlen_k: int, causal: str | None) -> int:
    """How many (query, key) pairs the mask lets through, counted exactly (no S^2/2 approximation)."""
    if causal is None:
        return seqlen_q * seqlen_k
    offset = 0 if causal == TOP_LEFT else seqlen_k - seqlen_q  # row i sees keys j <= i + offset
    total = 0
    # rows whose visible count is clamped to 0 or to Sk contribute nothing or Sk; the rest form an arithmetic run
    first = max(0, -offset)  # first row seeing at least one key
    full_from = max(first, seqlen_k - 1 - offset)  # first row seeing every key
    full_from = min(full_from, seqlen_q)
    if full_from > first:
        a, b = first + offset + 1, full_from - 1 + offset + 1  # visible counts of the first and last partial rows
        total += (a + b) * (full_from - first) // 2
    total += max(0, seqlen_q - full_from) * seqlen_k
    return total


def forward_flops(lengths_q: list[int], lengths_k: list[int], heads: int, head_dim: int, causal: str | None) -> int:
    """2 matmuls (QK^T and PV) of 2 flops per multiply-add: 4 * D per visible pair, per head, per sequence."""
    pairs = sum(visible_pairs(sq, sk, causal) for sq, sk in zip(lengths_q, lengths_k))
    return 4 * head_dim * heads * pairs


def case_flops(case: BenchCase) -> float:
    """FLOPs of one call of the case's pass (causal- and varlen-aware)."""
    lengths = case.lengths()
    fwd = forward_flops(lengths, lengths, case.heads, case.head_dim, TOP_LEFT if case.causal else None)
    return fwd * {"fwd": 1.0, "bwd": BACKWARD_FLOP_FACTOR, "fwd_bwd": 1.0 + BACKWARD_FLOP_FACTOR}[case.pass_]


# ---- timing -----------------------------------------------------------------------------------------------------


class EventClock:
    """Seconds on the GPU's own clock, read through CUDA events, in (start, end) pairs around each round.

    A start reading queues a spin kernel that holds the stream for ``lead`` seconds, records the start event behind
    it and returns at once; the host then queues the round's kernels while the device spins (nvbench's
    "blocking kernel"), so the round measures the device's work rather than the host's launch latency, which
    varies from run to run by more than a 10% regression threshold on sub-millisecond calls. An end reading
    records the end event, waits for the device, and advances by the device time between the two events.
    A call whose host side outlasts the lead, or that synchronizes, still has the device waiting for the host
    inside its interval: host-bound implementations are timed as such. ``run_benchmark`` sets the lead from the
    host time measured in warm-up.
    """

    def __init__(self, make_event=None, synchronize=None, spin=None):
        self._make_event = make_event or (lambda: torch.cuda.Event(enable_timing=True))
        self._synchronize = synchronize or torch.cuda.synchronize
        self._spin = spin or _cuda_spin
        self.lead = 0.0
        self._start = None
        self._now = 0.0

    def __call__(self) -> float:
        if self._start is None:  # a round starts
            if self.lead > 0:
                self._spin(self.lead)
            self._start = self._make_event()
            self._start.record()
            return self._now
        end = self._make_event()
        end.record()
        self._synchronize()
        self._now += self._start.elapsed_time(end) / 1e3  # milliseconds between the two markers
        self._start = None
        return self._now

    def reset(self) -> None:
        """Forget a start reading left without its end (a round that raised): the next reading starts a round."""
        self._start = None


_spin_cycles_per_second: float | None = None


def _cuda_spin(seconds: float) -> None:
    """Queue a kernel that keeps the current stream busy for about ``seconds`` (``torch.cuda._sleep`` counts clock
    cycles; their rate is measured once)."""
    global _spin_cycles_per_second
    if _spin_cycles_per_second is None:
        cycles = 1_000_000
        torch.cuda._sleep(cycles)  # a first launch loads the kernel: not part of the measurement
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.cuda._sleep(cycles)
        end.record()
        end.synchronize()
        _spin_cycles_per_second = cycles / (start.elapsed_time(end) / 1e3)
    torch.cuda._sleep(int(seconds * _spin_cycles_per_second))


_clock: Callable[[], float] = time.perf_counter


def use_device_clock(device: torch.device) -> None:
    """Make ``device_clock`` read the clock of the device being benchmarked (set once per session)."""
    global _clock
    _clock = EventClock() if device.type == "cuda" else time.perf_counter


def device_clock() -> float:
    """pytest-benchmark's timer for this suite: CUDA events on a GPU (``EventClock``), ``perf_counter`` on a CPU."""
    return _clock()


def set_clock_lead(seconds: float) -> None:
    """The head start the device clock gives the host before each round (no effect on a CPU clock)."""
    if isinstance(_clock, EventClock):
        _clock.reset()
        _clock.lead = seconds


class CacheFlusher:
    """Overwrites a buffer twice the size of the last-level cache, so the next round starts with a cold cache."""

    CPU_BYTES = 64 << 20  # above the L3 of the machines we run on; cheap enough (a few ms) per round

    def __init__(self, device: torch.device):
        if device.type == "cuda":
            size = max(2 * torch.cuda.get_device_properties(device).L2_cache_size, 128 << 20)
        else:
            size = self.CPU_BYTES
        self.buffer = torch.empty(size // 4, dtype=torch.int32, device=device)

    def __call__(self) -> None:
        self.buffer.zero_()


def choose_rounds(call_seconds: float, max_time: float, min_rounds: int, max_rounds: int) -> int:
    """Enough rounds to fill ``max_time``, never fewer than ``min_rounds`` nor more than ``max_rounds``."""
    wanted = math.ceil(max_time / max(call_seconds, 1e-9))
    return max(min_rounds, min(max_rounds, wanted))


# ---- the calls that are timed -----------------------------------------------------------------------------------


@dataclass
class Runner:
    """``setup()`` draws fresh inputs (and, for the backward pass, runs the untimed forward) and returns
    pytest-benchmark's ``(args, kwargs)``; ``target(*args)`` is the timed call."""

    setup: Callable[[], tuple[tuple, dict]]
    target: Callable[..., object]


def make_runner(impl: Implementation, case: BenchCase, device: torch.device, flush: Callable[[], None]) -> Runner:
    caps = impl.capabilities.on(device)
    causal = causal_alignment(caps, case)
    options = {} if causal is None else {"causal": causal}
    if case.layout == "varlen":
        lengths = case.lengths()
        cu = cu_seqlens_from_lengths(lengths, device)
        q_shape = kv_shape = (sum(lengths), case.heads, case.head_dim)

        def attention(q, k, v):
            return impl.varlen(q, k, v, cu, cu, max(lengths), max(lengths), **options)
    else:
        q_shape = kv_shape = (case.batch, case.seqlen, case.heads, case.head_dim)

        def attention(q, k, v):
            return impl(q, k, v, **options)

    def fresh(shape, grad):
        # drawn on the device itself: a host-side draw and copy would cost more than many of the calls we time
        return torch.randn(shape, device=device, dtype=case.dtype).requires_grad_(grad)

    def inputs():
        grad = case.backward
        return fresh(q_shape, grad), fresh(kv_shape, grad), fresh(kv_shape, grad)

    if case.pass_ == "fwd":

        def setup():
            q, k, v = inputs()
            flush()
            return (q, k, v), {}

        def target(q, k, v):
            with torch.no_grad():  # inference forward: nothing kept for a backward
                return attention(q, k, v)

    elif case.pass_ == "bwd":

        def setup():
            q, k, v = inputs()
            out = attention(q, k, v)
            dout = torch.randn_like(out)
            flush()
            return (out, dout), {}

        def target(out, dout):
            out.backward(dout)
            return out

    else:

        def setup():
            q, k, v = inputs()
            dout = torch.randn(q_shape, device=device, dtype=case.dtype)
            flush()
            return (q, k, v, dout), {}

        def target(q, k, v, dout):
            out = attention(q, k, v)
            out.backward(dout)
            return out

    return Runner(setup, target)


def timed_call(runner: Runner) -> tuple[float, float]:
    """One untimed-setup, timed-target round outside pytest-benchmark (warm-up and round sizing).

    Returns (the round's time on the suite's clock, the host's time to return from the call).
    """
    args, kwargs = runner.setup()
    start = device_clock()
    host_start = time.perf_counter()
    runner.target(*args, **kwargs)
    host = time.perf_counter() - host_start
    return device_clock() - start, host


def warm_up(runner: Runner, rounds: int, budget: float) -> tuple[float, float]:
    """The first call (compilation, autotuning), then more while under ``rounds`` and ``budget`` seconds.

    Returns the fastest warm call's (time, host time): the first sizes the timed rounds, the second the head start
    the device clock gives the host.
    """
    calls = [timed_call(runner)]
    while len(calls) < rounds and sum(t for t, _ in calls[1:]) < budget:
        calls.append(timed_call(runner))
    warm = calls[1:] or calls
    return min(t for t, _ in warm), min(h for _, h in warm)


# ---- peak memory ------------------------------------------------------------------------------------------------


def peak_memory(fn: Callable[[], object], device: torch.device) -> tuple[int | None, object]:
    """(bytes the call allocated at its peak beyond what was allocated before it, the call's result).

    CUDA: ``torch.cuda.max_memory_allocated`` after a reset, minus the allocation before the call. CPU: the
    profiler's allocation events (``profile_memory=True``), summed in time order; allocations outside torch's
    allocator (numpy, the Triton interpreter) are invisible there, which the docs of the report say.
    None when the CPU profiler's event tree is not available in this torch.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before, result
    return _cpu_peak_memory(fn)


def _cpu_peak_memory(fn):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    try:
        from torch._C._profiler import _EventType

        tree = prof.profiler.kineto_results.experimental_event_tree()
    except (ImportError, AttributeError):
        return None, result
    events, stack = [], list(tree)
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.alloc_size))  # frees have negative sizes
        stack.extend(node.children)
    current = peak = 0
    for _, size in sorted(events):
        current += size
        peak = max(peak, current)
    return peak, result


def tensor_bytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


# ---- one benchmark ----------------------------------------------------------------------------------------------

GPU_WARMUP_ROUNDS = 3  # the first compiles or autotunes; the next ones settle caches and clocks
CPU_WARMUP_ROUNDS = 1
MAX_ROUNDS = 100
# The device clock's head start: twice the host's time to queue a call, within these bounds. Past the upper one
# (the tiled teaching version queues thousands of kernels) the round is host-bound and timed as such.
LEAD_MIN, LEAD_MAX = 100e-6, 20e-3
# A host-bound call is timed with the host CPU's speed in it, which wanders from round to round and from run to run
# (two runs minutes apart on one H100 machine: medians of host-bound benchmarks moved by up to 25 %, device-bound
# ones by at most 5.4 %): three times the rounds, and --bench-host-bound=skip keeps them out of a regression gate.
HOST_BOUND_ROUND_FACTOR = 3


def is_host_bound(host_seconds: float | None, device_type: str = "cuda") -> bool:
    """Whether the head start cannot cover the host's time to queue the call (so the host sets the round's time).

    On a CPU every call is host time: the notion does not apply there.
    """
    return device_type == "cuda" and host_seconds is not None and 2 * host_seconds > LEAD_MAX


def clock_lead(host_seconds: float) -> float:
    return min(LEAD_MAX, max(LEAD_MIN, 2 * host_seconds))


class HostBound(Exception):
    """Raised by ``run_benchmark(..., skip_host_bound=True)`` for a host-bound case, after its warm-up."""


def run_benchmark(benchmark, impl: Implementation, case: BenchCase, device: torch.device, *, flush: CacheFlusher,
                  max_time: float, min_rounds: int, skip_host_bound: bool = False) -> dict:
    """Time ``case`` on ``impl`` with pytest-benchmark's ``benchmark`` fixture; fill and return ``extra_info``.

    ``benchmark.pedantic`` runs ``setup`` (fresh inputs, cache flush; untimed) before each round and times the
    call with the fixture's timer (``device_clock``, set by the suite's marker).
    """
    runner = make_runner(impl, case, device, flush)
    warmups = GPU_WARMUP_ROUNDS if device.type == "cuda" else CPU_WARMUP_ROUNDS
    set_clock_lead(0.0)  # warm-up measures the host's time to queue a call without a head start
    call_seconds, host_seconds = warm_up(runner, warmups, max_time)
    lead = clock_lead(host_seconds)
    set_clock_lead(lead)
    host_bound = is_host_bound(host_seconds, device.type)
    if host_bound and skip_host_bound:
        raise HostBound(f"host-bound: a warm call takes the host {host_seconds * 1e3:.1f} ms to queue, more than "
                        f"the device clock's head start covers ({LEAD_MAX * 1e3:g} ms)")
    if host_bound:
        min_rounds *= HOST_BOUND_ROUND_FACTOR
    rounds = choose_rounds(call_seconds, max_time, min_rounds, MAX_ROUNDS)
    benchmark.group = f"{case.layout} {case.id.replace('-', ' ')}"
    try:
        benchmark.pedantic(runner.target, setup=runner.setup, rounds=rounds, warmup_rounds=0, iterations=1)
        args, kwargs = runner.setup()
        peak, _ = peak_memory(lambda: runner.target(*args, **kwargs), device)
        del args, kwargs
    except KeyboardInterrupt:
        # pytest-benchmark marks errors only for Exception; an interrupted benchmark has incomplete statistics,
        # which would break saving the rest of the run
        benchmark.has_error = True
        raise
    stats = benchmark.stats.stats
    flops = case_flops(case)
    info = {
        "impl": impl.name,
        **case.describe(),
        "device": device.type,
        "flops": flops,
        "tflops": flops / stats.median / 1e12,  # median: robust to the odd slow round
        "tflops_mean": flops / stats.mean / 1e12,
        "peak_memory_bytes": peak,
        "memory_method": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "torch.profiler",
        # the host's time to return from one warm call (its launch overhead, or all of it where the call
        # synchronizes); on a GPU the device clock gave the host ``clock_lead`` seconds of head start per round.
        # Whether the case was host-bound is not stored: ``is_host_bound(host_seconds)`` says it, by today's rule
        "host_seconds": host_seconds,
        "clock_lead": lead if device.type == "cuda" else None,
    }
    benchmark.extra_info.update(info)
    return info


# ---- machine info, storage, when the suite cannot run -----------------------------------------------------------


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # absent, or broken on import: either way not usable here
        return None


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def machine_info(device: torch.device) -> dict:
    """What a benchmark number depends on beyond the code: device and library versions."""
    info = {
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton": _version("triton"),
        "flash_attn": _version("flash_attn"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu_memory_bytes=props.total_memory, compute_capability=f"{props.major}.{props.minor}",
                    gpu_count=torch.cuda.device_count())
    else:
        info["cpu_threads"] = torch.get_num_threads()
    return info


def storage_name(device: torch.device) -> str:
    """``<device slug>-torch<version>``: one history per device and torch version (same stem as the matrix)."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")
    return f"{slug}-torch{torch.__version__.split('+')[0]}"


def storage_dir(device: torch.device, root: Path) -> Path:
    """The benchmark history of ``device`` under ``root`` (the reports folder: ``reports/`` of the user's project)."""
    return Path(root) / STORAGE_FOLDER / storage_name(device)


def summary_lines(results: list[tuple[str, dict]]) -> list[str]:
    """A plain-text table of benchmark results, (label, ``extra_info``) each: case, implementation, TFLOP/s, memory."""
    rows = [(label.replace(f"{i['impl']}-", "", 1), i["impl"], f"{i['tflops']:.3g}",
             f"{i['peak_memory_bytes'] / 2**20:.1f} MiB" if i.get("peak_memory_bytes") is not None else "–")
            for label, i in results]
    rows.sort(key=lambda r: (r[0], -float(r[2])))
    header = ("case", "implementation", "TFLOP/s", "peak memory")
    widths = [max(len(r[n]) for r in [header, *rows]) for n in range(4)]
    fmt = lambda r: "  ".join(c.ljust(w) if n < 2 else c.rjust(w) for n, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(header), *(fmt(r) for r in rows)]


def suite_disabled_reason(*, xdist_active: bool, disabled: bool) -> str | None:
    """Why the benchmark suite must not run in this session, or None."""
    if xdist_active:
        return ("benchmarks skipped: pytest-xdist is active, and timings taken while other workers share the "
                "machine are not comparable (run the benchmarks without -n)")
    if disabled:
        return ("benchmarks skipped: benchmarking is disabled (--benchmark-disable), and the suite measures "
                "nothing in that mode (drop --benchmark-disable, or add --benchmark-enable)")
    return None
