"""Tile candidates of triton-flash's 16-bit D = 64 kernels at the peer table's shapes; picks one per kernel.

    python3 scripts/gpu_triton_tiles.py     (on the GPU, repository root; scripts/gpu_triton_tiles.sh runs it)

Shapes: bf16, H = 16, D = 64, 16k tokens (S = 4096 with B = 4, S = 16384 with B = 1), full and causal. The forward's
candidates are timed on the forward, dK/dV's and dQ's on forward+backward (the other kernels at their defaults),
each timed as the benchmark suite times it (attnconf.benchmarking.time_rounds, median round). This only chooses: the
figures worth citing come from the benchmark suite afterwards. A candidate is kept when its geometric mean over the
four shapes beats the default's by more than MARGIN (default 0.02); $OUT/override-<kernels>.json then holds the kept
ones (ATTNCONF_TRITON_BLOCKS's format), and $OUT/tiles.json every measurement (both suffixed with the kernels swept:
KERNELS=dq writes tiles-dq.json).
BUDGET (seconds, default 200) bounds the sweep.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import statistics  # noqa: E402

import torch  # noqa: E402
import triton  # noqa: E402

from attnconf import registry  # noqa: E402
from attnconf.benchmarking import (  # noqa: E402
    BenchCase, CacheFlusher, case_flops, make_runner, set_rounds, time_rounds, use_device_clock,
)

registry.load_builtin()
from attnconf.impls import triton_flash  # noqa: E402

OUT = Path(os.environ.get("OUT") or "/tmp/gpu_triton_tiles")
OUT.mkdir(parents=True, exist_ok=True)
BUDGET = float(os.environ.get("BUDGET", "200"))
MARGIN = float(os.environ.get("MARGIN", "0.02"))
STARTED = time.monotonic()
TRITON = registry.select(["triton-flash"])[0]
SHAPES = [(4, 4096), (1, 16384)]  # (batch, seqlen): 16k tokens
HEADS, HEAD_DIM = 16, 64
CANDIDATES = {  # (block_m, block_n, num_warps, num_stages[, maxnreg]); the first is the current default
    # a register cap that lets one more program onto a multiprocessor: forward 80 (3 of 8 warps; spills), dK/dV 168
    # (3 of 4 warps; spills), dQ 128 (2 of 8 warps; no spill): scripts/triton_resources.py's figures
    "forward": [(128, 64, 8, 3), (128, 64, 8, 3, 80), (128, 64, 8, 2, 80)],
    "dkdv": [(64, 64, 4, 3), (64, 64, 4, 2), (64, 64, 4, 3, 168), (64, 64, 4, 2, 168), (64, 128, 8, 3)],
    "dq": [(128, 64, 8, 3), (128, 64, 8, 3, 128), (128, 64, 8, 2, 128), (128, 64, 8, 4, 128)],
}
# KERNELS (comma-separated, default all): a compiler abort on one candidate then costs only its kernel's sweep
KERNELS = [k for k in os.environ.get("KERNELS", ",".join(CANDIDATES)).split(",") if k]


DEVICE = torch.device("cuda")
ROUNDS = set_rounds("peers")


def measure(batch: int, seqlen: int, causal: bool, backward: bool, flush: CacheFlusher) -> float:
    case = BenchCase("dense", "fwd_bwd" if backward else "fwd", seqlen, batch, HEADS, HEAD_DIM, torch.bfloat16, causal)
    seconds = statistics.median(time_rounds(make_runner(TRITON, case, DEVICE, flush), DEVICE, **ROUNDS))
    return case_flops(case) / seconds / 1e12


def main() -> int:
    rows, override = [], {}
    use_device_clock(DEVICE)  # the suite's clock, as its plugin selects it
    flush = CacheFlusher(DEVICE)
    for kernel in KERNELS:
        candidates = CANDIDATES[kernel]
        key = (kernel, False, HEAD_DIM)
        default = triton_flash.GPU_BLOCKS[key]
        means = {}
        for cand in candidates:
            if time.monotonic() - STARTED > BUDGET:
                print(f"budget spent: {kernel} {cand} and later not measured", flush=True)
                break
            triton_flash.GPU_BLOCKS[key] = triton_flash.Blocks(*cand)
            rates = []
            for batch, seqlen in SHAPES:
                for causal in (False, True):
                    try:
                        rate = measure(batch, seqlen, causal, kernel != "forward", flush)
                    except Exception as exc:  # resources exceeded, say: reported, not fatal
                        rate, error = None, f"{type(exc).__name__}: {str(exc)[:300]}"
                        print(f"{kernel} {cand}: {error}", flush=True)
                    else:
                        error = None
                    rows.append(dict(kernel=kernel, blocks=cand, batch=batch, seqlen=seqlen, causal=causal,
                                     timed="fwd" if kernel == "forward" else "fwd+bwd", tflops=rate, error=error))
                    rates.append(rate)
                    print(json.dumps(rows[-1]), flush=True)
            if all(r is not None for r in rates):
                means[cand] = math.exp(sum(math.log(r) for r in rates) / len(rates))
                print(f"{kernel} {cand}: geometric mean {means[cand]:.1f} TFLOP/s", flush=True)
        triton_flash.GPU_BLOCKS[key] = default
        base = means.get(candidates[0])
        if base and means:
            best = max(means, key=means.get)
            if best != candidates[0] and means[best] > base * (1 + MARGIN):
                override[kernel] = list(best)
            print(f"{kernel}: default {base:.1f}, best {best} {means[best]:.1f} ({means[best] / base:.3f}x)"
                  + (" -> kept" if kernel in override else " -> default stays"), flush=True)
    suffix = "-" + "-".join(KERNELS)
    (OUT / f"tiles{suffix}.json").write_text(json.dumps({"rows": rows, "override": override,
                                                "device": torch.cuda.get_device_name(),
                                                "torch": torch.__version__, "triton": triton.__version__}, indent=1))
    (OUT / f"override{suffix}.json").write_text(json.dumps(override))
    print("override:", json.dumps(override), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
