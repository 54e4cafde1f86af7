"""tiled-pytorch: the FlashAttention algorithm in plain PyTorch, one tile at a time (the teaching version).

This is the bridge between the definition (``attnconf/reference.py``: scores, softmax, weighted sum, all at once)
and the Triton kernel (``impls/_triton_kernels.py``: the same algorithm, with programs where this file has loops).
Read it top to bottom:

1. ``block_sizes``: how big a tile is, from the size M of the fast on-chip memory (FlashAttention, Algorithm 1).
2. ``tiled_forward``: for each tile of query rows, walk over the tiles of keys with an *online softmax*: keep each
   row's running maximum ``m`` and running sum ``l`` of exponentials, and rescale what has been accumulated
   whenever the maximum grows. The [Sq, Sk] score matrix is never built, only one [Br, Bc] tile of it at a time;
   the forward saves the output and each row's log-sum-exp ``L = m + log(l)``, nothing else.
3. ``tiled_backward``: recompute each tile's probabilities from ``L`` (``P = exp(S - L)``) instead of storing them,
   and accumulate dV, dK and dQ tile by tile (FlashAttention-2's backward).

Rows that see no key (all keys masked, or causal rows before the first key) keep ``m = -inf`` and ``l = 0``: their
output is 0 and ``L = +inf``, so the recomputed ``P`` is exactly 0 and they add nothing to any gradient.

Batch and heads are handled by batched matrix products; only the tiles are loops. The arithmetic is in float32
whatever the input dtype (as a kernel's accumulators are), and the output is cast back to the input dtype.
"""

from __future__ import annotations

import math

import torch

from attnconf import ALIGNMENTS, BOTTOM_RIGHT, Capabilities, implementation
from attnconf.validation import AttentionInputError, check_dense_inputs

# The registered implementation's "SRAM": the 228 KiB of shared memory of one H100 multiprocessor, counted in
# float32 numbers, as the paper counts M. The seed example's M = 1536 gives 3x3 tiles, which is right for learning
# the algorithm by hand but means ~10^5 Python loop iterations at S = 1025: far too slow for the suite on a CPU.
DEFAULT_SRAM_SIZE = 228 * 1024 // 4


def block_sizes(sram_size: int, head_dim: int) -> tuple[int, int]:
    """(Br, Bc): query rows and key rows per tile, from on-chip memory of ``sram_size`` numbers.

    Bc = ceil(M / 4d) key rows, so that the K and V tiles (Bc x d each) and the Q and O tiles use about M numbers;
    Br = min(Bc, d) query rows. The seed example (sequence length 3072, model size d = 128, M = 1536):

    >>> block_sizes(1536, 128)
    (3, 3)
    >>> tile_counts(3072, 3072, 1536, 128)  # Tr query tiles, Tc key tiles
    (1024, 1024)

    With the registered default (one H100 multiprocessor's shared memory) and d = 64:

    >>> block_sizes(DEFAULT_SRAM_SIZE, 64)
    (64, 228)
    """
    key_rows = math.ceil(sram_size / (4 * head_dim))
    query_rows = min(key_rows, head_dim)
    return query_rows, key_rows


def tile_counts(seqlen_q: int, seqlen_k: int, sram_size: int, head_dim: int) -> tuple[int, int]:
    """(Tr, Tc): how many query tiles and key tiles cover the sequences."""
    query_rows, key_rows = block_sizes(sram_size, head_dim)
    return math.ceil(seqlen_q / query_rows), math.ceil(seqlen_k / key_rows)


def tile_visibility(rows, cols, key_padding_mask, causal, diag):
    """bool [B or 1, 1, rows, cols]: which keys (cols) each query row of the tile may see."""
    visible = torch.ones(len(rows), len(cols), dtype=torch.bool, device=rows.device)
    if causal is not None:
        visible = cols[None, :] <= rows[:, None] + diag
    visible = visible[None, None]
    if key_padding_mask is not None:
        visible = visible & key_padding_mask[:, None, None, cols]
    return visible


