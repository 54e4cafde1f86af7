"""The calls that are timed, and one benchmark: warm-up, rounds, host-bound detection, pytest-benchmark."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..registry import Implementation
from ..varlen import cu_seqlens_from_lengths
from .cases import BenchCase, case_flops, causal_alignment
from .clocks import CacheFlusher, device_clock, set_clock_lead
from .memory import peak_memory

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


def choose_rounds(call_seconds: float, max_time: float, min_rounds: int, max_rounds: int) -> int:
    """Enough rounds to fill ``max_time``, never fewer than ``min_rounds`` nor more than ``max_rounds``."""
    wanted = math.ceil(max_time / max(call_seconds, 1e-9))
    return max(min_rounds, min(max_rounds, wanted))


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


@dataclass
class RoundPlan:
    """What warm-up decided for the timed rounds: how many, and the host's time to queue one warm call."""

    rounds: int
    host_seconds: float
    lead: float
    host_bound: bool


def plan_rounds(runner: Runner, device: torch.device, *, max_time: float, min_rounds: int) -> RoundPlan:
    """Warm up, set the device clock's head start from the host's time to queue a warm call, size the rounds."""
    warmups = GPU_WARMUP_ROUNDS if device.type == "cuda" else CPU_WARMUP_ROUNDS
    set_clock_lead(0.0)  # warm-up measures the host's time to queue a call without a head start
    call_seconds, host_seconds = warm_up(runner, warmups, max_time)
    lead = clock_lead(host_seconds)
    set_clock_lead(lead)
    host_bound = is_host_bound(host_seconds, device.type)
    if host_bound:
        min_rounds *= HOST_BOUND_ROUND_FACTOR
    return RoundPlan(choose_rounds(call_seconds, max_time, min_rounds, MAX_ROUNDS), host_seconds, lead, host_bound)


def time_rounds(runner: Runner, device: torch.device, *, max_time: float, min_rounds: int) -> list[float]:
    """The suite's timing without pytest-benchmark, for scripts (tile choice, ceilings, gpu_triton.py): the same
    warm-up, head start, fresh inputs and cache flush per round as ``run_benchmark``; each round's seconds.

    The caller selects the clock once (``use_device_clock``), as the suite's plugin does."""
    plan = plan_rounds(runner, device, max_time=max_time, min_rounds=min_rounds)
    return [timed_call(runner)[0] for _ in range(plan.rounds)]


def run_benchmark(benchmark, impl: Implementation, case: BenchCase, device: torch.device, *, flush: CacheFlusher,
                  max_time: float, min_rounds: int, skip_host_bound: bool = False) -> dict:
    """Time ``case`` on ``impl`` with pytest-benchmark's ``benchmark`` fixture; fill and return ``extra_info``.

    ``benchmark.pedantic`` runs ``setup`` (fresh inputs, cache flush; untimed) before each round and times the
    call with the fixture's timer (``device_clock``, set by the suite's marker).
    """
    runner = make_runner(impl, case, device, flush)
    plan = plan_rounds(runner, device, max_time=max_time, min_rounds=min_rounds)
    host_seconds, lead, rounds = plan.host_seconds, plan.lead, plan.rounds
    if plan.host_bound and skip_host_bound:
        raise HostBound(f"host-bound: a warm call takes the host {host_seconds * 1e3:.1f} ms to queue, more than "
                        f"the device clock's head start covers ({LEAD_MAX * 1e3:g} ms)")
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
