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
"""

from __future__ import annotations

from typing import Callable

import torch

from .capabilities import BOTTOM_RIGHT, TOP_LEFT

MaskFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


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


def materialise(mask: MaskFn, batch: int, heads: int, seqlen_q: int, seqlen_k: int, device=None) -> torch.Tensor:
    """bool [B, H, Sq, Sk]: the mask function evaluated at every index."""
    index = lambda n: torch.arange(n, device=device)  # noqa: E731
    b = index(batch)[:, None, None, None]
    h = index(heads)[None, :, None, None]
    q_idx = index(seqlen_q)[None, None, :, None]
    kv_idx = index(seqlen_k)[None, None, None, :]
    return mask(b, h, q_idx, kv_idx).expand(batch, heads, seqlen_q, seqlen_k)


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


def picture(mask: torch.Tensor) -> str:
    """A [Sq, Sk] bool mask as text: one row per query, ``#`` visible and ``.`` hidden (for reports and messages)."""
    return "\n".join("".join("#" if x else "." for x in row) for row in mask.tolist())
