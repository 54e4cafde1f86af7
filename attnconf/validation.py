"""Input checks that implementations share, so each bad input gets one clear message naming the problem.

The suite never calls these on an implementation's behalf: contract VALID-* tests what the implementation itself
raises. Implementations in ``impls/`` call them first thing.
"""

from __future__ import annotations

import weakref

import torch


class AttentionInputError(ValueError):
    """Raised for inputs that break the canonical interface; the message names the offending argument."""


def check_dense_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    head_dims: frozenset[int] | None = None,
    head_dims_v: frozenset[int] | None = frozenset(),
) -> None:
    """Validate dense inputs: q [B, Sq, Hq, D], k [B, Sk, Hkv, D], v [B, Sk, Hkv, Dv], mask bool [B, Sk].

    Dv equals D unless ``head_dims_v`` names it (None: any Dv), as ``Capabilities.head_dims_v``."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise AttentionInputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise AttentionInputError(f"{name} must have rank 4 [batch, seqlen, heads, head_dim], got shape {tuple(t.shape)}")
    _check_common(q, k, v, seq_dim=1, head_dim_axis=3, head_axis=2, head_dims=head_dims, head_dims_v=head_dims_v)
    if q.shape[0] != k.shape[0] or k.shape[0] != v.shape[0]:
        raise AttentionInputError(f"batch size mismatch: q {q.shape[0]}, k {k.shape[0]}, v {v.shape[0]}")
    if k.shape[1] != v.shape[1]:
        raise AttentionInputError(f"k and v seqlen mismatch: k {k.shape[1]}, v {v.shape[1]}")
    if key_padding_mask is not None:
        if key_padding_mask.dtype != torch.bool:
            raise AttentionInputError(f"key_padding_mask must be torch.bool (True = attend), got {key_padding_mask.dtype}")
        if tuple(key_padding_mask.shape) != (k.shape[0], k.shape[1]):
            raise AttentionInputError(
                f"key_padding_mask must have shape [batch, seqlen_k] = {(k.shape[0], k.shape[1])}, "
                f"got {tuple(key_padding_mask.shape)}"
            )
        if key_padding_mask.device != q.device:
            raise AttentionInputError(f"key_padding_mask device {key_padding_mask.device} differs from q device {q.device}")


def check_packed_inputs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, head_dims: frozenset[int] | None = None,
    head_dims_v: frozenset[int] | None = frozenset(),
) -> None:
    """Validate packed (varlen) inputs: q [Tq, Hq, D], k [Tk, Hkv, D], v [Tk, Hkv, Dv] (Dv as check_dense_inputs)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise AttentionInputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 3:
            raise AttentionInputError(f"packed {name} must have rank 3 [total_tokens, heads, head_dim], got shape {tuple(t.shape)}")
    _check_common(q, k, v, seq_dim=0, head_dim_axis=2, head_axis=1, head_dims=head_dims, head_dims_v=head_dims_v)
    if k.shape[0] != v.shape[0]:
        raise AttentionInputError(f"k and v total tokens mismatch: k {k.shape[0]}, v {v.shape[0]}")