def _heads_first(q, k, v):
    """[B, S, H, D] inputs -> float32 [B, Hq, S, D], with each query head's kv head gathered beside it (GQA)."""
    group = q.shape[2] // k.shape[2]
    kv_head_of = torch.arange(q.shape[2], device=q.device) // group  # query head h reads kv head h // group
    as_float = lambda t: t.transpose(1, 2).float()  # noqa: E731
    return as_float(q), as_float(k)[:, kv_head_of], as_float(v)[:, kv_head_of]


def _diagonal(seqlen_q: int, seqlen_k: int, causal: str | None) -> int:
    """Causal offset: row i sees keys j <= i + diag (top-left: 0; bottom-right: Sk - Sq)."""
    return seqlen_k - seqlen_q if causal == BOTTOM_RIGHT else 0


def tiled_forward(q, k, v, key_padding_mask, causal, scale, sram_size):
    """Returns (out [B, Sq, Hq, D] in q's dtype, lse [B, Hq, Sq] float32)."""
    Q, K, V = _heads_first(q, k, v)
    batch, heads, seqlen_q, head_dim = Q.shape
    seqlen_k = K.shape[2]
    query_rows, key_rows = block_sizes(sram_size, head_dim)
    diag = _diagonal(seqlen_q, seqlen_k, causal)
    out = torch.zeros_like(Q)
    lse = torch.empty(batch, heads, seqlen_q, device=q.device)

    for i0 in range(0, seqlen_q, query_rows):  # one query tile at a time (the kernel: one program each)
        i1 = min(i0 + query_rows, seqlen_q)
        rows = torch.arange(i0, i1, device=q.device)
        Qi = Q[:, :, i0:i1]
        row_max = torch.full((batch, heads, i1 - i0), float("-inf"), device=q.device)
        row_sum = torch.zeros(batch, heads, i1 - i0, device=q.device)
        acc = torch.zeros(batch, heads, i1 - i0, head_dim, device=q.device)

        for j0 in range(0, seqlen_k, key_rows):
            if causal is not None and j0 > i1 - 1 + diag:
                break  # causal: no row of this tile sees these keys, nor any later ones
            j1 = min(j0 + key_rows, seqlen_k)
            cols = torch.arange(j0, j1, device=q.device)
            S = (Qi @ K[:, :, j0:j1].transpose(-2, -1)) * scale  # one [Br, Bc] tile of scores per head
            S = S.masked_fill(~tile_visibility(rows, cols, key_padding_mask, causal, diag), float("-inf"))

            new_max = torch.maximum(row_max, S.amax(dim=-1))
            # a row that has seen no visible key yet keeps max -inf; subtracting 0 instead keeps exp() at 0, not NaN
            shift = torch.where(new_max == float("-inf"), 0.0, new_max)
            P = torch.exp(S - shift[..., None])
            correction = torch.exp(row_max - shift)  # rescales what was summed under the old maximum
            row_sum = row_sum * correction + P.sum(dim=-1)
            acc = acc * correction[..., None] + P @ V[:, :, j0:j1]
            row_max = new_max

        seen = row_sum > 0
        out[:, :, i0:i1] = acc / torch.where(seen, row_sum, 1.0)[..., None]
        lse[:, :, i0:i1] = torch.where(seen, row_max + torch.log(torch.where(seen, row_sum, 1.0)), float("inf"))

    return out.transpose(1, 2).to(q.dtype), lse


