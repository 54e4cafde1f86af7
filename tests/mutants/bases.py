"""Small, correct attention implementations written as overridable steps, so a mutant is one overridden step.

- ``EagerAttention``: dense scores, masks, safe softmax, weighted sum; gradients through autograd.
- ``ManualBackwardAttention``: the same forward inside a ``torch.autograd.Function`` with a hand-written
  (FlashAttention-2 style) backward, for the gradient mutants.
- ``TiledAttention``: an online-softmax loop over key tiles, as a fused kernel computes it (forward only).
- ``PackedAttention``: a native packed (varlen) front end that walks ``cu_seqlens`` and runs each sequence
  through a dense implementation.

All of them compute in float32 and return the dtype of ``q``; they are registered (as controls) beside their
mutants, so a mutant caught by a contract its base also fails would show up as a false positive.
"""

from __future__ import annotations

import math

import torch

from attnconf.capabilities import BOTTOM_RIGHT
from attnconf.validation import AttentionInputError, check_cu_seqlens, check_dense_inputs, check_packed_inputs

HEAD_DIMS = frozenset({32, 64, 128})


class EagerAttention:
    """Dense attention in the canonical layout: every step a method a mutant may override."""

    head_dims = HEAD_DIMS
    head_dims_v = frozenset()  # value head dims other than q's taken (Capabilities.head_dims_v)

    def __call__(self, q, k, v, *, key_padding_mask=None, causal=None, scale=None):
        self.validate(q, k, v, key_padding_mask)
        q, k, v = self.load(q), self.load(k), self.load(v)
        scale = self.softmax_scale(q.shape[-1], scale)
        kv_index = self.kv_head_index(q.shape[2], k.shape[2], q.device)
        out = self.attend(q, k, v, key_padding_mask=key_padding_mask, causal=causal, scale=scale, kv_index=kv_index)
        return self.finish(out, q)

    # ---- input handling ------------------------------------------------------------------------------------------

    def validate(self, q, k, v, key_padding_mask) -> None:
        check_dense_inputs(q, k, v, key_padding_mask, head_dims=self.head_dims, head_dims_v=self.head_dims_v)

    def load(self, t: torch.Tensor) -> torch.Tensor:
        """How the kernel reads an input; the strides of views are honoured."""
        return t

    def softmax_scale(self, head_dim: int, scale: float | None) -> float:
        return 1.0 / math.sqrt(head_dim) if scale is None else scale

    def kv_head_index(self, heads_q: int, heads_kv: int, device) -> torch.Tensor:
        """The kv head each query head reads: h // (Hq / Hkv), written as h·Hkv // Hq."""
        return torch.arange(heads_q, device=device) * heads_kv // heads_q

    def finish(self, out: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return out.to(q.dtype)

    # ---- which keys a query row sees -----------------------------------------------------------------------------

    def causal_offset(self, seqlen_q: int, seqlen_k: int, causal: str) -> int:
        """Query i sees keys j <= i + offset."""
        return seqlen_k - seqlen_q if causal == BOTTOM_RIGHT else 0

    def visibility(self, batch, seqlen_q, seqlen_k, key_padding_mask, causal, device) -> torch.Tensor:
        """bool [B, 1, Sq, Sk]."""
        visible = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool, device=device)
        if causal is not None:
            visible = visible.tril(self.causal_offset(seqlen_q, seqlen_k, causal))
        visible = visible.expand(batch, 1, seqlen_q, seqlen_k)
        if key_padding_mask is not None:
            visible = self.apply_key_padding(visible, key_padding_mask)
        return visible

    def apply_key_padding(self, visible: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        return visible & key_padding_mask[:, None, None, :]

    # ---- the arithmetic ------------------------------------------------------------------------------------------

    def attend(self, q, k, v, *, key_padding_mask, causal, scale, kv_index) -> torch.Tensor:
        batch, seqlen_q, seqlen_k = q.shape[0], q.shape[1], k.shape[1]
        if seqlen_k == 0:  # nothing to attend to: every row is 0
            return q.float() * 0.0
        visible = self.visibility(batch, seqlen_q, seqlen_k, key_padding_mask, causal, q.device)
        k, v = k.index_select(2, kv_index).float(), v.index_select(2, kv_index).float()
        probs = self.probabilities(q.float(), k, visible, scale)
        return self.weighted_sum(probs, v)

    def probabilities(self, q, k, visible, scale) -> torch.Tensor:
        """[B, H, Sq, Sk] attention weights; rows with no visible key are all zero."""
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
        return self.softmax(self.masked(scores, visible))

    def masked(self, scores: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        return scores.masked_fill(~visible, float("-inf"))

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        row_max = scores.amax(dim=-1, keepdim=True).detach()
        row_max = row_max.masked_fill(row_max == float("-inf"), 0.0)  # rows with nothing visible
        weights = torch.exp(scores - row_max)
        total = weights.sum(dim=-1, keepdim=True)
        return weights / total.masked_fill(total == 0, 1.0)

    def weighted_sum(self, probs: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bhqk,bkhd->bqhd", probs, v)


class WindowedAttention(EagerAttention):
    """The eager base with a sliding window ``(left, right)``, aligned bottom-right: its own band, with tril/triu."""

    window = None

    def __call__(self, q, k, v, *, window=None, **options):
        self.window = window  # one call at a time: the suite never calls an implementation concurrently
        return super().__call__(q, k, v, **options)

    def window_offset(self, seqlen_q: int, seqlen_k: int) -> int:
        return seqlen_k - seqlen_q

    def window_band(self, seqlen_q, seqlen_k, left, right, device) -> torch.Tensor:
        offset = self.window_offset(seqlen_q, seqlen_k)
        band = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool, device=device)
        if right >= 0:
            band = band.tril(offset + right)
        if left >= 0:
            band = band.triu(offset - left)
        return band

    def visibility(self, batch, seqlen_q, seqlen_k, key_padding_mask, causal, device) -> torch.Tensor:
        visible = super().visibility(batch, seqlen_q, seqlen_k, key_padding_mask, causal, device)
        if self.window is not None:
            visible = visible & self.window_band(seqlen_q, seqlen_k, *self.window, device)
        return visible


class ValueHeadDimAttention(EagerAttention):
    """The eager base taking any value head dim (HEAD-3)."""

    head_dims_v = None


class FeatureAttention(EagerAttention):
    """The eager base with softcap, ALiBi, a sink and the returned log-sum-exp, each an overridable step."""

    softcap = alibi_slopes = sink = lse = None

    def __call__(self, q, k, v, *, softcap=None, alibi_slopes=None, sink=None, return_lse=False, **options):
        # one call at a time (as WindowedAttention): the suite never calls an implementation concurrently
        self.softcap, self.alibi_slopes, self.sink, self.lse = softcap, alibi_slopes, sink, None
        out = super().__call__(q, k, v, **options)
        if not return_lse:
            return out
        if self.lse is None:  # no keys at all: nothing was scored
            empty = torch.full((q.shape[0], q.shape[2], q.shape[1]), float("-inf"), device=q.device)
            self.lse = empty if sink is None else torch.maximum(empty, sink[None, :, None])
        return out, self.lse

    def probabilities(self, q, k, visible, scale):
        raw = torch.einsum("bqhd,bkhd->bhqk", q, k)
        scores = self.masked(self.modified_scores(raw, scale), visible)
        self.lse = self.log_sum_exp(scores, self.masked(raw, visible)).detach()
        return self.softmax(scores)

    def modified_scores(self, raw, scale):
        scores = raw * scale
        if self.softcap is not None:
            scores = self.capped(scores, raw)
        if self.alibi_slopes is not None:
            scores = scores + self.alibi_bias(self.alibi_slopes, scores.shape[-2], scores.shape[-1], scores.device)
        return scores

    def capped(self, scores, raw):
        return self.softcap * torch.tanh(scores / self.softcap)

    def head_slopes(self, slopes):
        """[B or 1, H, 1, 1]."""
        return (slopes[None] if slopes.dim() == 1 else slopes)[:, :, None, None]

    def alibi_distance(self, seqlen_q, seqlen_k, device):
        rows = torch.arange(seqlen_q, device=device)[:, None] + seqlen_k - seqlen_q
        return (rows - torch.arange(seqlen_k, device=device)[None, :]).abs()

    def alibi_bias(self, slopes, seqlen_q, seqlen_k, device):
        return -self.head_slopes(slopes) * self.alibi_distance(seqlen_q, seqlen_k, device)

    def sink_logits(self):
        """[1, H, 1, 1] or None."""
        return None if self.sink is None else self.sink.float()[None, :, None, None]

    def softmax(self, scores):
        sink = self.sink_logits()
        if sink is None:
            return super().softmax(scores)
        row_max = torch.maximum(scores.amax(dim=-1, keepdim=True), sink).detach()
        weights = torch.exp(scores - row_max)
        return weights / (weights.sum(dim=-1, keepdim=True) + torch.exp(sink - row_max))

    def log_sum_exp(self, scores, raw_scores):
        """[B, H, Sq] natural log of each row's denominator (the sink's term included); -inf for an empty row."""
        lse = torch.logsumexp(scores, dim=-1)
        sink = self.sink_logits()
        return lse if sink is None else torch.logaddexp(lse, sink[..., 0])


class KvCacheAttention:
    """Decoding against a (paged) KV cache: each sequence's valid keys gathered, then the eager base."""

    def __init__(self, dense: EagerAttention | None = None):
        self.dense = dense or EagerAttention()

    def __call__(self, q, k_cache, v_cache, cache_seqlens, *, block_table=None, causal=None, scale=None):
        outs = []
        for b, n in enumerate(cache_seqlens.tolist()):
            n = self.valid_length(n)
            if block_table is None:
                keys, values = k_cache[b, :n], v_cache[b, :n]
            else:
                pages = [self.page(block_table, b, p) for p in range(-(-n // k_cache.shape[1]))]
                keys = torch.cat([k_cache[p] for p in pages])[:n]
                values = torch.cat([v_cache[p] for p in pages])[:n]
            outs.append(self.dense(q[b : b + 1], keys[None], values[None], causal=self.alignment(causal),
                                   scale=scale)[0])
        return torch.stack(outs)

    def valid_length(self, cache_seqlen: int) -> int:
        return cache_seqlen

    def page(self, block_table, b: int, page_number: int) -> int:
        return int(block_table[b, page_number])

    def alignment(self, causal):
        return causal


class _HandWrittenAttention(torch.autograd.Function):
    """Forward through the owner's steps; backward written out by hand, each piece an owner method."""

    @staticmethod
    def forward(ctx, owner, q, k, v, visible, backward_visible, scale, kv_index):
        kx, vx = k.index_select(2, kv_index).float(), v.index_select(2, kv_index).float()
        out = owner.weighted_sum(owner.probabilities(q.float(), kx, visible, scale), vx)
        ctx.save_for_backward(q, k, v, out)
        ctx.owner, ctx.visible, ctx.scale, ctx.kv_index = owner, backward_visible, scale, kv_index
        return out.to(q.dtype)

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out = ctx.saved_tensors
        owner, scale, kv_index = ctx.owner, ctx.scale, ctx.kv_index
        qf, dout = q.float(), dout.float()
        kx, vx = k.index_select(2, kv_index).float(), v.index_select(2, kv_index).float()
        probs = owner.probabilities(qf, kx, ctx.visible, scale)  # recomputed, as a fused kernel does
        dv = owner.grad_v(probs, dout)
        dprobs = torch.einsum("bqhd,bkhd->bhqk", dout, vx)
        delta = (dout * out).sum(dim=-1).transpose(1, 2)[..., None]  # rowsum(dO ∘ O), [B, H, Sq, 1]
        dscores = probs * (dprobs - delta)
        dq = owner.grad_q(dscores, kx, scale)
        dk = owner.grad_k(dscores, qf, scale)
        heads_kv = k.shape[2]
        dk, dv = owner.fold_heads(dk, kv_index, heads_kv), owner.fold_heads(dv, kv_index, heads_kv)
        return None, dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


class ManualBackwardAttention(EagerAttention):
    """``EagerAttention`` with a hand-written backward: dV = PᵀdO, dS = P∘(dP − rowsum(dO∘O)), dQ = dS·K·scale, ..."""

    def attend(self, q, k, v, *, key_padding_mask, causal, scale, kv_index) -> torch.Tensor:
        batch, seqlen_q, seqlen_k = q.shape[0], q.shape[1], k.shape[1]
        if seqlen_k == 0:
            return q.float() * 0.0
        visible = self.visibility(batch, seqlen_q, seqlen_k, key_padding_mask, causal, q.device)
        backward_visible = self.backward_visibility(visible, batch, seqlen_q, seqlen_k, causal, q.device)
        return _HandWrittenAttention.apply(self, q, k, v, visible, backward_visible, scale, kv_index)

    def backward_visibility(self, visible, batch, seqlen_q, seqlen_k, causal, device) -> torch.Tensor:
        """What the backward recomputes the probabilities over: exactly what the forward saw."""
        return visible

    def grad_v(self, probs, dout):
        return torch.einsum("bhqk,bqhd->bkhd", probs, dout)

    def grad_q(self, dscores, k, scale):
        return torch.einsum("bhqk,bkhd->bqhd", dscores, k) * scale

    def grad_k(self, dscores, q, scale):
        return torch.einsum("bhqk,bqhd->bkhd", dscores, q) * scale

    def fold_heads(self, grad, kv_index, heads_kv):
        """Sum the gradients of the query heads that share a kv head."""
        folded = grad.new_zeros(grad.shape[0], grad.shape[1], heads_kv, grad.shape[3])
        return folded.index_add(2, kv_index, grad)


class TiledAttention(EagerAttention):
    """Online softmax over tiles of ``BLOCK`` keys: running max, running sum, rescaled running output."""

    BLOCK = 16

    def attend(self, q, k, v, *, key_padding_mask, causal, scale, kv_index) -> torch.Tensor:
        seqlen_q, seqlen_k, acc_dtype = q.shape[1], k.shape[1], self.accumulator_dtype(q.dtype)
        q = q.float().transpose(1, 2) * scale  # [B, H, Sq, D]
        k = k.index_select(2, kv_index).float().transpose(1, 2)
        v = v.index_select(2, kv_index).float().transpose(1, 2)
        row_max = q.new_full(q.shape[:-1] + (1,), float("-inf"))
        row_sum = q.new_zeros(q.shape[:-1] + (1,), dtype=acc_dtype)
        acc = q.new_zeros(q.shape, dtype=acc_dtype)
        tiles = self.tiles(seqlen_k, q.device)
        key_end = seqlen_k if causal is None else self.causal_key_end(seqlen_q, seqlen_k, causal)
        for n, cols in enumerate(tiles):
            last = n == len(tiles) - 1
            if int(cols[0]) >= key_end:  # no query row sees this tile: the loop bound of a causal kernel
                continue
            scores = q @ k[:, :, cols].transpose(-2, -1)
            visible = self.tile_visibility(cols, seqlen_q, seqlen_k, key_padding_mask, causal, last=last)
            scores = scores.masked_fill(~visible, float("-inf"))
            new_max = torch.maximum(row_max, scores.amax(dim=-1, keepdim=True))
            safe_max = new_max.masked_fill(new_max == float("-inf"), 0.0)  # rows with nothing visible so far
            probs = torch.exp(scores - safe_max)
            alpha = torch.exp(row_max - safe_max)  # how much the old running values shrink under the new max
            row_sum = (row_sum * alpha + probs.sum(dim=-1, keepdim=True)).to(acc_dtype)
            acc = (self.rescale(acc, alpha) + probs @ v[:, :, cols]).to(acc_dtype)
            row_max = new_max
        out = acc.float() / row_sum.float().masked_fill(row_sum == 0, 1.0)
        return out.transpose(1, 2)

    def accumulator_dtype(self, input_dtype: torch.dtype) -> torch.dtype:
        return torch.float32

    def tiles(self, seqlen_k: int, device) -> list[torch.Tensor]:
        """Key indices of each tile; the last one is partial when Sk is not a multiple of BLOCK."""
        return [
            torch.arange(start, min(start + self.BLOCK, seqlen_k), device=device)
            for start in range(0, seqlen_k, self.BLOCK)
        ]

    def causal_key_end(self, seqlen_q: int, seqlen_k: int, causal: str) -> int:
        """Keys from here on are hidden from every query row (the last row sees keys j <= Sq - 1 + offset)."""
        return max(0, min(seqlen_k, seqlen_q + self.causal_offset(seqlen_q, seqlen_k, causal)))

    def tile_visibility(self, cols, seqlen_q, seqlen_k, key_padding_mask, causal, *, last: bool) -> torch.Tensor:
        """bool [B or 1, 1, Sq, tile]: causal from the indices, key padding loaded for the tile's keys."""
        visible = torch.ones(seqlen_q, cols.numel(), dtype=torch.bool, device=cols.device)
        if causal is not None:
            rows = torch.arange(seqlen_q, device=cols.device)[:, None]
            visible = cols[None, :] <= rows + self.causal_offset(seqlen_q, seqlen_k, causal)
        visible = visible[None, None]
        if key_padding_mask is not None:
            visible = visible & key_padding_mask[:, None, None, cols]
        return visible

    def rescale(self, acc: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return acc * alpha


class PackedAttention:
    """Native packed attention: validate ``cu_seqlens``, then run each sequence through a dense implementation."""

    head_dims = HEAD_DIMS

    def __init__(self, dense: EagerAttention | None = None):
        self.dense = dense or EagerAttention()

    def __call__(self, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=None, scale=None):
        check_packed_inputs(q, k, v, head_dims=self.head_dims)
        bounds_q = self.bounds(cu_seqlens_q, q.shape[0], "cu_seqlens_q", max_seqlen_q)
        bounds_k = self.bounds(cu_seqlens_k, k.shape[0], "cu_seqlens_k", max_seqlen_k)
        if len(bounds_q) != len(bounds_k):
            raise AttentionInputError(
                f"cu_seqlens_q and cu_seqlens_k describe different batch sizes ({len(bounds_q)} vs {len(bounds_k)})"
            )
        out = q.new_zeros(q.shape)  # rows of no sequence stay 0
        options = {name: value for name, value in (("causal", causal), ("scale", scale)) if value is not None}
        for (q0, q1), (k0, k1) in self.sequences(bounds_q, bounds_k, max_seqlen_k):
            if q1 == q0:
                continue
            out[q0:q1] = self.dense(q[None, q0:q1], k[None, k0:k1], v[None, k0:k1], **options)[0]
        return out

    def bounds(self, cu_seqlens, total: int, name: str, max_seqlen: int) -> list[tuple[int, int]]:
        """(start, end) of each sequence, after checking ``cu_seqlens``."""
        lengths = check_cu_seqlens(cu_seqlens, total, name, max_seqlen=max_seqlen)
        starts = cu_seqlens.tolist()[:-1]
        return [(start, start + n) for start, n in zip(starts, lengths)]

    def sequences(self, bounds_q, bounds_k, max_seqlen_k):
        """(query range, key range) of each sequence."""
        return list(zip(bounds_q, bounds_k))
