"""The executable definition of attention that every contract compares against.

``reference_attention`` computes in the dtype it is given: called on float64 copies it is the golden; called on
the test dtype it is the same-dtype reference whose error sets the tolerance (see ``tolerance.py``).
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import torch

from . import masks


def causal_visibility(seqlen_q: int, seqlen_k: int, alignment: str, device=None) -> torch.Tensor:
    """bool [Sq, Sk]: True where query i may see key j under the given causal alignment."""
    return masks.materialise(masks.causal(alignment, seqlen_q, seqlen_k), 1, 1, seqlen_q, seqlen_k, device)[0, 0]


def visibility(
    seqlen_q: int, seqlen_k: int, *, batch: int, key_padding_mask=None, causal: str | None = None, window=None,
    device=None,
) -> torch.Tensor:
    """bool [B, 1, Sq, Sk]: which keys each query row may attend to (the predicates of ``masks.py``)."""
    mask = masks.visibility_mask(seqlen_q, seqlen_k, key_padding_mask=key_padding_mask, causal_alignment=causal,
                                 window=window)
    return masks.materialise(mask, batch, 1, seqlen_q, seqlen_k, device)


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    key_padding_mask: torch.Tensor | None = None,
    causal: str | None = None,
    scale: float | None = None,
    window: tuple[int, int] | None = None,
    softcap: float | None = None,
    alibi_slopes: torch.Tensor | None = None,
    sink: torch.Tensor | None = None,
    return_lse: bool = False,
):
    """softmax(score(Q Kᵀ · scale), over visible keys) V in the canonical layout; rows with no visible key give 0.

    ``score`` is the options' score function (``masks.score_modification``: softcap, then the ALiBi bias), applied
    before the mask. ``sink`` [Hq] adds ``exp(sink[h])`` to each row's denominator (a logit of a key whose value is
    0). With ``return_lse`` it returns ``(out, lse)``, lse [B, Hq, Sq] the natural log of each row's denominator
    (the sink included); -inf for a row with no visible key and no sink.
    """
    batch, seqlen_q, heads_q, head_dim = q.shape
    seqlen_k, heads_kv = k.shape[1], k.shape[2]
    if scale is None:
        scale = 1.0 / math.sqrt(head_dim)
    group = heads_q // max(heads_kv, 1)
    k = k.repeat_interleave(group, dim=2)  # query head h reads kv head h // group
    v = v.repeat_interleave(group, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    scores = masks.apply_scores(masks.score_modification(seqlen_q, seqlen_k, softcap_value=softcap,
                                                         alibi_slopes=alibi_slopes), scores)
    visible = visibility(
        seqlen_q, seqlen_k, batch=batch, key_padding_mask=key_padding_mask, causal=causal, window=window,
        device=q.device,
    )
    scores = scores.masked_fill(~visible, float("-inf"))
    row_max = scores.amax(dim=-1, keepdim=True).detach() if seqlen_k else scores.new_full(
        scores.shape[:-1] + (1,), float("-inf"))
    sink_logit = None if sink is None else sink.to(scores.dtype)[None, :, None, None]
    if sink_logit is not None:
        row_max = torch.maximum(row_max, sink_logit.detach())
    row_max = torch.where(torch.isinf(row_max), torch.zeros_like(row_max), row_max)
    weights = torch.exp(scores - row_max)
    denom = weights.sum(dim=-1, keepdim=True)
    if sink_logit is not None:
        denom = denom + torch.exp(sink_logit - row_max)
    probs = weights / torch.where(denom == 0, torch.ones_like(denom), denom)
    out = torch.einsum("bhqk,bkhd->bqhd", probs.to(v.dtype), v)
    if not return_lse:
        return out
    lse = torch.where(denom == 0, torch.full_like(denom, float("-inf")), row_max + torch.log(denom))
    return out, lse.squeeze(-1)


def reference_varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    *,
    causal: str | None = None,
    scale: float | None = None,
    window: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Packed attention defined as each sequence run alone through ``reference_attention``."""
    bounds_q, bounds_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    pieces = []
    for b in range(len(bounds_q) - 1):
        qs = q[bounds_q[b] : bounds_q[b + 1]]
        ks, vs = k[bounds_k[b] : bounds_k[b + 1]], v[bounds_k[b] : bounds_k[b + 1]]
        if qs.shape[0] == 0:
            continue
        out = reference_attention(qs[None], ks[None], vs[None], causal=causal, scale=scale, window=window)
        pieces.append(out[0])
    if not pieces:
        return q * 0.0
    return torch.cat(pieces)


