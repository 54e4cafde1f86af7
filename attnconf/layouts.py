"""Adapters from common tensor layouts to the canonical one, so a function registers without reshaping code.

Canonical ("bshd"): q [B, Sq, Hq, D], k and v [B, Sk, Hkv, D], out [B, Sq, Hq, D].
- "bhsd": SDPA's layout, q [B, Hq, Sq, D]; the function gets transposed views and returns [B, Hq, Sq, D].
- "bsd": heads merged into the last dimension, q [B, Sq, Hq·D], k and v [B, Sk, Hkv·D]; the function is called
  as ``fn(q, k, v, num_heads=Hq, head_dim=D, **options)`` and returns [B, Sq, Hq·D].

Packed (varlen) calls take the same layout names, one dimension less: "bshd" packs as q [T, Hq, D] (flash-attn's
varlen layout), "bhsd" as q [Hq, T, D], "bsd" as q [T, Hq·D]; ``cu_seqlens`` and ``max_seqlen`` pass through.

Options (``key_padding_mask``, ``causal``, ``scale``, and the optional features' ``window``, ``softcap``,
``alibi_slopes``, ``sink``, ``return_lse``) are passed only when they are in use, so a function that
lacks one (and does not declare it) can still register.

The adapters convert and never validate: checking inputs is the implementation's job, and an adapter that raised
on its behalf would earn it the input-validation contracts (VALID-*). A bad input is converted as mechanically as
the layout allows (a rank-3 q is still transposed, or merged, and handed on) so the implementation sees it in its
own terms and must reject it. Where the layout cannot express the bad input at all, the adapter raises
``LayoutCannotExpress``, which the VALID tests report as a skip that names the layout, never as a pass: merging
heads loses the head dim, so a k with 2 heads of 32 is indistinguishable from a valid k with 1 head of 64.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

LAYOUTS = ("bshd", "bhsd", "bsd")


class LayoutCannotExpress(Exception):
    """The canonical input cannot be written in the implementation's layout; nothing was called."""


def to_canonical(fn: Callable[..., torch.Tensor], layout: str) -> Callable[..., torch.Tensor]:
    """Wrap ``fn`` written in ``layout`` into a canonical-layout function (dense, or packed: arguments after q, k, v
    such as ``cu_seqlens`` pass through unchanged)."""
    if layout == "bshd":
        return fn
    if layout == "bhsd":

        @functools.wraps(fn)
        def from_bhsd(q, k, v, *rest, **options):
            out = fn(swap_seq_heads(q), swap_seq_heads(k), swap_seq_heads(v), *rest, **options)
            return _on_output(out, swap_seq_heads)

        return from_bhsd
    if layout == "bsd":

        @functools.wraps(fn)
        def from_bsd(q, k, v, *rest, **options):
            # v's head dim may differ (HEAD-3): the function finds it from v's width and k's head count
            head_dims = {t.shape[-1] for t in (q, k) if isinstance(t, torch.Tensor) and t.dim() >= 2}
            if len(head_dims) > 1:
                raise LayoutCannotExpress(
                    f"layout 'bsd' merges heads into the last dimension, so head dims {sorted(head_dims)} of q and k "
                    "cannot be told apart from another head count"
                )
            heads_q, head_dim = (q.shape[-2], q.shape[-1]) if q.dim() >= 2 else (1, q.shape[-1])
            out = fn(*(_merge_heads(t) for t in (q, k, v)), *rest, num_heads=heads_q, head_dim=head_dim, **options)
            return _on_output(out, lambda o: o.unflatten(-1, (heads_q, o.shape[-1] // heads_q)) if o.dim() >= 1 else o)

        return from_bsd
    raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")


def _on_output(result, convert):
    """``convert`` the output, which may come first in an ``(out, lse)`` tuple (return_lse=True; lse [B, H, Sq] is
    the same in every layout)."""
    if isinstance(result, tuple) and result and isinstance(result[0], torch.Tensor):
        return (convert(result[0]), *result[1:])
    return convert(result) if isinstance(result, torch.Tensor) else result


def swap_seq_heads(t):
    """[B, S, H, D] <-> [B, H, S, D] (packed: [T, H, D] <-> [H, T, D]): the sequence and head axes (the two before
    the last) swap, whatever the rank."""
    return t.transpose(-3, -2) if isinstance(t, torch.Tensor) and t.dim() >= 3 else t


def _merge_heads(t):
    """[..., H, D] -> [..., H·D], whatever the rank."""
    return t.flatten(-2) if isinstance(t, torch.Tensor) and t.dim() >= 2 else t
