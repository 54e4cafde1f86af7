"""Eager multi-head attention from scratch, written as in the seeds' exercise: heads merged as [B, S, H·D].

Scores, mask, softmax, weighted sum, one step at a time. The function knows nothing of the canonical layout:
the "bsd" adapter hands it merged heads with ``num_heads`` and ``head_dim``.
"""

from __future__ import annotations

import math

import torch

from attnconf import ALIGNMENTS, AttentionInputError, Capabilities, implementation, masks
from attnconf.validation import check_feature_inputs


def split_heads(x: torch.Tensor, num_heads: int, head_dim: int) -> torch.Tensor:
    """[B, S, H·D] -> [B, H, S, D]."""
    batch, seqlen, _ = x.shape
    return x.reshape(batch, seqlen, num_heads, head_dim).transpose(1, 2)


def check_merged_inputs(q, k, v, num_heads: int, head_dim: int, key_padding_mask) -> None:
    """Reject what merged-head inputs [B, S, H·D] cannot mean, naming the problem."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 3:
            raise AttentionInputError(f"{name} must have rank 3 [batch, seqlen, heads·head_dim], got shape {tuple(t.shape)}")
    if q.dtype != k.dtype or q.dtype != v.dtype or not q.is_floating_point():
        raise AttentionInputError(f"q, k, v must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.device != k.device or q.device != v.device:
        raise AttentionInputError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if not (q.shape[0] == k.shape[0] == v.shape[0]):
        raise AttentionInputError(f"batch size mismatch: q {q.shape[0]}, k {k.shape[0]}, v {v.shape[0]}")
    if k.shape[1] != v.shape[1]:
        raise AttentionInputError(f"k and v seqlen mismatch: k {k.shape[1]}, v {v.shape[1]}")
    if q.shape[-1] != num_heads * head_dim:
        raise AttentionInputError(f"q's last dim {q.shape[-1]} is not num_heads·head_dim = {num_heads}·{head_dim}")
    kv_heads = k.shape[-1] // head_dim
    if k.shape[-1] % head_dim or not kv_heads or num_heads % kv_heads or v.shape[-1] % kv_heads:
        raise AttentionInputError(
            f"k's last dim {k.shape[-1]} must be kv_heads·head_dim (head_dim {head_dim}) with the {num_heads} query "
            f"heads a multiple of the kv heads, and v's last dim {v.shape[-1]} kv_heads·head_dim_v"
        )
    if key_padding_mask is not None:
        if key_padding_mask.dtype != torch.bool or tuple(key_padding_mask.shape) != tuple(k.shape[:2]):
            raise AttentionInputError(
                f"key_padding_mask must be torch.bool [batch, seqlen_k] = {tuple(k.shape[:2])}, got "
                f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
            )
        if key_padding_mask.device != q.device:
            raise AttentionInputError(f"key_padding_mask on {key_padding_mask.device}, q on {q.device}")


def eager_kvcache(q, k_cache, v_cache, cache_seqlens, *, block_table=None, causal=None, scale=None):
    """Decoding against a (paged) KV cache, canonical layout: each sequence's valid keys gathered, then attended to
    by ``eager_attention`` with its heads merged."""
    batch, seqlen_q, heads_q, head_dim = q.shape
    if cache_seqlens.dtype != torch.int32 or tuple(cache_seqlens.shape) != (batch,):
        raise AttentionInputError(f"cache_seqlens must be int32 [{batch}], got {cache_seqlens.dtype} "
                                  f"{tuple(cache_seqlens.shape)}")
    if block_table is not None and (block_table.dtype != torch.int32 or block_table.dim() != 2
                                    or block_table.shape[0] != batch):
        raise AttentionInputError(f"block_table must be int32 [{batch}, pages], got {block_table.dtype} "
                                  f"{tuple(block_table.shape)}")
    lengths = cache_seqlens.tolist()
    capacity = k_cache.shape[1] * (block_table.shape[1] if block_table is not None else 1)
    if any(not 0 <= n <= capacity for n in lengths):
        raise AttentionInputError(f"cache_seqlens {lengths} outside the cache's capacity {capacity}")
    outs = []
    for b, n in enumerate(lengths):
        if block_table is None:
            keys, values = k_cache[b, :n], v_cache[b, :n]
        else:
            pages = block_table[b, : -(-n // k_cache.shape[1])].long()
            keys, values = k_cache[pages].flatten(0, 1)[:n], v_cache[pages].flatten(0, 1)[:n]
        merged = lambda t: t.flatten(-2)[None]  # noqa: E731  [S, H, D] -> [1, S, H·D]
        out = eager_attention(merged(q[b]), merged(keys), merged(values), num_heads=heads_q, head_dim=head_dim,
                              causal=causal, scale=scale)
        outs.append(out[0].unflatten(-1, (heads_q, head_dim)))
    return torch.stack(outs)


@implementation(
    "eager",
    kvcache_forward=eager_kvcache,
    layout="bsd",
    capabilities=Capabilities(
        devices={"cpu", "cuda"},
        head_dims=None,
        head_dims_v=None,
        causal=set(ALIGNMENTS),
        key_padding_mask=True,
        varlen=True,
        gqa=True,
        window=True,
        softcap=True,
        alibi=True,
        sink=True,
        lse="e",
        kvcache=True,
        paged=True,
        backward=True,
        deterministic=True,
        notes="visibility from the predicates of attnconf/masks.py; materialises the [Sq, Sk] score matrix: memory grows quadratically with sequence length",
    ),
)
def eager_attention(q, k, v, *, num_heads, head_dim, key_padding_mask=None, causal=None, scale=None, window=None,
                    softcap=None, alibi_slopes=None, sink=None, return_lse=False):
    """From-scratch multi-head attention on merged heads (the seeds' exercise); ``(out, lse)`` with ``return_lse``."""
    check_merged_inputs(q, k, v, num_heads, head_dim, key_padding_mask)
    kv_heads = k.shape[-1] // head_dim
    head_dim_v = v.shape[-1] // kv_heads  # may differ from head_dim (HEAD-3)
    q, k = split_heads(q, num_heads, head_dim), split_heads(k, kv_heads, head_dim)
    v = split_heads(v, kv_heads, head_dim_v)
    group = num_heads // kv_heads
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)

    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    # scores and softmax in float32 (as fused kernels keep them): half-precision scores at large logits are off by
    # whole units, and the softmax of those is noise
    out_dtype = q.dtype
    q, k, v = (t.float() for t in (q, k, v))
    scores = (q @ k.transpose(-2, -1)) * scale  # [B, H, Sq, Sk]

    batch, _, seqlen_q, seqlen_k = scores.shape
    check_feature_inputs(alibi_slopes, sink, batch, num_heads, q.device)
    scores = masks.apply_scores(
        masks.score_modification(seqlen_q, seqlen_k, softcap_value=softcap, alibi_slopes=alibi_slopes), scores)
    visible = masks.visibility_mask(seqlen_q, seqlen_k, key_padding_mask=key_padding_mask, causal_alignment=causal,
                                    window=window)
    allowed = masks.materialise(visible, batch, 1, seqlen_q, seqlen_k, device=q.device)
    scores = scores.masked_fill(~allowed, float("-inf"))

    # softmax that tolerates rows with nothing visible: those rows get all-zero weights; a sink is one more logit in
    # the denominator whose value is 0
    row_max = scores.amax(dim=-1, keepdim=True).detach().clamp_min(torch.finfo(scores.dtype).min)
    sink_logit = None if sink is None else sink.float()[None, :, None, None]
    if sink_logit is not None:
        row_max = torch.maximum(row_max, sink_logit)
    weights = torch.exp(scores - row_max)
    total = weights.sum(dim=-1, keepdim=True)
    if sink_logit is not None:
        total = total + torch.exp(sink_logit - row_max)
    weights = weights / total.masked_fill(total == 0, 1.0)

    out = (weights @ v).to(out_dtype)  # [B, H, Sq, D]
    out = out.transpose(1, 2).reshape(out.shape[0], seqlen_q, num_heads * head_dim_v)
    if not return_lse:
        return out
    lse = torch.where(total == 0, float("-inf"), row_max + torch.log(total)).squeeze(-1)  # [B, H, Sq]
    return out, lse.detach()

