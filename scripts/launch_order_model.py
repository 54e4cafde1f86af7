"""How much of a causal kernel's time its launch order wastes at the end of the grid, in a list-scheduling model.

Each multiprocessor holds ``--slots-per-sm`` programs; a program starts on the first free slot in the order of its
id and runs for (key or query blocks it visits + one block of fixed cost). The model prints the makespan over the
ideal (total work / slots) for the plain grid order and for the order triton-flash launches causal grids in
(`triton_flash._longest_first_order` for the forward and dQ, `_plain_order` for dK/dV), at the peer table's dense
shapes (bf16, D = 64, 16 heads, B*S = 16k). It counts neither the diagonal's masked blocks nor L2 effects: a prediction
to check on the GPU, not a measurement. Usage, from the repository root (no GPU needed):

    python scripts/launch_order_model.py [--sms 132] [--slots-per-sm 2] [--l2-mib 50]
"""

from __future__ import annotations

import argparse
import heapq
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from attnconf.impls import triton_flash  # noqa: E402


def makespan(durations: list[float], slots: int) -> float:
    free = [0.0] * slots
    for duration in durations:
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


def program_order(tiles: int, pairs: int, group_pairs: int, descending: int) -> list[int]:
    """The tile index of each program id, as _triton_kernels._program_tile decodes it."""
    order = []
    for first in range(0, pairs, group_pairs):
        size = min(group_pairs, pairs - first)
        for rank in range(tiles * size):
            tile = rank // size
            order.append(tiles - 1 - tile if descending else tile)
    return order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sms", type=int, default=132)
    parser.add_argument("--slots-per-sm", type=int, default=2, help="resident programs per multiprocessor")
    parser.add_argument("--l2-mib", type=int, default=50)
    args = parser.parse_args()
    slots = args.sms * args.slots_per_sm
    triton_flash._l2_bytes = lambda device: args.l2_mib << 20  # the model's L2, not this machine's
    print(f"{slots} slots; makespan / ideal (plain order -> longest first), group size in pairs")
    for seqlen in (1024, 4096, 16384):
        problem = triton_flash.Problem(batch=16384 // seqlen, seqlen_q=seqlen, seqlen_k=seqlen, heads_q=16,
                                       heads_kv=16, head_dim=64, causal="top_left", scale=0.125, varlen=False)
        for kernel in ("forward", "dq", "dkdv"):
            blocks = triton_flash.GPU_BLOCKS[(kernel, False, 64)]
            if kernel == "dkdv":
                tiles, step = seqlen // blocks.block_n, blocks.block_m
                work = [(seqlen - t * blocks.block_n) / step + 1 for t in range(tiles)]
            else:
                tiles, step = seqlen // blocks.block_m, blocks.block_n
                work = [(t + 1) * blocks.block_m / step + 1 for t in range(tiles)]
            pairs = problem.batch * problem.heads_q
            ideal = sum(work) * pairs / slots
            if kernel == "dkdv":
                _grid, order = triton_flash._plain_order(problem, tiles, problem.heads_q)
            else:
                _grid, order = triton_flash._longest_first_order(problem, tiles, problem.heads_q, seqlen, 2,
                                                                 torch.device("cpu"))
            plain = makespan([work[t] for t in program_order(tiles, pairs, 1, 0)], slots) / ideal
            longest = makespan([work[t] for t in program_order(tiles, pairs, order["group_pairs"],
                                                                order["descending"])], slots) / ideal
            print(f"S={seqlen:5d} {kernel:7s} {plain:.3f} -> {longest:.3f} (group {order['group_pairs']})")


if __name__ == "__main__":
    main()
