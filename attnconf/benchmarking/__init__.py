"""Benchmark machinery, one concern per module: ``cases`` (the benchmark cases, their sets, the FLOP model),
``clocks`` (device time, the cache flush), ``runner`` (the timed calls and one benchmark), ``memory`` (peak
memory), ``storage`` (machine info, where runs are stored). The names below are the package's interface.

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

from .cases import (  # noqa: F401
    BACKWARD_FLOP_FACTOR, BENCH_SETS, BenchCase, DTYPE_NAMES, LAYOUTS, MATERIALISED_MAX_SEQLEN, PASSES,
    SET_DEFAULTS, case_flops, causal_alignment, cpu_set, forward_flops, gpu_set, ordered, peers_set, set_rounds,
    skip_reason, visible_pairs,
)
from .clocks import (  # noqa: F401
    CacheFlusher, EventClock, device_clock, set_clock_lead, use_device_clock,
)
from .memory import (  # noqa: F401
    peak_memory, tensor_bytes,
)
from .runner import (  # noqa: F401
    CPU_WARMUP_ROUNDS, GPU_WARMUP_ROUNDS, HOST_BOUND_ROUND_FACTOR, HostBound, LEAD_MAX, LEAD_MIN, MAX_ROUNDS,
    RoundPlan, Runner, choose_rounds, clock_lead, is_host_bound, make_runner, plan_rounds, run_benchmark, time_rounds,
    timed_call, warm_up,
)
from .storage import (  # noqa: F401
    STORAGE_FOLDER, device_name, machine_info, storage_dir, storage_name, suite_disabled_reason, summary_lines,
)
