"""Which keys a query may see, as small composable predicates (in the style of attention-gym).

A mask function is ``mask(b, h, q_idx, kv_idx) -> bool`` on index tensors that broadcast against each other, so
the same function fills a dense ``[B, H, Sq, Sk]`` picture (``materialise``) and serves as FlexAttention's
``mask_mod``. The reference (``reference.py``) builds every contract's visibility from these, and combines them
with ``and_masks`` / ``or_masks``:

- ``key_padding(mask)``: key j of batch b is visible iff ``mask[b, j]`` (True = attend);
- ``causal(alignment, Sq, Sk)``: j <= i (top-left, SDPA's ``is_causal``) or j <= i + Sk - Sq (bottom-right,
  flash-attn >= 2.1, KV caches);
- ``sliding_window(left, right, Sq, Sk)``: i + Sk - Sq - left <= j <= i + Sk - Sq + right (flash-attn's
  ``window_size``, aligned bottom-right; a negative side is unbounded).

A score function is ``score(s, b, h, q_idx, kv_idx) -> s'`` on the scaled scores (FlexAttention's ``score_mod``),
applied before the mask; ``chain_scores`` applies several in order:

- ``softcap(cap)``: ``cap * tanh(s / cap)`` (Gemma 2, flash-attn's ``softcap``);
- ``alibi(slopes, Sq, Sk)``: ``s - slope[b, h] * |i + Sk - Sq - j|`` (flash-attn's ``alibi_slopes``, slopes ``[H]``
  or ``[B, H]``); attention-gym's signed variant ``s + slope * (j - i)`` is the same wherever j <= i, so the two agree
  under causal masking and differ only on keys after the query.
"""

from __future__ import annotations

from typing import Callable

import torch

from .capabilities import BOTTOM_RIGHT, TOP_LEFT

MaskFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
ScoreFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def full(b, h, q_idx, kv_idx):
    """Every key visible."""
    return (q_idx >= 0) & (kv_idx >= 0)


def key_padding(mask: torch.Tensor) -> MaskFn:
    """bool ``mask`` [B, Sk], True = attend."""

    def padding(b, h, q_idx, kv_idx):
        return mask[b, kv_idx]

    return padding


def alignment_offset(alignment: str, seqlen_q: int, seqlen_k: int) -> int:
    """The key index query 0 lines up with: 0 top-left, Sk - Sq bottom-right."""
    if alignment == TOP_LEFT:
        return 0
    if alignment == BOTTOM_RIGHT:
        return seqlen_k - seqlen_q
    raise ValueError(f"unknown causal alignment {alignment!r}")


def causal(alignment: str, seqlen_q: int, seqlen_k: int) -> MaskFn:
    offset = alignment_offset(alignment, seqlen_q, seqlen_k)

    def causal_mask(b, h, q_idx, kv_idx):
        return kv_idx <= q_idx + offset

    return causal_mask


def sliding_window(left: int, right: int, seqlen_q: int, seqlen_k: int) -> MaskFn:
    """Keys within ``left`` before and ``right`` after the query's bottom-right-aligned position (< 0: unbounded)."""
    offset = seqlen_k - seqlen_q

    def window_mask(b, h, q_idx, kv_idx):
        centre = q_idx + offset
        after_start = (kv_idx >= centre - left) | (left < 0)
        before_end = (kv_idx <= centre + right) | (right < 0)
        return after_start & before_end

    return window_mask


def document(doc_q: torch.Tensor, doc_k: torch.Tensor) -> MaskFn:
    """Packed batches: query i sees key j only within its own sequence (``doc_q`` [Tq], ``doc_k`` [Tk] hold each
    position's sequence index)."""

    def same_document(b, h, q_idx, kv_idx):
        return doc_q[q_idx] == doc_k[kv_idx]

    return same_document


def and_masks(*masks: MaskFn) -> MaskFn:
    def both(b, h, q_idx, kv_idx):
        result = full(b, h, q_idx, kv_idx)
        for mask in masks:
            result = result & mask(b, h, q_idx, kv_idx)
        return result

    return both


def or_masks(*masks: MaskFn) -> MaskFn:
    def either(b, h, q_idx, kv_idx):
        result = ~full(b, h, q_idx, kv_idx)
        for mask in masks:
            result = result | mask(b, h, q_idx, kv_idx)
        return result

    return either


def index_grid(batch: int, heads: int, seqlen_q: int, seqlen_k: int, device=None) -> tuple[torch.Tensor, ...]:
    """(b, h, q_idx, kv_idx) as index tensors that broadcast to [B, H, Sq, Sk]."""
    index = lambda n: torch.arange(n, device=device)  # noqa: E731
    return (index(batch)[:, None, None, None], index(heads)[None, :, None, None],
            index(seqlen_q)[None, None, :, None], index(seqlen_k)[None, None, None, :])


def materialise(mask: MaskFn, batch: int, heads: int, seqlen_q: int, seqlen_k: int, device=None) -> torch.Tensor:
    """bool [B, H, Sq, Sk]: the mask function evaluated at every index."""
    grid = index_grid(batch, heads, seqlen_q, seqlen_k, device)
    return mask(*grid).expand(batch, heads, seqlen_q, seqlen_k)


