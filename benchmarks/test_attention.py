"""Attention benchmarks: every registered implementation x the cases of the chosen set (``--bench-set``).

Each result's ``extra_info`` holds the shape, the FLOP count, TFLOP/s and the peak memory of one call; see
``attnconf/benchmarking.py`` for how rounds are timed.
"""

import pytest

from attnconf.benchmarking import synchronized_timer

pytestmark = pytest.mark.benchmark(timer=synchronized_timer)


def test_dense(run_case, dense_case):
    """q, k, v [B, S, H, D], full or causal mask."""
    run_case(dense_case)


def test_varlen(run_case, varlen_case):
    """A packed batch of sequences of different lengths (cu_seqlens), full or causal mask per sequence."""
    run_case(varlen_case)
