"""One forward+backward of triton-flash between cudaProfilerStart and Stop, for Nsight Compute (ncu) to read.

    python3 scripts/triton_ncu_workload.py BATCH SEQLEN CAUSAL(0|1)      (scripts/gpu_triton_ncu.sh runs it)

bf16, H = 16, D = 64, as the peer table. A first call outside the profiled range compiles the kernels, so ncu sees
only the measured call's four kernels (delta, dK/dV, dQ and the forward).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from attnconf.impls import triton_flash  # noqa: E402


def main(batch: int, seqlen: int, causal: bool) -> None:
    shape = (batch, seqlen, 16, 64)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    dout = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    options = {"causal": "top_left"} if causal else {}
    for profiled in (False, True):
        if profiled:
            torch.cuda.synchronize()
            torch.cuda.profiler.start()
        triton_flash.flash_attention(q, k, v, **options).backward(dout)
        torch.cuda.synchronize()
    torch.cuda.profiler.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1")
