"""The catalogue: each mutant is one of the correct bases in ``bases.py`` with one step overridden by one bug.

Register them as a third party would, on the command line::

    python -m pytest conformance --device cpu --impl-module tests.mutants.catalogue:MUTANTS \
        --impl-module tests.mutants.catalogue:CONTROLS --impl 'mutant-*,control-*'

``MUTANTS`` and ``CONTROLS`` are lists of ``attnconf.Implementation``; building them registers nothing (the
suite's ``--impl-module`` does). Each mutant declares the capabilities that make the contracts able to catch its
bug run; its description (the class docstring) is the bug in one line.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from attnconf import ALIGNMENTS, BOTTOM_RIGHT, TOP_LEFT, Capabilities, Implementation
from attnconf.layouts import swap_seq_heads, to_canonical
from attnconf.validation import AttentionInputError

from .bases import (
    HEAD_DIMS,
    EagerAttention,
    FeatureAttention,
    KvCacheAttention,
    ValueHeadDimAttention,
    ManualBackwardAttention,
    PackedAttention,
    TiledAttention,
    WindowedAttention,
)

# Everything the bases do, declared, so every contract runs against every mutant unless a mutant narrows it.
FULL = Capabilities(
    devices={"cpu"},
    head_dims=HEAD_DIMS,
    causal=set(ALIGNMENTS),
    key_padding_mask=True,
    varlen=True,
    gqa=True,
    custom_scale=True,
    backward=True,
    deterministic=True,
)
TILED = dataclasses.replace(FULL, backward=False)  # the tiled base has no backward of its own
WINDOWED = dataclasses.replace(FULL, window=True)
FEATURES = dataclasses.replace(FULL, softcap=True, alibi=True, sink=True, lse="e")
CACHED = dataclasses.replace(FULL, kvcache=True, paged=True)
VALUE_DIMS = dataclasses.replace(FULL, head_dims_v=None)


# ---- scale -----------------------------------------------------------------------------------------------------


class ScaleOneOverD(EagerAttention):
    """default scale 1/D instead of 1/sqrt(D)"""

    def softmax_scale(self, head_dim, scale):
        return 1.0 / head_dim if scale is None else scale


class ScaleIgnored(EagerAttention):
    """a custom scale is ignored: always 1/sqrt(D)"""

    def softmax_scale(self, head_dim, scale):
        return super().softmax_scale(head_dim, None)


# ---- softcap, ALiBi, the log-sum-exp, sinks -------------------------------------------------------------------


class SoftcapAfterMask(FeatureAttention):
    """softcap applied after the mask: masked keys get the score -cap instead of -inf"""

    def modified_scores(self, raw, scale):
        softcap, self.softcap = self.softcap, None
        scores = super().modified_scores(raw, scale)
        self.softcap = softcap
        return scores

    def masked(self, scores, visible):
        scores = super().masked(scores, visible)
        return scores if self.softcap is None else self.softcap * torch.tanh(scores / self.softcap)


class SoftcapWithoutScale(FeatureAttention):
    """softcap of the unscaled scores: cap * tanh(q·k / cap), the softmax scale dropped"""

    def capped(self, scores, raw):
        return self.softcap * torch.tanh(raw / self.softcap)


class AlibiSignFlipped(FeatureAttention):
    """ALiBi bias added with the wrong sign: +slope * distance"""

    def alibi_bias(self, slopes, seqlen_q, seqlen_k, device):
        return -super().alibi_bias(slopes, seqlen_q, seqlen_k, device)


class AlibiSlopesReversed(FeatureAttention):
    """ALiBi slopes read in reverse head order (slope H-1-h for head h)"""

    def head_slopes(self, slopes):
        return super().head_slopes(slopes).flip(1)


class AlibiTopLeft(FeatureAttention):
    """ALiBi distance measured top-left, |i - j|, instead of from i + Sk - Sq"""

    def alibi_distance(self, seqlen_q, seqlen_k, device):
        return (torch.arange(seqlen_q, device=device)[:, None] - torch.arange(seqlen_k, device=device)[None, :]).abs()


class LseInBaseTwo(FeatureAttention):
    """returns log2 of the denominator while declaring the natural log"""

    def log_sum_exp(self, scores, raw_scores):
        return super().log_sum_exp(scores, raw_scores) / math.log(2.0)


class LseMissingScale(FeatureAttention):
    """the log-sum-exp of the unscaled scores (the output itself is right)"""

    def log_sum_exp(self, scores, raw_scores):
        return super().log_sum_exp(raw_scores, raw_scores)


class SinkLeftOutOfLse(FeatureAttention):
    """the sink is in the softmax but not in the returned log-sum-exp"""

    def log_sum_exp(self, scores, raw_scores):
        return torch.logsumexp(scores, dim=-1)


class ScaleFromValueHeadDim(ValueHeadDimAttention):
    """default scale 1/sqrt(Dv) from the value head dim instead of 1/sqrt(D)"""

    def __call__(self, q, k, v, **options):
        self.value_dim = v.shape[-1]
        return super().__call__(q, k, v, **options)

    def softmax_scale(self, head_dim, scale):
        return super().softmax_scale(self.value_dim, scale)


# ---- KV caches ---------------------------------------------------------------------------------------------------


class KvCacheLengthOffByOne(KvCacheAttention):
    """KV cache: reads cache_seqlens[b] + 1 keys (the slot after the last valid one)"""

    def valid_length(self, cache_seqlen):
        return cache_seqlen + 1


class PagedTableAsIdentity(KvCacheAttention):
    """paged cache: page p of sequence b read as page b * pages_per_sequence + p (the block table ignored)"""

    def page(self, block_table, b, page_number):
        return b * block_table.shape[1] + page_number


class KvCacheCausalTopLeft(KvCacheAttention):
    """KV cache: causal decoding aligned top-left (query i sees keys j <= i instead of j <= i + L - Sq)"""

    def alignment(self, causal):
        return TOP_LEFT if causal is not None else None


# ---- sliding window -------------------------------------------------------------------------------------------


class WindowLeftOffByOne(WindowedAttention):
    """sliding window: one key too many on the left (j >= i + Sk - Sq - left - 1)"""

    def window_band(self, seqlen_q, seqlen_k, left, right, device):
        return super().window_band(seqlen_q, seqlen_k, left + 1 if left >= 0 else left, right, device)


class WindowRightOffByOne(WindowedAttention):
    """sliding window: one key too few on the right (j <= i + Sk - Sq + right - 1)"""

    def window_band(self, seqlen_q, seqlen_k, left, right, device):
        return super().window_band(seqlen_q, seqlen_k, left, right - 1 if right >= 0 else right, device)


class WindowTopLeft(WindowedAttention):
    """sliding window measured from the top-left (centre i instead of i + Sk - Sq)"""

    def window_offset(self, seqlen_q, seqlen_k):
        return 0


# ---- key-padding mask ------------------------------------------------------------------------------------------


class MaskInverted(EagerAttention):
    """key-padding mask read as True = ignore (nn.MultiheadAttention's polarity)"""

    def apply_key_padding(self, visible, key_padding_mask):
        return visible & ~key_padding_mask[:, None, None, :]


class MaskOnQueries(EagerAttention):
    """key-padding mask applied to query rows instead of key columns"""

    def apply_key_padding(self, visible, key_padding_mask):
        return visible & key_padding_mask[:, None, :, None]


class MaskFirstBatchOnly(EagerAttention):
    """the mask of batch element 0 is broadcast to the whole batch"""

    def apply_key_padding(self, visible, key_padding_mask):
        return visible & key_padding_mask[:1, None, None, :]


class MaskDroppedWithCausal(EagerAttention):
    """the key-padding mask is dropped when causal is on (an if/elif between the two)"""

    def visibility(self, batch, seqlen_q, seqlen_k, key_padding_mask, causal, device):
        if causal is not None:
            key_padding_mask = None
        return super().visibility(batch, seqlen_q, seqlen_k, key_padding_mask, causal, device)


class MaskDtypeUnchecked(EagerAttention):
    """a non-bool mask is silently cast with .bool() instead of rejected"""

    def __call__(self, q, k, v, *, key_padding_mask=None, **options):
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.bool()
        return super().__call__(q, k, v, key_padding_mask=key_padding_mask, **options)


class TiledMaskIgnoredInLastTile(TiledAttention):
    """tiled kernel: the key-padding mask is not loaded for the last key tile"""

    def tile_visibility(self, cols, seqlen_q, seqlen_k, key_padding_mask, causal, *, last):
        return super().tile_visibility(cols, seqlen_q, seqlen_k, None if last else key_padding_mask, causal, last=last)


# ---- causal ----------------------------------------------------------------------------------------------------


class CausalDiagonalExcluded(EagerAttention):
    """causal off by one: a query does not see the key on its own diagonal"""

    def causal_offset(self, seqlen_q, seqlen_k, causal):
        return super().causal_offset(seqlen_q, seqlen_k, causal) - 1


class CausalOneFutureKey(EagerAttention):
    """causal off by one: a query also sees the next (future) key"""

    def causal_offset(self, seqlen_q, seqlen_k, causal):
        return super().causal_offset(seqlen_q, seqlen_k, causal) + 1


class CausalTopLeftForBottomRight(EagerAttention):
    """bottom-right causal is computed top-left aligned"""

    def causal_offset(self, seqlen_q, seqlen_k, causal):
        return super().causal_offset(seqlen_q, seqlen_k, TOP_LEFT)


class CausalBottomRightForTopLeft(EagerAttention):
    """top-left causal is computed bottom-right aligned"""

    def causal_offset(self, seqlen_q, seqlen_k, causal):
        return super().causal_offset(seqlen_q, seqlen_k, BOTTOM_RIGHT)


# ---- rows with no visible key, softmax ---------------------------------------------------------------------------


class NanOnEmptyRows(EagerAttention):
    """plain softmax: a row with no visible key gives NaN"""

    def softmax(self, scores):
        return torch.softmax(scores, dim=-1)


class UniformOnEmptyRows(EagerAttention):
    """masked scores filled with finfo.min instead of -inf: a row with no visible key attends uniformly"""

    def masked(self, scores, visible):
        return scores.masked_fill(~visible, torch.finfo(scores.dtype).min)


class NoMaxSubtraction(EagerAttention):
    """softmax without subtracting the row max: exp overflows on large logits"""

    def softmax(self, scores):
        weights = torch.exp(scores)
        total = weights.sum(dim=-1, keepdim=True)
        return weights / total.masked_fill(total == 0, 1.0)


class SoftmaxOverQueries(EagerAttention):
    """softmax normalised over the query axis instead of the key axis"""

    def softmax(self, scores):
        return super().softmax(scores.transpose(-2, -1)).transpose(-2, -1)


# ---- tiling ------------------------------------------------------------------------------------------------------


class TiledNoRescale(TiledAttention):
    """tiled kernel: the running output is not rescaled when the running max changes"""

    def rescale(self, acc, alpha):
        return acc


class TiledTailDropped(TiledAttention):
    """tiled kernel: the last partial key tile is dropped when Sk is not a multiple of the block"""

    def tiles(self, seqlen_k, device):
        return [t for t in super().tiles(seqlen_k, device) if t.numel() == self.BLOCK]


class TiledTailWrapsAround(TiledAttention):
    """tiled kernel: the last partial key tile reads a full block, wrapping around to the first keys"""

    def tiles(self, seqlen_k, device):
        return [torch.arange(start, start + self.BLOCK, device=device) % seqlen_k
                for start in range(0, seqlen_k, self.BLOCK)]


class TiledCausalLoopEndsEarly(TiledAttention):
    """tiled causal kernel: the loop over key tiles ends at the first query row's bound instead of the last row's"""

    def causal_key_end(self, seqlen_q, seqlen_k, causal):
        return max(0, min(seqlen_k, 1 + self.causal_offset(seqlen_q, seqlen_k, causal)))


class TiledHalfAccumulation(TiledAttention):
    """tiled kernel: the running output and sum are kept in fp16/bf16 instead of fp32"""

    def accumulator_dtype(self, input_dtype):
        return input_dtype


# ---- grouped-query attention -------------------------------------------------------------------------------------


class GqaModulo(EagerAttention):
    """GQA head mapping h % Hkv instead of h // (Hq / Hkv)"""

    def kv_head_index(self, heads_q, heads_kv, device):
        return torch.arange(heads_q, device=device) % heads_kv


class HeadsNotChecked(EagerAttention):
    """Hq % Hkv != 0 is accepted silently (the head-count check is swallowed)"""

    def validate(self, q, k, v, key_padding_mask):
        try:
            super().validate(q, k, v, key_padding_mask)
        except AttentionInputError as exc:
            if "heads" not in str(exc):
                raise


# ---- gradients (hand-written backward) ---------------------------------------------------------------------------


class GradDkMissingScale(ManualBackwardAttention):
    """backward: dK = dSᵀQ without the softmax scale"""

    def grad_k(self, dscores, q, scale):
        return super().grad_k(dscores, q, 1.0)


class GradDvTransposed(ManualBackwardAttention):
    """backward: dV = P·dO instead of Pᵀ·dO (P used untransposed)"""

    def grad_v(self, probs, dout):
        return torch.einsum("bhqk,bkhd->bqhd", probs, dout)


class GradDqWrongRow(ManualBackwardAttention):
    """backward: row i of dQ is computed from row i-1 of dS"""

    def grad_q(self, dscores, k, scale):
        return super().grad_q(dscores, k, scale).roll(1, dims=1)


class GradMaskedKeysGetGradients(ManualBackwardAttention):
    """backward recomputes P without the key-padding mask: masked keys receive dK and dV"""

    def backward_visibility(self, visible, batch, seqlen_q, seqlen_k, causal, device):
        return self.visibility(batch, seqlen_q, seqlen_k, None, causal, device)


class GradGqaNotSummed(ManualBackwardAttention):
    """backward: dK, dV of a kv head take the first query head of its group instead of the sum over the group"""

    def fold_heads(self, grad, kv_index, heads_kv):
        return grad[:, :, :: grad.shape[2] // heads_kv]


class GradDetached(EagerAttention):
    """the output is detached: it does not require grad although backward is declared"""

    def finish(self, out, q):
        return super().finish(out, q).detach()


# ---- layout, inputs, output ----------------------------------------------------------------------------------------


class AssumesContiguous(EagerAttention):
    """reads inputs with contiguous strides whatever their real strides (wrong on views)"""

    def load(self, t):
        contiguous_strides = torch.empty(t.shape, device="meta").stride()
        return torch.as_strided(t, t.shape, contiguous_strides, t.storage_offset())


class ModifiesInput(EagerAttention):
    """zeroes masked keys and values in place in the caller's k and v"""

    def __call__(self, q, k, v, *, key_padding_mask=None, **options):
        self.validate(q, k, v, key_padding_mask)
        if key_padding_mask is not None:
            hidden = ~key_padding_mask
            k.data[hidden] = 0
            v.data[hidden] = 0
        return super().__call__(q, k, v, key_padding_mask=key_padding_mask, **options)


class WrongDtype(EagerAttention):
    """returns the float32 accumulator instead of casting back to the input dtype"""

    def finish(self, out, q):
        return out


# ---- determinism and caching -------------------------------------------------------------------------------------


class NotDeterministic(EagerAttention):
    """declares determinism, but sums the values in a random key order on each call"""

    def weighted_sum(self, probs, v):
        order = torch.randperm(v.shape[1], device=v.device)
        return super().weighted_sum(probs[..., order], v[:, order])


class CachedResult(EagerAttention):
    """returns the cached result of an earlier call with inputs of the same shape"""

    def __init__(self):
        self._cache: dict = {}

    def __call__(self, q, k, v, **options):
        key = (tuple(q.shape), tuple(k.shape), q.dtype, tuple(sorted((n, repr(o)) for n, o in options.items())))
        if key not in self._cache:
            self._cache[key] = super().__call__(q, k, v, **options)
        return self._cache[key]


# ---- packed batches (native varlen) ------------------------------------------------------------------------------


class VarlenWindowLeaks(PackedAttention):
    """varlen: each sequence reads a fixed window of max_seqlen_k keys ending at its end (leaks from its neighbour)"""

    def sequences(self, bounds_q, bounds_k, max_seqlen_k):
        return [(bq, (max(0, k1 - max_seqlen_k), k1)) for bq, (_, k1) in zip(bounds_q, bounds_k)]


class VarlenCuSeqlensOffByOne(PackedAttention):
    """varlen: key ranges read one token late from cu_seqlens_k"""

    def sequences(self, bounds_q, bounds_k, max_seqlen_k):
        total_k = bounds_k[-1][1] if bounds_k else 0
        return [(bq, (min(k0 + 1, total_k), min(k1 + 1, total_k))) for bq, (k0, k1) in zip(bounds_q, bounds_k)]


class VarlenKeyRangesFromQueryOffsets(PackedAttention):
    """varlen: key ranges read from cu_seqlens_q (right only while every Sk_b == Sq_b)"""

    def sequences(self, bounds_q, bounds_k, max_seqlen_k):
        return [(bq, bq) for bq in bounds_q]


class VarlenLastSequenceDropped(PackedAttention):
    """varlen: the loop over sequences stops before the last one"""

    def sequences(self, bounds_q, bounds_k, max_seqlen_k):
        return super().sequences(bounds_q, bounds_k, max_seqlen_k)[:-1]


class VarlenStopsAtEmptySequence(PackedAttention):
    """varlen: an empty query sequence is taken for the end of the batch"""

    def sequences(self, bounds_q, bounds_k, max_seqlen_k):
        out = []
        for (q0, q1), bk in super().sequences(bounds_q, bounds_k, max_seqlen_k):
            if q1 == q0:
                break
            out.append(((q0, q1), bk))
        return out


class VarlenCuSeqlensUnchecked(PackedAttention):
    """varlen: cu_seqlens is used as given (no int32, monotonicity or total checks)"""

    def bounds(self, cu_seqlens, total, name, max_seqlen):
        values = cu_seqlens.tolist()
        return list(zip(values[:-1], values[1:]))


# ---- garbage results and no validation at all (the suite's floor: these must fail whatever the dtype or layout) -


class ZeroOutput(EagerAttention):
    """returns all zeros (still differentiable in q, k, v, so the gradients are zero too)"""

    def finish(self, out, q):
        return (super().finish(out, q) * 0).to(q.dtype)


class ZeroGradients(ManualBackwardAttention):
    """backward returns all-zero dQ, dK, dV (the forward is right)"""

    def grad_v(self, probs, dout):
        return super().grad_v(probs, dout) * 0

    def grad_q(self, dscores, k, scale):
        return super().grad_q(dscores, k, scale) * 0

    def grad_k(self, dscores, q, scale):
        return super().grad_k(dscores, q, scale) * 0


class NothingValidated(EagerAttention):
    """validates nothing: every input is used as given"""

    def validate(self, q, k, v, key_padding_mask):
        return None


class NothingValidatedPacked(PackedAttention):
    """validates nothing, packed batches included: every input and cu_seqlens is used as given"""

    def __init__(self):
        super().__init__(NothingValidated())

    def __call__(self, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, **options):
        out = q.new_zeros(q.shape)
        values_q, values_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
        for q0, q1, k0, k1 in zip(values_q, values_q[1:], values_k, values_k[1:]):
            if q1 > q0:
                out[q0:q1] = self.dense(q[None, q0:q1], k[None, k0:k1], v[None, k0:k1], **options)[0]
        return out


def _in_layout(dense: EagerAttention, layout: str):
    """``dense`` written as a function of ``layout`` (and registered through attnconf's adapter for it)."""
    if layout == "bhsd":
        def bhsd(q, k, v, **options):
            return swap_seq_heads(dense(swap_seq_heads(q), swap_seq_heads(k), swap_seq_heads(v), **options))
        return to_canonical(bhsd, "bhsd")

    def bsd(q, k, v, *, num_heads, head_dim, **options):
        split = lambda t, heads: t.unflatten(-1, (heads, head_dim)) if t.dim() >= 1 else t  # noqa: E731
        return dense(split(q, num_heads), split(k, -1), split(v, -1), **options).flatten(-2)
    return to_canonical(bsd, "bsd")


# ---- the lists -----------------------------------------------------------------------------------------------------


def _implementation(name: str, forward, capabilities: Capabilities, varlen_forward=None, description=None,
                    kvcache_forward=None) -> Implementation:
    bug = next(f for f in (kvcache_forward, varlen_forward, forward) if f is not None)
    return Implementation(name=name, forward=forward, capabilities=capabilities, varlen_forward=varlen_forward,
                          kvcache_forward=kvcache_forward, description=description or (type(bug).__doc__ or "").strip())


def _dense(name: str, cls, capabilities: Capabilities = FULL) -> Implementation:
    return _implementation(f"mutant-{name}", cls(), capabilities)


def _cached(name: str, cls) -> Implementation:
    """A KV-cache mutant: its dense path is the correct eager base."""
    return _implementation(f"mutant-{name}", EagerAttention(), CACHED, kvcache_forward=cls())


def _packed(name: str, cls) -> Implementation:
    """A packed-batch mutant: its dense path is the correct eager base."""
    return _implementation(f"mutant-{name}", EagerAttention(), FULL, varlen_forward=cls())


MUTANTS: list[Implementation] = [
    _dense("scale-one-over-d", ScaleOneOverD),
    _dense("scale-ignored", ScaleIgnored),
    _dense("mask-inverted", MaskInverted),
    _dense("mask-on-queries", MaskOnQueries),
    _dense("mask-first-batch-only", MaskFirstBatchOnly),
    _dense("mask-dropped-with-causal", MaskDroppedWithCausal),
    _dense("mask-dtype-unchecked", MaskDtypeUnchecked),
    _dense("tiled-mask-ignored-in-last-tile", TiledMaskIgnoredInLastTile, TILED),
    _dense("causal-diagonal-excluded", CausalDiagonalExcluded),
    _dense("causal-one-future-key", CausalOneFutureKey),
    _dense("causal-top-left-for-bottom-right", CausalTopLeftForBottomRight),
    _dense("causal-bottom-right-for-top-left", CausalBottomRightForTopLeft),
    _dense("nan-on-empty-rows", NanOnEmptyRows),
    _dense("uniform-on-empty-rows", UniformOnEmptyRows),
    _dense("no-max-subtraction", NoMaxSubtraction),
    _dense("softmax-over-queries", SoftmaxOverQueries),
    _dense("tiled-no-rescale", TiledNoRescale, TILED),
    _dense("tiled-tail-dropped", TiledTailDropped, TILED),
    _dense("tiled-tail-wraps-around", TiledTailWrapsAround, TILED),
    _dense("tiled-causal-loop-ends-early", TiledCausalLoopEndsEarly, TILED),
    _dense("tiled-half-accumulation", TiledHalfAccumulation, TILED),
    _dense("gqa-modulo", GqaModulo),
    _dense("heads-not-checked", HeadsNotChecked),
    _dense("grad-dk-missing-scale", GradDkMissingScale),
    _dense("grad-dv-transposed", GradDvTransposed),
    _dense("grad-dq-wrong-row", GradDqWrongRow),
    _dense("grad-masked-keys-get-gradients", GradMaskedKeysGetGradients),
    _dense("grad-gqa-not-summed", GradGqaNotSummed),
    _dense("grad-detached", GradDetached),
    _dense("assumes-contiguous", AssumesContiguous),
    _dense("modifies-input", ModifiesInput),
    _dense("wrong-dtype", WrongDtype),
    _dense("not-deterministic", NotDeterministic),
    _dense("cached-result", CachedResult),
    _packed("varlen-window-leaks", VarlenWindowLeaks),
    _packed("varlen-cu-seqlens-off-by-one", VarlenCuSeqlensOffByOne),
    _packed("varlen-key-ranges-from-query-offsets", VarlenKeyRangesFromQueryOffsets),
    _packed("varlen-last-sequence-dropped", VarlenLastSequenceDropped),
    _packed("varlen-stops-at-empty-sequence", VarlenStopsAtEmptySequence),
    _packed("varlen-cu-seqlens-unchecked", VarlenCuSeqlensUnchecked),
    _dense("window-left-off-by-one", WindowLeftOffByOne, WINDOWED),
    _dense("window-right-off-by-one", WindowRightOffByOne, WINDOWED),
    _dense("window-top-left", WindowTopLeft, WINDOWED),
    _dense("softcap-after-mask", SoftcapAfterMask, FEATURES),
    _dense("softcap-without-scale", SoftcapWithoutScale, FEATURES),
    _dense("alibi-sign-flipped", AlibiSignFlipped, FEATURES),
    _dense("alibi-slopes-reversed", AlibiSlopesReversed, FEATURES),
    _dense("alibi-top-left", AlibiTopLeft, FEATURES),
    _dense("lse-in-base-two", LseInBaseTwo, FEATURES),
    _dense("lse-missing-scale", LseMissingScale, FEATURES),
    _dense("sink-left-out-of-lse", SinkLeftOutOfLse, FEATURES),
    _dense("scale-from-value-head-dim", ScaleFromValueHeadDim, VALUE_DIMS),
    _cached("kvcache-length-off-by-one", KvCacheLengthOffByOne),
    _cached("paged-table-as-identity", PagedTableAsIdentity),
    _cached("kvcache-causal-top-left", KvCacheCausalTopLeft),
    _dense("zero-output", ZeroOutput),
    _dense("zero-gradients", ZeroGradients),
    _implementation("mutant-nothing-validated", NothingValidated(), FULL, varlen_forward=NothingValidatedPacked()),
    _implementation("mutant-nothing-validated-bhsd", _in_layout(NothingValidated(), "bhsd"), FULL,
                    varlen_forward=NothingValidatedPacked(),
                    description="validates nothing, written in SDPA's layout [B, H, S, D] (attnconf's adapter converts)"),
    _implementation("mutant-nothing-validated-bsd", _in_layout(NothingValidated(), "bsd"), FULL,
                    varlen_forward=NothingValidatedPacked(),
                    description="validates nothing, written on merged heads [B, S, H·D] (attnconf's adapter converts)"),
]

# The correct bases themselves: they must pass every contract, or a mutant's "catch" proves nothing.
CONTROLS: list[Implementation] = [
    _implementation("control-eager", EagerAttention(), FULL),
    _implementation("control-manual-backward", ManualBackwardAttention(), FULL),
    _implementation("control-tiled", TiledAttention(), TILED),
    _implementation("control-packed", EagerAttention(), FULL, varlen_forward=PackedAttention()),
    _implementation("control-windowed", WindowedAttention(), WINDOWED),
    _implementation("control-features", FeatureAttention(), FEATURES),
    _implementation("control-kvcache", EagerAttention(), CACHED, kvcache_forward=KvCacheAttention()),
    _implementation("control-value-head-dim", ValueHeadDimAttention(), VALUE_DIMS),
]