def tiled_backward(dout, q, k, v, out, lse, key_padding_mask, causal, scale, sram_size):
    """dQ, dK, dV from the saved output and log-sum-exp, recomputing each tile's probabilities."""
    Q, K, V = _heads_first(q, k, v)
    dO, O = dout.transpose(1, 2).float(), out.transpose(1, 2).float()
    batch, heads, seqlen_q, head_dim = Q.shape
    seqlen_k = K.shape[2]
    query_rows, key_rows = block_sizes(sram_size, head_dim)
    diag = _diagonal(seqlen_q, seqlen_k, causal)
    # softmax backward: dS = P * (dP - delta), with delta_i = sum_j P_ij dP_ij = rowsum(dO_i * O_i)
    delta = (dO * O).sum(dim=-1)
    dQ, dK, dV = torch.zeros_like(Q), torch.zeros_like(K), torch.zeros_like(V)

    for j0 in range(0, seqlen_k, key_rows):  # one key tile at a time: its dK and dV accumulate in "fast memory"
        j1 = min(j0 + key_rows, seqlen_k)
        cols = torch.arange(j0, j1, device=q.device)
        Kj, Vj = K[:, :, j0:j1], V[:, :, j0:j1]
        dKj, dVj = torch.zeros_like(Kj), torch.zeros_like(Vj)
        for i0 in range(0, seqlen_q, query_rows):
            i1 = min(i0 + query_rows, seqlen_q)
            if causal is not None and j0 > i1 - 1 + diag:
                continue  # causal: no row of this query tile sees these keys
            rows = torch.arange(i0, i1, device=q.device)
            S = (Q[:, :, i0:i1] @ Kj.transpose(-2, -1)) * scale
            S = S.masked_fill(~tile_visibility(rows, cols, key_padding_mask, causal, diag), float("-inf"))
            P = torch.exp(S - lse[:, :, i0:i1, None])  # recomputed, never stored; exactly 0 where masked
            dVj += P.transpose(-2, -1) @ dO[:, :, i0:i1]
            dP = dO[:, :, i0:i1] @ Vj.transpose(-2, -1)
            dS = P * (dP - delta[:, :, i0:i1, None])
            dQ[:, :, i0:i1] += (dS @ Kj) * scale
            dKj += (dS.transpose(-2, -1) @ Q[:, :, i0:i1]) * scale
        dK[:, :, j0:j1], dV[:, :, j0:j1] = dKj, dVj

    # grouped-query attention: a kv head's gradient is the sum over the query heads that read it
    heads_kv = k.shape[2]
    fold = lambda t: t.reshape(batch, heads_kv, heads // heads_kv, seqlen_k, head_dim).sum(dim=2)  # noqa: E731
    back = lambda t, like: t.transpose(1, 2).to(like.dtype)  # noqa: E731
    return back(dQ, q), back(fold(dK), k), back(fold(dV), v)


class TiledAttention(torch.autograd.Function):
    """Saves the inputs, the output and the log-sum-exp; the backward recomputes everything else."""

    @staticmethod
    def forward(ctx, q, k, v, key_padding_mask, causal, scale, sram_size, return_lse=False):
        out, lse = tiled_forward(q, k, v, key_padding_mask, causal, scale, sram_size)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.options = (key_padding_mask, causal, scale, sram_size)
        if not return_lse:
            return out
        public = lse.clone()  # the saved one stays the backward's own
        ctx.mark_non_differentiable(public)
        return out, public

    @staticmethod
    def backward(ctx, dout, *_lse_grad):  # the returned lse is not differentiable
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = tiled_backward(dout, q, k, v, out, lse, *ctx.options)
        return dq, dk, dv, None, None, None, None, None


@implementation(
    "tiled-pytorch",
    capabilities=Capabilities(
        devices={"cpu", "cuda"},
        head_dims=None,
        causal=set(ALIGNMENTS),
        key_padding_mask=True,
        varlen=True,  # through the shared pad/unpad adapter
        gqa=True,
        backward=True,
        deterministic=True,
        memory_efficient=True,
        lse="e",
        lse_empty_row=float("inf"),  # as flash-attn 2: a row with no visible key saves L = +inf (its P is then 0)
        notes=(
            "teaching version of FlashAttention in plain PyTorch (Python loops over tiles): slow by design; "
            f"tiles from M = {DEFAULT_SRAM_SIZE} float32 numbers (one H100 SM's shared memory); float32 arithmetic; "
            "packed batches through the pad/unpad adapter"
        ),
    ),
)
def tiled_attention(q, k, v, *, key_padding_mask=None, causal=None, scale=None, return_lse=False,
                    sram_size=DEFAULT_SRAM_SIZE):
    """FlashAttention in plain PyTorch, tile by tile: online softmax forward, recomputing backward; with
    ``return_lse`` also the log-sum-exp [B, H, Sq] it saves for the backward (natural log, +inf for empty rows)."""
    check_dense_inputs(q, k, v, key_padding_mask)
    if causal is not None and causal not in ALIGNMENTS:
        raise AttentionInputError(f"causal must be None or one of {ALIGNMENTS}, got {causal!r}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    return TiledAttention.apply(q, k, v, key_padding_mask, causal, scale, sram_size, bool(return_lse))