def visibility_mask(seqlen_q: int, seqlen_k: int, *, key_padding_mask=None, causal_alignment: str | None = None,
                    window: tuple[int, int] | None = None) -> MaskFn:
    """The mask function of a dense call's options."""
    parts = []
    if causal_alignment is not None:
        parts.append(causal(causal_alignment, seqlen_q, seqlen_k))
    if window is not None:
        parts.append(sliding_window(window[0], window[1], seqlen_q, seqlen_k))
    if key_padding_mask is not None:
        parts.append(key_padding(key_padding_mask))
    return and_masks(*parts)


def softcap(cap: float) -> ScoreFn:
    def capped(s, b, h, q_idx, kv_idx):
        return torch.tanh(s / cap) * cap

    return capped


def alibi(slopes: torch.Tensor, seqlen_q: int, seqlen_k: int) -> ScoreFn:
    """A linear penalty on the distance to the query's bottom-right-aligned position; ``slopes`` [H] or [B, H]."""
    offset = seqlen_k - seqlen_q

    def linear_bias(s, b, h, q_idx, kv_idx):
        slope = slopes[h] if slopes.dim() == 1 else slopes[b, h]
        return s - slope.to(s.dtype) * (q_idx + offset - kv_idx).abs().to(s.dtype)

    return linear_bias


def chain_scores(*scores: ScoreFn) -> ScoreFn:
    def chained(s, b, h, q_idx, kv_idx):
        for score in scores:
            s = score(s, b, h, q_idx, kv_idx)
        return s

    return chained


def score_modification(seqlen_q: int, seqlen_k: int, *, softcap_value: float | None = None,
                       alibi_slopes: torch.Tensor | None = None) -> ScoreFn | None:
    """The score function of a dense call's options (softcap first, then the bias), or None for plain scores."""
    parts = []
    if softcap_value is not None:
        parts.append(softcap(softcap_value))
    if alibi_slopes is not None:
        parts.append(alibi(alibi_slopes, seqlen_q, seqlen_k))
    return chain_scores(*parts) if parts else None


def apply_scores(score: ScoreFn | None, scores: torch.Tensor) -> torch.Tensor:
    """``score`` evaluated on a dense [B, H, Sq, Sk] score tensor (identity for None)."""
    if score is None:
        return scores
    return score(scores, *index_grid(*scores.shape, device=scores.device))


def contract_patterns(seqlen_q: int = 6, seqlen_k: int = 10) -> list[tuple[str, str, torch.Tensor]]:
    """(contract, caption, bool [Sq, Sk]) for the report's pictures, drawn from the predicates above."""
    padding = torch.tensor([[True] * (seqlen_k - 3) + [False] * 3])
    docs_q, docs_k = torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    shape = f"Sq={seqlen_q}, Sk={seqlen_k}"
    patterns = [
        ("DENSE-1", f"bidirectional ({shape})", full),
        ("CAUSAL-3", f"causal, top-left: j <= i ({shape})", causal(TOP_LEFT, seqlen_q, seqlen_k)),
        ("CAUSAL-2", f"causal, bottom-right: j <= i + Sk - Sq ({shape})", causal(BOTTOM_RIGHT, seqlen_q, seqlen_k)),
        ("MASK-1", "key-padding mask, the last 3 keys padded", key_padding(padding)),
        ("MASK-4", "key-padding mask and causal bottom-right",
         and_masks(key_padding(padding), causal(BOTTOM_RIGHT, seqlen_q, seqlen_k))),
        ("WINDOW-1", "sliding window (left 2, right 1), bottom-right", sliding_window(2, 1, seqlen_q, seqlen_k)),
        ("WINDOW-1", "sliding window (3, 0) and causal bottom-right",
         and_masks(sliding_window(3, 0, seqlen_q, seqlen_k), causal(BOTTOM_RIGHT, seqlen_q, seqlen_k))),
        ("KVCACHE-2", f"causal decoding: {seqlen_q} new queries against a cache of {seqlen_k} slots holding "
         f"{seqlen_k - 2} keys: j <= i + {seqlen_k - 2} - {seqlen_q}, nothing past the cache length",
         and_masks(key_padding(torch.tensor([[True] * (seqlen_k - 2) + [False] * 2])),
                   causal(BOTTOM_RIGHT, seqlen_q, seqlen_k - 2))),
        ("VARLEN-2", "packed batch of 3 sequences (q lengths 2, 3, 1; k lengths 3, 4, 3): no key of another "
         "sequence", document(docs_q, docs_k)),
    ]
    return [(cid, caption, materialise(fn, 1, 1, seqlen_q, seqlen_k)[0, 0]) for cid, caption, fn in patterns]


def picture(mask: torch.Tensor) -> str:
    """A [Sq, Sk] bool mask as text: one row per query, ``#`` visible and ``.`` hidden (for reports and messages)."""
    return "\n".join("".join("#" if x else "." for x in row) for row in mask.tolist())
