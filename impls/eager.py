"""Eager multi-head attention from scratch, written as in the seeds' exercise: heads merged as [B, S, H·D].

Scores, mask, softmax, weighted sum, one step at a time. The function knows nothing of the canonical layout:
the "bsd" adapter hands it merged heads with ``num_heads`` and ``head_dim``.
"""

from __future__ import annotations

import math

import torch

from attnconf import ALIGNMENTS, Capabilities, implementation


def split_heads(x: torch.Tensor, num_heads: int, head_dim: int) -> torch.Tensor:
    """[B, S, H·D] -> [B, H, S, D]."""
    batch, seqlen, _ = x.shape
    return x.reshape(batch, seqlen, num_heads, head_dim).transpose(1, 2)


@implementation(
    "eager",
    layout="bsd",
    capabilities=Capabilities(
        devices={"cpu", "cuda"},
        head_dims=None,
        causal=set(ALIGNMENTS),
        key_padding_mask=True,
        varlen=True,
        gqa=True,
        backward=True,
        deterministic=True,
        notes="materialises the [Sq, Sk] score matrix: memory grows quadratically with sequence length",
    ),
)
def eager_attention(q, k, v, *, num_heads, head_dim, key_padding_mask=None, causal=None, scale=None):
    """From-scratch multi-head attention on merged heads (the seeds' exercise)."""
    kv_heads = k.shape[-1] // head_dim
    q, k, v = split_heads(q, num_heads, head_dim), split_heads(k, kv_heads, head_dim), split_heads(v, kv_heads, head_dim)
    group = num_heads // kv_heads
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)

    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    # scores and softmax in float32 (as fused kernels keep them): half-precision scores at large logits are off by
    # whole units, and the softmax of those is noise
    out_dtype = q.dtype
    q, k, v = (t.float() for t in (q, k, v))
    scores = (q @ k.transpose(-2, -1)) * scale  # [B, H, Sq, Sk]

    seqlen_q, seqlen_k = scores.shape[-2:]
    allowed = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool, device=q.device)
    if causal is not None:
        offset = seqlen_k - seqlen_q if causal == "bottom_right" else 0
        allowed = torch.tril(allowed, diagonal=offset)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))

    # softmax that tolerates rows with nothing visible: those rows get all-zero weights
    row_max = scores.amax(dim=-1, keepdim=True).detach().clamp_min(torch.finfo(scores.dtype).min)
    weights = torch.exp(scores - row_max)
    total = weights.sum(dim=-1, keepdim=True)
    weights = weights / total.masked_fill(total == 0, 1.0)

    out = (weights @ v).to(out_dtype)  # [B, H, Sq, D]
    return out.transpose(1, 2).reshape(out.shape[0], seqlen_q, num_heads * head_dim)
