"""Packed (varlen) batches: conversions between packed and padded layouts, and the pad/unpad adapter.

The adapter runs a packed batch through a dense implementation with a key-padding mask. Causal alignment per
sequence survives padding when the padding sits on the right side for top-left alignment and on the left side
for bottom-right alignment: left-padding both q and k shifts row and column by (max length - length), which
keeps ``j <= i + Sk_i - Sq_i`` true exactly where it held before.
"""

from __future__ import annotations

from typing import Callable

import torch

from .capabilities import BOTTOM_RIGHT
from .validation import check_cu_seqlens, check_packed_inputs


def cu_seqlens_from_lengths(lengths: list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """int32 cumulative lengths [B+1] starting at 0."""
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    return torch.tensor(cu, dtype=torch.int32, device=device)


def padded_positions(lengths: list[int], width: int, *, left: bool, device) -> torch.Tensor:
    """Flat index into a [B * width] padded buffer for each packed token, in packed order."""
    rows = []
    for b, n in enumerate(lengths):
        start = b * width + (width - n if left else 0)
        rows.append(torch.arange(start, start + n, device=device))
    if not rows:
        return torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat(rows)


def pad(packed: torch.Tensor, lengths: list[int], width: int, *, left: bool = False) -> torch.Tensor:
    """[T, H, D] packed -> [B, width, H, D] padded with zeros (differentiable)."""
    batch = len(lengths)
    positions = padded_positions(lengths, width, left=left, device=packed.device)
    out = packed.new_zeros((batch * width,) + tuple(packed.shape[1:]))
    out = out.index_put((positions,), packed)
    return out.view((batch, width) + tuple(packed.shape[1:]))


def unpad(padded: torch.Tensor, lengths: list[int], *, left: bool = False) -> torch.Tensor:
    """[B, width, H, D] padded -> [T, H, D] packed (differentiable)."""
    batch, width = padded.shape[:2]
    positions = padded_positions(lengths, width, left=left, device=padded.device)
    return padded.reshape((batch * width,) + tuple(padded.shape[2:]))[positions]


def padding_mask(lengths: list[int], width: int, *, left: bool = False, device=None) -> torch.Tensor:
    """bool [B, width], True where a real token sits."""
    mask = torch.zeros(len(lengths), width, dtype=torch.bool, device=device)
    for b, n in enumerate(lengths):
        if n:
            if left:
                mask[b, width - n :] = True
            else:
                mask[b, :n] = True
    return mask


def varlen_through_dense(
    dense: Callable[..., torch.Tensor],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    *,
    causal: str | None = None,
    scale: float | None = None,
    head_dims: frozenset[int] | None = None,
) -> torch.Tensor:
    """Run a packed batch through ``dense(q, k, v, key_padding_mask=..., causal=..., scale=...)``."""
    check_packed_inputs(q, k, v, head_dims=head_dims)
    lengths_q = check_cu_seqlens(cu_seqlens_q, q.shape[0], "cu_seqlens_q", max_seqlen=max_seqlen_q)
    lengths_k = check_cu_seqlens(cu_seqlens_k, k.shape[0], "cu_seqlens_k", max_seqlen=max_seqlen_k)
    if len(lengths_q) != len(lengths_k):
        raise ValueError(
            f"cu_seqlens_q and cu_seqlens_k describe different batch sizes ({len(lengths_q)} vs {len(lengths_k)})"
        )
    if q.shape[0] == 0:
        return q.new_zeros(q.shape)
    left = causal == BOTTOM_RIGHT
    width_q, width_k = max(lengths_q), max(max(lengths_k), 1)
    mask = padding_mask(lengths_k, width_k, left=left, device=q.device)
    kwargs = {"key_padding_mask": mask}
    if causal is not None:
        kwargs["causal"] = causal
    if scale is not None:
        kwargs["scale"] = scale
    out = dense(
        pad(q, lengths_q, width_q, left=left),
        pad(k, lengths_k, width_k, left=left),
        pad(v, lengths_k, width_k, left=left),
        **kwargs,
    )
    return unpad(out, lengths_q, left=left)
