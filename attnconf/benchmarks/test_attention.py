"""Attention benchmarks: every registered implementation x the cases of the chosen set (``--bench-set``).

A case is dense (q, k, v [B, S, H, D]) or varlen (a packed batch of sequences of different lengths, cu_seqlens),
with a full or causal mask, timed for the forward, the backward or both. Each result's ``extra_info`` holds the
shape, the FLOP count, TFLOP/s and the peak memory of one call; ``attnconf/benchmarking/`` says how rounds are
timed. Cases run cheapest first within each implementation.
"""

import pytest

from attnconf.benchmarking import device_clock

pytestmark = [
    pytest.mark.benchmark(timer=device_clock),
    # the Triton interpreter (CPU runs) warns on every kernel launch under numpy 2.x; nothing of ours to fix
    pytest.mark.filterwarnings("ignore::DeprecationWarning:triton.*"),
]


def test_attention(run_case, bench_case):
    run_case(bench_case)
