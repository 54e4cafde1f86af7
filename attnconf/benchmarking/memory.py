"""Peak memory of one call, measured apart from the timed rounds."""

from __future__ import annotations

from typing import Callable

import torch


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
