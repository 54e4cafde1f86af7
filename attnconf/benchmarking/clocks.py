"""Clocks: device time between CUDA events with a head start for the host, and a cache flush between rounds."""

from __future__ import annotations

import time
from typing import Callable

import torch


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

