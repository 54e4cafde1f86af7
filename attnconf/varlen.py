"""Packed (varlen) batches: conversions between packed and padded layouts, and adapters both ways.

``varlen_through_dense`` runs a packed batch through a dense implementation; ``dense_through_varlen`` runs a dense
batch (with a key-padding mask) through a packed kernel, as flash-attn's unpad/pad helpers do.

The adapter runs a packed batch through a dense implementation with a key-padding mask. Causal alignment per
sequence survives padding when the padding sits on the right side for top-left alignment and on the left side
for bottom-right alignment: left-padding both q and k shifts row and column by (max length - length), which
keeps ``j <= i + Sk_i - Sq_i`` true exactly where it held before.
"""

from __future__ import annotations

from typing import Callable

import torch

from .capabilities import BOTTOM_RIGHT, TOP_LEFT
from .validation import check_packed_call, remember_host_values


def cu_seqlens_from_lengths(lengths: list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """int32 cumulative lengths [B+1] starting at 0."""
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    return remember_host_values(torch.tensor(cu, dtype=torch.int32, device=device), cu)


def equal_cu_seqlens(batch: int, seqlen: int, device) -> torch.Tensor:
    """cu_seqlens of ``batch`` sequences of ``seqlen``, made on the device (a copy from the host would wait for it)."""
    cu = torch.arange(0, (batch + 1) * seqlen, seqlen, dtype=torch.int32, device=device)
    return remember_host_values(cu, list(range(0, (batch + 1) * seqlen, seqlen)))


def padded_positions(lengths: list[int], width: int, *, left: bool, device) -> torch.Tensor:
    """Flat index into a [B * width] padded buffer for each packed token, in packed order."""
    rows = []
    for b, n in enumerate(lengths):
        start = b * width + (width - n if left else 0)
        rows.append(torch.arange(start, start + n, device=device))
    if not rows:
        return torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat(rows)


def pad(packed: torch.Tensor, lengths: list[int], width: int, *, left: bool = False, fill: float = 0.0) -> torch.Tensor:
    """[T, H, D] packed -> [B, width, H, D], the padding set to ``fill`` (differentiable in ``packed``)."""
    batch = len(lengths)
    positions = padded_positions(lengths, width, left=left, device=packed.device)
    out = packed.new_full((batch * width,) + tuple(packed.shape[1:]), fill)
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


# Values behind the padding the adapter adds: a kernel that lets a row attend to padding (or spreads a row with no
# visible key uniformly over its keys, as some eager implementations do) moves its output by about this much
# instead of hiding behind zeros. Large, yet dO·V stays finite in float16 (see MASK-2).
PADDED_VALUE = 1e3


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
    window: tuple[int, int] | None = None,
    head_dims: frozenset[int] | None = None,
) -> torch.Tensor:
    """Run a packed batch through ``dense(q, k, v, key_padding_mask=..., causal=..., scale=..., window=...)``.

    Bottom-right alignment (causal, or a window) pads on the left, so each sequence's last query lines up with its
    last key whatever the padded widths.

    The adapter checks cu_seqlens itself (it must read them to pad), so an implementation served through it is not
    judged on VALID-5; see ``conformance/test_validation.py``.
    """
    lengths_q, lengths_k = check_packed_call(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, head_dims=head_dims
    )
    if q.shape[0] == 0:
        return q.new_zeros(q.shape)
    if window is not None and causal == TOP_LEFT:
        raise NotImplementedError("a window (aligned bottom-right) with top-left causal masking through pad/unpad")
    left = causal == BOTTOM_RIGHT or window is not None
    width_q, width_k = max(lengths_q), max(max(lengths_k), 1)
    mask = padding_mask(lengths_k, width_k, left=left, device=q.device)
    kwargs = {"key_padding_mask": mask}
    if causal is not None:
        kwargs["causal"] = causal
    if scale is not None:
        kwargs["scale"] = scale
    if window is not None:
        kwargs["window"] = window
    out = dense(
        pad(q, lengths_q, width_q, left=left),
        pad(k, lengths_k, width_k, left=left),
        pad(v, lengths_k, width_k, left=left, fill=PADDED_VALUE),
        **kwargs,
    )
    return unpad(out, lengths_q, left=left)


def dense_through_varlen(varlen: Callable, q, k, v, key_padding_mask=None, *, causal=None, scale=None,
                         return_lse=False, **options):
    """A dense batch through a packed (varlen) kernel: every query row stays, keys hidden by the mask are dropped.

    ``varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=..., scale=..., **options)``
    takes [T, H, D] tensors; ``options`` (window, softcap, alibi_slopes, sink, ...) are passed on as they are. Without
    a mask the batch packs as sequences of equal length (a reshape), so every position stays where it was. With a
    mask, the kept keys of batch element b form sequence b; masked keys get exactly zero gradient. What depends on
    key positions (causal masking, a window, ALiBi) is refused with a mask: after dropping keys, the kernel's
    positions count only the kept keys, which is not the contract's ``i + Sk - Sq - j`` over all key positions.
    With ``return_lse`` the packed call returns ``(out, lse)`` with lse [H, T] (flash-attn's packed layout), given
    back as [B, H, Sq].
    """
    batch, seqlen_q, heads_q, head_dim = q.shape
    seqlen_k, heads_kv, head_dim_v = k.shape[1], k.shape[2], v.shape[3]
    device = q.device
    if return_lse:
        options["return_lse"] = True
    if key_padding_mask is None:
        packed_k = k.reshape(batch * seqlen_k, heads_kv, head_dim)
        packed_v = v.reshape(batch * seqlen_k, heads_kv, head_dim_v)
        cu_seqlens_k = equal_cu_seqlens(batch, seqlen_k, device)
        max_seqlen_k = seqlen_k
    else:
        positional = [name for name, value in (("causal masking", causal), ("a window", options.get("window")),
                                               ("ALiBi", options.get("alibi_slopes"))) if value is not None]
        if positional:
            raise NotImplementedError(
                f"{' and '.join(positional)} together with a key-padding mask is not supported: the mask is applied "
                "by dropping keys (unpad -> varlen), after which key positions count only the kept keys"
            )
        lengths_k = key_padding_mask.sum(dim=1, dtype=torch.int32)
        cu_seqlens_k = torch.nn.functional.pad(torch.cumsum(lengths_k, 0, dtype=torch.int32), (1, 0))
        packed_k, packed_v = k[key_padding_mask], v[key_padding_mask]
        max_seqlen_k = int(lengths_k.max())
    cu_seqlens_q = equal_cu_seqlens(batch, seqlen_q, device)
    result = varlen(q.reshape(batch * seqlen_q, heads_q, head_dim), packed_k, packed_v, cu_seqlens_q, cu_seqlens_k,
                    seqlen_q, max_seqlen_k, causal=causal, scale=scale, **options)
    out, lse = result if return_lse else (result, None)
    out = out.reshape(batch, seqlen_q, heads_q, head_dim_v)
    if not return_lse:
        return out
    return out, lse.reshape(heads_q, batch, seqlen_q).transpose(0, 1)