def _check_common(q, k, v, *, seq_dim: int, head_dim_axis: int, head_axis: int, head_dims,
                  head_dims_v: frozenset[int] | None = frozenset()) -> None:
    if not q.is_floating_point():
        raise AttentionInputError(f"q must be a floating-point tensor, got dtype {q.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise AttentionInputError(f"dtype mismatch: q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise AttentionInputError(f"device mismatch: q {q.device}, k {k.device}, v {v.device}")
    d, dv = q.shape[head_dim_axis], v.shape[head_dim_axis]
    value_dim_ok = dv == d or head_dims_v is None or dv in head_dims_v
    if k.shape[head_dim_axis] != d or not value_dim_ok:
        raise AttentionInputError(
            f"head_dim mismatch: q {d}, k {k.shape[head_dim_axis]}, v {v.shape[head_dim_axis]}"
        )
    if head_dims is not None and d not in head_dims:
        raise AttentionInputError(f"unsupported head_dim {d}; supported: {sorted(head_dims)}")
    hq, hkv = q.shape[head_axis], k.shape[head_axis]
    if v.shape[head_axis] != hkv:
        raise AttentionInputError(f"k and v head count mismatch: k {hkv}, v {v.shape[head_axis]}")
    if hkv == 0 or hq % hkv != 0:
        raise AttentionInputError(f"query heads ({hq}) must be a multiple of kv heads ({hkv}) for GQA")


def check_cu_seqlens(cu_seqlens: torch.Tensor, total: int, name: str, *, max_seqlen: int | None = None) -> list[int]:
    """Validate cumulative sequence lengths and return the per-sequence lengths.

    Rules (as flash-attn's varlen API): int32, 1-D, at least two entries, starts at 0, non-decreasing,
    ends at the packed tensor's token count, and no length above ``max_seqlen``.
    """
    if not isinstance(cu_seqlens, torch.Tensor):
        raise AttentionInputError(f"{name} must be a torch.Tensor, got {type(cu_seqlens).__name__}")
    if cu_seqlens.dtype != torch.int32:
        raise AttentionInputError(f"{name} must be int32, got {cu_seqlens.dtype}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise AttentionInputError(f"{name} must be 1-D with batch+1 >= 2 entries, got shape {tuple(cu_seqlens.shape)}")
    values = host_values(cu_seqlens)
    if values[0] != 0:
        raise AttentionInputError(f"{name} must start at 0, got {values[0]}")
    lengths = [b - a for a, b in zip(values, values[1:])]
    if any(n < 0 for n in lengths):
        raise AttentionInputError(f"{name} must be non-decreasing (monotonic), got {values}")
    if values[-1] != total:
        raise AttentionInputError(f"{name} must end at the total token count {total}, got {values[-1]}")
    if max_seqlen is not None and lengths and max(lengths) > max_seqlen:
        raise AttentionInputError(
            f"max_seqlen {max_seqlen} is smaller than the longest sequence in {name} ({max(lengths)})"
        )
    return lengths


def check_packed_call(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, head_dims,
                      head_dims_v=frozenset()):
    """Validate a whole packed (varlen) call; returns the per-sequence lengths (lengths_q, lengths_k)."""
    check_packed_inputs(q, k, v, head_dims=head_dims, head_dims_v=head_dims_v)
    lengths_q = check_cu_seqlens(cu_seqlens_q, q.shape[0], "cu_seqlens_q", max_seqlen=max_seqlen_q)
    lengths_k = check_cu_seqlens(cu_seqlens_k, k.shape[0], "cu_seqlens_k", max_seqlen=max_seqlen_k)
    if len(lengths_q) != len(lengths_k):
        raise AttentionInputError(
            f"cu_seqlens_q and cu_seqlens_k describe different batch sizes ({len(lengths_q)} vs {len(lengths_k)})"
        )
    if cu_seqlens_q.device != q.device or cu_seqlens_k.device != q.device:
        raise AttentionInputError(f"cu_seqlens must be on the device of q ({q.device})")
    return lengths_q, lengths_k


# ---- host copies of small index tensors --------------------------------------------------------------------------
# Reading cu_seqlens on the host makes every call on a GPU wait for the device; a model passes the same cu_seqlens
# to each of its layers. So the values read (or known when the tensor was built from host lengths) are kept per
# tensor object and trusted while its version counter, which every in-place change through torch bumps, is
# unchanged. A write behind torch's back (through ``.data``, DLPack or a foreign kernel) is not seen: pass a new
# tensor after one. CPU tensors are read every time: that costs no device wait.

_host_copies: dict[int, tuple[weakref.ref, int, list[int]]] = {}


def _cacheable(t: torch.Tensor) -> bool:
    return t.device.type != "cpu" and not t.is_inference()  # inference tensors have no version counter


def remember_host_values(t: torch.Tensor, values: list[int]) -> torch.Tensor:
    """Record that ``t`` (just built from ``values``) holds ``values``, so checks need not read it back."""
    if _cacheable(t):
        key = id(t)
        _host_copies[key] = (weakref.ref(t, lambda _, key=key: _host_copies.pop(key, None)), t._version, list(values))
    return t


def host_values(t: torch.Tensor) -> list[int]:
    """``t.tolist()`` for a 1-D integer tensor, without a device round trip when its values are already known."""
    entry = _host_copies.get(id(t))
    if entry is not None and entry[0]() is t and entry[1] == t._version:
        return list(entry[2])
    values = t.tolist()
    remember_host_values(t, values)
    return values


def check_feature_inputs(alibi_slopes, sink, batch: int, num_heads: int, device) -> None:
    """ALiBi slopes [H] or [B, H] and sink logits [H], float32, on the inputs' device."""
    for name, t, shapes in (("alibi_slopes", alibi_slopes, [(num_heads,), (batch, num_heads)]),
                            ("sink", sink, [(num_heads,)])):
        if t is None:
            continue
        if t.dtype != torch.float32 or tuple(t.shape) not in shapes or t.device != device:
            raise AttentionInputError(
                f"{name} must be float32 of shape {' or '.join(map(str, shapes))} on {device}, got {t.dtype} "
                f"{tuple(t.shape)} on {t.device}"
            )