def fused_formulation(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dout: torch.Tensor | None,
    *,
    key_padding_mask: torch.Tensor | None = None,
    causal: str | None = None,
    scale: float | None = None,
    window: tuple[int, int] | None = None,
    softcap: float | None = None,
    alibi_slopes: torch.Tensor | None = None,
    sink: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The same function as the equations a fused kernel evaluates, in the dtype given, without autograd.

    Scale is applied to q first; the backward works from P, dP = dO Vᵀ and D = rowsum(dO ∘ O) (the
    FlashAttention-2 backward). It rounds differently from ``reference_attention`` and autograd, so the larger
    of the formulations' errors is what a standard implementation in this dtype may be expected to make
    (as flash-attention's tests use a reordered reference). Returns out and lse, and dq, dk, dv when ``dout`` is
    given.
    """
    visible = visibility(q.shape[1], k.shape[1], batch=q.shape[0], key_padding_mask=key_padding_mask,
                         causal=causal, window=window, device=q.device)
    return _fused_visible(q, k, v, dout, visible, scale, ScoreOptions.of(q, k, softcap, alibi_slopes, sink))


@dataclass(frozen=True)
class ScoreOptions:
    """What a fused kernel does to the scores besides masking: softcap, the ALiBi bias [B|1, H, Sq, Sk], a sink."""

    softcap: float | None = None
    bias: torch.Tensor | None = None  # added after the softcap
    sink: torch.Tensor | None = None  # [Hq]

    @classmethod
    def of(cls, q, k, softcap=None, alibi_slopes=None, sink=None) -> "ScoreOptions":
        bias = None
        if alibi_slopes is not None:
            seqlen_q, seqlen_k, heads = q.shape[1], k.shape[1], q.shape[2]
            batch = alibi_slopes.shape[0] if alibi_slopes.dim() == 2 else 1
            zeros = torch.zeros(batch, heads, seqlen_q, seqlen_k, dtype=torch.float64, device=q.device)
            bias = masks.apply_scores(masks.alibi(alibi_slopes, seqlen_q, seqlen_k), zeros)
        return cls(softcap, bias, sink)

    def flipped(self) -> "ScoreOptions":
        """The same options with the keys in reverse order."""
        return ScoreOptions(self.softcap, None if self.bias is None else self.bias.flip(-1), self.sink)


def _fused_visible(q, k, v, dout, visible, scale, options: ScoreOptions = ScoreOptions()) -> dict[str, torch.Tensor]:
    batch, seqlen_q, heads_q, head_dim = q.shape
    seqlen_k, heads_kv = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    group = heads_q // heads_kv
    kr, vr = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q * scale, kr)
    capped_slope = None  # d(softcapped score)/d(score) = 1 - tanh², for the backward
    if options.softcap is not None:
        tanh = torch.tanh(scores / options.softcap)
        scores, capped_slope = tanh * options.softcap, 1 - tanh * tanh
    if options.bias is not None:
        scores = scores + options.bias.to(scores.dtype)
    scores = scores.masked_fill(~visible, float("-inf"))
    row_max = scores.amax(dim=-1, keepdim=True) if seqlen_k else scores.new_full(scores.shape[:-1] + (1,), -math.inf)
    sink = None if options.sink is None else options.sink.to(scores.dtype)[None, :, None, None]
    if sink is not None:
        row_max = torch.maximum(row_max, sink)
    row_max = torch.where(torch.isinf(row_max), torch.zeros_like(row_max), row_max)
    weights = torch.exp(scores - row_max)
    denom = weights.sum(dim=-1, keepdim=True)
    if sink is not None:
        denom = denom + torch.exp(sink - row_max)
    safe_denom = torch.where(denom == 0, torch.ones_like(denom), denom)
    # normalise after the weighted sum, as an online-softmax kernel does
    out = torch.einsum("bhqk,bkhd->bqhd", weights, vr) / safe_denom.squeeze(-1).transpose(1, 2)[..., None]
    lse = torch.where(denom == 0, torch.full_like(denom, -math.inf), row_max + torch.log(safe_denom))
    result = {"out": out, "lse": lse.squeeze(-1)}
    if dout is None:
        return result
    # the backward recomputes P from the saved log-sum-exp (a row with nothing visible: P = 0)
    probs = torch.exp(scores - torch.where(denom == 0, torch.full_like(denom, math.inf), lse))
    dp = torch.einsum("bqhd,bkhd->bhqk", dout, vr)
    delta = (dout * out).sum(dim=-1).transpose(1, 2)[..., None]  # [B, H, Sq, 1]
    ds = probs * (dp - delta)
    if capped_slope is not None:
        ds = ds * capped_slope
    dq = torch.einsum("bhqk,bkhd->bqhd", ds, kr) * scale
    dk = torch.einsum("bhqk,bqhd->bkhd", ds, q) * scale
    dv = torch.einsum("bhqk,bqhd->bkhd", probs, dout)
    fold = lambda t: t.reshape(batch, seqlen_k, heads_kv, group, t.shape[-1]).sum(dim=3)  # noqa: E731 (sum over group)
    result.update(dq=dq, dk=fold(dk), dv=fold(dv))
    return result


def fused_formulation_reversed(q, k, v, dout, *, key_padding_mask=None, causal=None, scale=None, window=None,
                               softcap=None, alibi_slopes=None, sink=None):
    """``fused_formulation`` with the keys (and the causal and padding masks) in reverse order.

    The function is unchanged (attention is invariant to the order of the keys), but every sum over keys
    accumulates in another order: a third, independent sample of the rounding a standard implementation makes.
    """
    seqlen_q, seqlen_k = q.shape[1], k.shape[1]
    visible = visibility(seqlen_q, seqlen_k, batch=q.shape[0], key_padding_mask=key_padding_mask, causal=causal,
                         window=window, device=q.device)
    flip = lambda t: t.flip(1)  # noqa: E731
    options = ScoreOptions.of(q, k, softcap, alibi_slopes, sink).flipped()
    result = _fused_visible(q, flip(k), flip(v), dout, visible.flip(-1), scale, options)
    for name in ("dk", "dv"):
        if name in result:
            result[name] = flip(result[name])
    return result


def fused_formulation_varlen(q, k, v, dout, cu_seqlens_q, cu_seqlens_k, *, causal=None, scale=None, window=None,
                             formulation=fused_formulation):
    """A fused formulation (``fused_formulation`` or ``fused_formulation_reversed``) per sequence of a packed batch."""
    bounds_q, bounds_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    result = {"out": torch.zeros_like(q)}
    if dout is not None:
        result.update(dq=torch.zeros_like(q), dk=torch.zeros_like(k), dv=torch.zeros_like(v))
    for b in range(len(bounds_q) - 1):
        sq, sk = slice(bounds_q[b], bounds_q[b + 1]), slice(bounds_k[b], bounds_k[b + 1])
        if sq.start == sq.stop:
            continue
        part = formulation(q[sq][None], k[sk][None], v[sk][None], None if dout is None else dout[sq][None],
                                 causal=causal, scale=scale, window=window)
        result["out"][sq] = part["out"][0]
        if dout is not None:
            result["dq"][sq], result["dk"][sk], result["dv"][sk] = part["dq"][0], part["dk"][0], part["dv"][0]
    return result


@dataclass(frozen=True)
class RoundingTerms:
    """Magnitudes behind one tensor's rounding error (see ``tolerance.py``), the largest over its elements.

    - ``stored``: the sum of absolute terms of the values a standard kernel stores in the test dtype on the way:
      P before P·V and Pᵀ·dO, O before D = rowsum(dO ∘ O), dS before dS·K and dSᵀ·Q;
    - ``plain``: the sum of the absolute terms before any cancellation (|p_ij| (|v_j| + |out_i|), and for the
      gradients |p_ij| (|dO_i|·|v_j| + |dO_i|·|O_i|) |k_j|), which a float32 accumulation in any order rounds;
    - ``scores``: ``plain`` with each term weighted by its score's size ``scale * sum_d |q_id| |k_jd|``, which a
      score rounded in float32 carries into the result;
    - ``length``: the longest reduction (keys, or the query rows of a head group, plus D).
    """

    stored: float
    plain: float
    scores: float
    length: int


def rounding_terms(q, k, v, dout, *, key_padding_mask=None, causal=None, scale=None, window=None, softcap=None,
                   alibi_slopes=None, sink=None) -> dict[str, RoundingTerms]:
    """``RoundingTerms`` of out and lse (and dq, dk, dv when ``dout`` is given), computed in float64 from the inputs.

    Rounding a sum of L terms errs by about ``eps * sqrt(L)`` times the sum of their absolute values, which stays
    positive where the true value is exactly zero (a single key makes dQ = 0): a bound built on it cannot
    collapse. The magnitudes follow the backward of ``_fused_visible``.
    """
    visible = visibility(q.shape[1], k.shape[1], batch=q.shape[0], key_padding_mask=key_padding_mask,
                         causal=causal, window=window, device=q.device)
    return _rounding_terms_visible(q, k, v, dout, visible, scale, ScoreOptions.of(q, k, softcap, alibi_slopes, sink))


def _rounding_terms_visible(q, k, v, dout, visible, scale, options: ScoreOptions = ScoreOptions()):
    q, k, v = (t.detach().double() for t in (q, k, v))
    batch, seqlen_q, heads_q, head_dim = q.shape
    seqlen_k, heads_kv = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    group = heads_q // max(heads_kv, 1)
    widest = max(head_dim, v.shape[-1])  # the longer of the two inner reductions (Q·K over D, dO·V over Dv)
    lengths = {"out": seqlen_k + widest, "dq": seqlen_k + widest, "lse": seqlen_k + head_dim}
    lengths.update(dk=group * seqlen_q + widest, dv=group * seqlen_q + widest)
    names = ("out", "lse") if dout is None else ("out", "lse", "dq", "dk", "dv")
    if seqlen_k == 0 or seqlen_q == 0:
        return {name: RoundingTerms(0.0, 0.0, 0.0, lengths[name]) for name in names}
    dout = None if dout is None else dout.detach().double()
    kr, vr = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q * scale, kr)
    # a score's size: its product's terms, and the bias added to it (both rounded in float32); softcap only shrinks
    score_size = abs(scale) * torch.einsum("bqhd,bkhd->bhqk", q.abs(), kr.abs())
    if options.softcap is not None:
        scores = torch.tanh(scores / options.softcap) * options.softcap
    if options.bias is not None:
        scores = scores + options.bias
        score_size = score_size + options.bias.abs()
    scores = scores.masked_fill(~visible, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1, keepdim=True)
    if options.sink is not None:
        lse = torch.logaddexp(lse, options.sink.double()[None, :, None, None])
    probs = torch.exp(scores - torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)).nan_to_num(0.0)
    out = torch.einsum("bhqk,bkhd->bqhd", probs, vr)  # rows with no visible key have all-zero probs: out 0
    fold = lambda t: t.reshape(batch, seqlen_k, heads_kv, group, t.shape[-1]).sum(dim=3)  # noqa: E731
    # lse: the log rounds its argument's sum (relative error ~ eps sqrt(L): 1 below) and its result (|lse|); the
    # scores' errors reach it weighted by P
    finite_lse = lse[torch.isfinite(lse)]
    lse_terms = RoundingTerms(0.0, 1.0 + max_abs(finite_lse), max_abs((probs * score_size).sum(-1)), lengths["lse"])

    def magnitudes(weights, dscores) -> dict[str, float]:
        # out_i = sum_j p_ij v_j; its terms |p_ij| (|v_j| + |out_i|) (a moved weight moves the row's mean too)
        found = {"out": max_abs(torch.einsum("bhqk,bkhd->bqhd", weights, vr.abs())
                                 + weights.sum(-1).transpose(1, 2)[..., None] * out.abs())}
        if dout is not None:  # (a softcap's 1 - tanh² <= 1 only shrinks the gradients' terms)
            found["dq"] = max_abs(torch.einsum("bhqk,bkhd->bqhd", dscores, kr.abs())) * abs(scale)
            found["dk"] = max_abs(fold(torch.einsum("bhqk,bqhd->bkhd", dscores, q.abs()))) * abs(scale)
            found["dv"] = max_abs(fold(torch.einsum("bhqk,bqhd->bkhd", weights, dout.abs())))
        return found

    stored_ds = plain_ds = scored_ds = None
    if dout is not None:
        dp = torch.einsum("bqhd,bkhd->bhqk", dout, vr)
        delta = (dout * out).sum(-1).transpose(1, 2)[..., None]
        delta_terms = (dout.abs() * out.abs()).sum(-1).transpose(1, 2)[..., None]  # sum_d |dO_id| |O_id|
        plain_ds = probs * (torch.einsum("bqhd,bkhd->bhqk", dout.abs(), vr.abs()) + delta_terms)
        stored_ds = (probs * (dp - delta)).abs() + probs * delta_terms
        scored_ds = plain_ds * score_size
    stored, plain, scored = magnitudes(probs, stored_ds), magnitudes(probs, plain_ds), magnitudes(
        probs * score_size, scored_ds)
    terms = {name: RoundingTerms(stored[name], plain[name], scored[name], lengths[name]) for name in names
             if name != "lse"}
    return {**terms, "lse": lse_terms}


def rounding_terms_varlen(q, k, v, dout, cu_seqlens_q, cu_seqlens_k, *, causal=None, scale=None, window=None):
    """``rounding_terms`` of a packed batch: the largest over its sequences."""
    bounds_q, bounds_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    result: dict[str, RoundingTerms] = {}
    for b in range(len(bounds_q) - 1):
        sq, sk = slice(bounds_q[b], bounds_q[b + 1]), slice(bounds_k[b], bounds_k[b + 1])
        part = rounding_terms(q[sq][None], k[sk][None], v[sk][None], None if dout is None else dout[sq][None],
                              causal=causal, scale=scale, window=window)
        for name, terms in part.items():
            old = result.get(name, terms)
            result[name] = RoundingTerms(*map(max, astuple(old), astuple(terms)))
    if not result:  # no sequence at all
        names = ("out",) if dout is None else ("out", "dq", "dk", "dv")
        result = {name: RoundingTerms(0.0, 0.0, 0.0, 0) for name in names}
    return result


def max_abs(t: torch.Tensor) -> float:
    """max |t|, 0 for an empty tensor."""
    return t.abs().max().item() if t.numel() else 0.0
