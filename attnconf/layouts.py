"""Adapters from common tensor layouts to the canonical one, so a function registers without reshaping code.

Canonical ("bshd"): q [B, Sq, Hq, D], k and v [B, Sk, Hkv, D], out [B, Sq, Hq, D].
- "bhsd": SDPA's layout, q [B, Hq, Sq, D]; the function gets transposed views and returns [B, Hq, Sq, D].
- "bsd": heads merged into the last dimension, q [B, Sq, Hq·D], k and v [B, Sk, Hkv·D]; the function is called
  as ``fn(q, k, v, num_heads=Hq, head_dim=D, **options)`` and returns [B, Sq, Hq·D].

Options (``key_padding_mask``, ``causal``, ``scale``) are passed only when they are in use, so a function that
lacks one (and does not declare it) can still register. The non-canonical adapters must read the canonical
shapes to convert them, so they validate the inputs first (``check_dense_inputs``): a shape error is reported in
the caller's terms instead of surfacing as a puzzling reshape error, or, worse, as a silently reinterpreted
tensor (a wrong head dim merged into [B, S, H·D] can still have a valid size).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from .validation import check_dense_inputs

LAYOUTS = ("bshd", "bhsd", "bsd")


def to_canonical(
    fn: Callable[..., torch.Tensor], layout: str, *, head_dims: frozenset[int] | None = None
) -> Callable[..., torch.Tensor]:
    """Wrap ``fn`` written in ``layout`` into a canonical-layout function."""
    if layout == "bshd":
        return fn
    if layout == "bhsd":

        @functools.wraps(fn)
        def from_bhsd(q, k, v, **options):
            check_dense_inputs(q, k, v, options.get("key_padding_mask"), head_dims=head_dims)
            out = fn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), **options)
            return out.transpose(1, 2)

        return from_bhsd
    if layout == "bsd":

        @functools.wraps(fn)
        def from_bsd(q, k, v, **options):
            check_dense_inputs(q, k, v, options.get("key_padding_mask"), head_dims=head_dims)
            _, seqlen_q, heads_q, head_dim = q.shape
            merged = [t.reshape(t.shape[0], t.shape[1], t.shape[2] * t.shape[3]) for t in (q, k, v)]
            out = fn(*merged, num_heads=heads_q, head_dim=head_dim, **options)
            return out.reshape(out.shape[0], seqlen_q, heads_q, head_dim)

        return from_bsd
    raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
