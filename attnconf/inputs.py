"""Test cases and the random tensors they stand for.

A case is a small frozen description (shapes, dtype, mask kind, causal alignment); ``make_*_inputs`` turns it into
tensors drawn on the CPU from a seeded generator, so the same seed gives the same numbers on every device.
A case whose dtype is None runs in any dtype: the contract tests resolve it to the first dtype the implementation
declares (``resolve_dtype``), so an fp16/bf16-only kernel is held to every contract that is not about dtypes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .varlen import cu_seqlens_from_lengths

MASK_KINDS = (None, "random", "prefix", "empty_batch")
ALIBI_KINDS = (None, "heads", "batch_heads")
DTYPE_PREFERENCE = (torch.float32, torch.float16, torch.bfloat16)


def resolve_dtype(case, dtypes) -> "DenseCase | VarlenCase":
    """``case`` with its dtype set: unchanged if given, else the first of ``DTYPE_PREFERENCE`` in ``dtypes``."""
    if case.dtype is not None:
        return case
    return case.replace(dtype=next((d for d in DTYPE_PREFERENCE if d in dtypes), torch.float32))


@dataclass(frozen=True)
class DenseCase:
    batch: int = 2
    seqlen_q: int = 33
    seqlen_k: int = 33
    heads_q: int = 2
    heads_kv: int = 2
    head_dim: int = 64
    head_dim_v: int | None = None  # the value head dim, when it differs from head_dim (HEAD-3)
    dtype: torch.dtype | None = None  # None: any dtype (see resolve_dtype); float32 when made into tensors as is
    causal: str | None = None
    mask: str | None = None  # one of MASK_KINDS: random keys, a valid prefix, or one batch element all masked
    scale: float | None = None
    backward: bool = False
    magnitude: float = 1.0  # q and k are multiplied by this (large logits)
    value_offset: float = 0.0  # added to v: values that share an offset do not average out over long rows
    window: tuple[int, int] | None = None  # sliding window (left, right), bottom-right aligned; < 0 unbounded
    softcap: float | None = None  # cap * tanh(s / cap) on the scaled scores
    alibi: str | None = None  # one of ALIBI_KINDS: slopes [H] ("heads") or [B, H] ("batch_heads")
    sink: bool = False  # a learnable sink logit per query head
    lse: bool = False  # the call also returns the log-sum-exp (return_lse=True)

    def needs(self) -> dict:
        """Capabilities this case needs, as keyword arguments for ``Capabilities.missing``."""
        return dict(
            window=self.window is not None,
            softcap=self.softcap is not None,
            alibi=self.alibi is not None,
            sink=self.sink,
            lse=self.lse,
            dtype=self.dtype,
            head_dim=self.head_dim,
            head_dim_v=self.head_dim_v,
            causal=self.causal,
            causal_unequal=self.causal is not None and self.seqlen_q != self.seqlen_k,
            key_padding_mask=self.mask is not None,
            # a mask with anything that depends on key positions (see Capabilities.mask_with_causal)
            mask_with_causal=self.mask is not None and (self.causal is not None or self.window is not None
                                                        or self.alibi is not None),
            gqa=self.heads_q != self.heads_kv,
            custom_scale=self.scale is not None,
            backward=self.backward,
            seqlen=max(self.seqlen_q, self.seqlen_k),
            shortest_seqlen_k=self.seqlen_k if self.seqlen_k and self.seqlen_q else None,
        )

    def replace(self, **changes) -> "DenseCase":
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        parts = [
            f"B={self.batch} Sq={self.seqlen_q} Sk={self.seqlen_k} Hq={self.heads_q} Hkv={self.heads_kv} "
            f"D={self.head_dim}{'' if self.head_dim_v is None else f' Dv={self.head_dim_v}'} "
            f"{_dtype_name(self.dtype)}"
        ]
        for name in ("causal", "mask", "scale", "window", "softcap", "alibi"):
            if getattr(self, name) is not None:
                parts.append(f"{name}={getattr(self, name)}")
        parts += [name for name in ("sink", "lse") if getattr(self, name)]
        if self.magnitude != 1.0:
            parts.append(f"magnitude={self.magnitude}")
        if self.value_offset:
            parts.append(f"value_offset={self.value_offset}")
        if self.backward:
            parts.append("backward")
        return " ".join(parts)


@dataclass(frozen=True)
class VarlenCase:
    lengths_q: tuple[int, ...] = (5, 17, 1)
    lengths_k: tuple[int, ...] = (5, 17, 1)
    heads_q: int = 2
    heads_kv: int = 2
    head_dim: int = 64
    dtype: torch.dtype | None = None
    causal: str | None = None
    scale: float | None = None
    backward: bool = False
    value_offset: float = 0.0  # added to v (see DenseCase)
    window: tuple[int, int] | None = None  # per sequence (see DenseCase)

    def needs(self) -> dict:
        return dict(
            window=self.window is not None,
            dtype=self.dtype,
            head_dim=self.head_dim,
            causal=self.causal,
            causal_unequal=self.causal is not None and self.lengths_q != self.lengths_k,
            varlen=True,
            gqa=self.heads_q != self.heads_kv,
            custom_scale=self.scale is not None,
            backward=self.backward,
            seqlen=max(self.lengths_q + self.lengths_k + (0,)),
            shortest_seqlen_k=min((k for q, k in zip(self.lengths_q, self.lengths_k) if q and k), default=None),
        )

    def replace(self, **changes) -> "VarlenCase":
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        text = (
            f"lengths_q={list(self.lengths_q)} lengths_k={list(self.lengths_k)} Hq={self.heads_q} "
            f"Hkv={self.heads_kv} D={self.head_dim} {_dtype_name(self.dtype)}"
        )
        for name in ("causal", "scale", "window"):
            if getattr(self, name) is not None:
                text += f" {name}={getattr(self, name)}"
        if self.value_offset:
            text += f" value_offset={self.value_offset}"
        return text + (" backward" if self.backward else "")


def _dtype_name(dtype) -> str:
    return "any-dtype" if dtype is None else str(dtype).replace("torch.", "")


@dataclass
class Inputs:
    """Tensors of one call: q, k, v (+ mask or cu_seqlens) and the upstream gradient ``dout``."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    dout: torch.Tensor
    key_padding_mask: torch.Tensor | None = None
    cu_seqlens_q: torch.Tensor | None = None
    cu_seqlens_k: torch.Tensor | None = None
    max_seqlen_q: int = 0
    max_seqlen_k: int = 0
    alibi_slopes: torch.Tensor | None = None  # float32 [Hq] or [B, Hq]
    sink: torch.Tensor | None = None  # float32 [Hq]


def _randn(shape, generator, device, dtype, scale=1.0) -> torch.Tensor:
    dtype = dtype or torch.float32
    return (torch.randn(shape, generator=generator, dtype=torch.float32) * scale).to(device=device, dtype=dtype)


def make_key_padding_mask(kind: str | None, batch: int, seqlen_k: int, generator) -> torch.Tensor | None:
    """bool [B, Sk], True = attend. Every kind but 'empty_batch' leaves each batch element >= 1 visible key."""
    if kind is None:
        return None
    if kind == "random":
        mask = torch.rand(batch, seqlen_k, generator=generator) < 0.7
    elif kind in ("prefix", "empty_batch"):
        lengths = torch.randint(1, seqlen_k + 1, (batch,), generator=generator)
        mask = torch.arange(seqlen_k)[None, :] < lengths[:, None]
    else:
        raise ValueError(f"unknown mask kind {kind!r}; choose one of {MASK_KINDS}")
    if seqlen_k:
        mask[mask.sum(1) == 0, 0] = True
    if kind == "empty_batch":
        mask[0] = False
    return mask


def make_dense_inputs(case: DenseCase, device, generator: torch.Generator) -> Inputs:
    q = _randn((case.batch, case.seqlen_q, case.heads_q, case.head_dim), generator, device, case.dtype, case.magnitude)
    k = _randn((case.batch, case.seqlen_k, case.heads_kv, case.head_dim), generator, device, case.dtype, case.magnitude)
    head_dim_v = case.head_dim if case.head_dim_v is None else case.head_dim_v
    v = _randn((case.batch, case.seqlen_k, case.heads_kv, head_dim_v), generator, device, case.dtype)
    if case.value_offset:
        v = v + case.value_offset
    dout = _randn(q.shape[:-1] + (head_dim_v,), generator, device, case.dtype)
    mask = make_key_padding_mask(case.mask, case.batch, case.seqlen_k, generator)
    return Inputs(q, k, v, dout, key_padding_mask=None if mask is None else mask.to(device),
                  alibi_slopes=make_alibi_slopes(case.alibi, case.batch, case.heads_q, generator, device),
                  sink=make_sink(case.sink, case.heads_q, case.seqlen_k, generator, device))


def make_alibi_slopes(kind: str | None, batch: int, heads: int, generator, device) -> torch.Tensor | None:
    """float32 slopes, distinct per head (and batch element): the geometric 2^(-8 h / H) of ALiBi, each scaled by
    a random factor in [0.5, 1.5) so that no two heads (or batch elements) share one."""
    if kind is None:
        return None
    if kind not in ALIBI_KINDS:
        raise ValueError(f"unknown ALiBi kind {kind!r}; choose one of {ALIBI_KINDS}")
    shape = (heads,) if kind == "heads" else (batch, heads)
    geometric = 2.0 ** (-8.0 * torch.arange(1, heads + 1) / heads)
    return (geometric * (0.5 + torch.rand(shape, generator=generator))).to(device)


def make_sink(wanted: bool, heads: int, seqlen_k: int, generator, device) -> torch.Tensor | None:
    """float32 [H] sink logits around log(Sk): the sink takes a share of each row comparable to its keys'."""
    if not wanted:
        return None
    return (math.log(max(seqlen_k, 1)) + torch.randn(heads, generator=generator)).to(device)


def make_varlen_inputs(case: VarlenCase, device, generator: torch.Generator) -> Inputs:
    if len(case.lengths_q) != len(case.lengths_k):
        raise ValueError("lengths_q and lengths_k must have one entry per sequence")
    total_q, total_k = sum(case.lengths_q), sum(case.lengths_k)
    q = _randn((total_q, case.heads_q, case.head_dim), generator, device, case.dtype)
    k = _randn((total_k, case.heads_kv, case.head_dim), generator, device, case.dtype)
    v = _randn((total_k, case.heads_kv, case.head_dim), generator, device, case.dtype)
    if case.value_offset:
        v = v + case.value_offset
    dout = _randn(q.shape, generator, device, case.dtype)
    return Inputs(
        q,
        k,
        v,
        dout,
        cu_seqlens_q=cu_seqlens_from_lengths(list(case.lengths_q), device),
        cu_seqlens_k=cu_seqlens_from_lengths(list(case.lengths_k), device),
        max_seqlen_q=max(case.lengths_q + (1,)),
        max_seqlen_k=max(case.lengths_k + (1,)),
    )


CACHE_GARBAGE = 1e3  # what a cache holds beyond each sequence's length (and in unused pages): leaks show


@dataclass(frozen=True)
class KvCacheCase:
    """Decoding against a KV cache: ``seqlen_q`` new queries per sequence, the cache holding ``cache_seqlens[b]``
    valid keys of ``capacity`` slots (the new queries' own keys among them, as flash_attn_with_kvcache after its
    append); with ``page_size`` the cache is in shuffled pages through a block table."""

    cache_seqlens: tuple[int, ...] = (5, 40, 1)
    seqlen_q: int = 1
    capacity: int = 48
    heads_q: int = 4
    heads_kv: int = 2
    head_dim: int = 64
    dtype: torch.dtype | None = None
    causal: str | None = None
    scale: float | None = None
    page_size: int | None = None  # None: one contiguous cache [B, capacity, Hkv, D]

    def needs(self) -> dict:
        return dict(
            kvcache=True,
            paged=self.page_size is not None,
            dtype=self.dtype,
            head_dim=self.head_dim,
            causal=self.causal,
            causal_unequal=self.causal is not None,
            gqa=self.heads_q != self.heads_kv,
            custom_scale=self.scale is not None,
            seqlen=self.capacity,
            shortest_seqlen_k=min(self.cache_seqlens),
        )

    def replace(self, **changes) -> "KvCacheCase":
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        text = (f"cache_seqlens={list(self.cache_seqlens)} Sq={self.seqlen_q} capacity={self.capacity} "
                f"Hq={self.heads_q} Hkv={self.heads_kv} D={self.head_dim} {_dtype_name(self.dtype)}")
        for name in ("causal", "scale", "page_size"):
            if getattr(self, name) is not None:
                text += f" {name}={getattr(self, name)}"
        return text


@dataclass
class KvCacheInputs:
    """The call's tensors, and the same keys and values packed by sequence (what the reference sees)."""

    q: torch.Tensor  # [B, Sq, Hq, D]
    k_cache: torch.Tensor  # [B, capacity, Hkv, D] or [num_pages, page_size, Hkv, D]
    v_cache: torch.Tensor
    cache_seqlens: torch.Tensor  # int32 [B]
    block_table: torch.Tensor | None  # int32 [B, pages per sequence]
    packed: Inputs  # q [B·Sq, Hq, D], k and v [sum of lengths, Hkv, D], cu_seqlens, dout


def make_kvcache_inputs(case: KvCacheCase, device, generator: torch.Generator) -> KvCacheInputs:
    if any(not 0 < n <= case.capacity for n in case.cache_seqlens):
        raise ValueError("every cache length must be in [1, capacity]")
    batch, heads_kv, head_dim = len(case.cache_seqlens), case.heads_kv, case.head_dim
    q = _randn((batch, case.seqlen_q, case.heads_q, head_dim), generator, device, case.dtype)
    keys = [_randn((n, heads_kv, head_dim), generator, device, case.dtype) for n in case.cache_seqlens]
    values = [_randn((n, heads_kv, head_dim), generator, device, case.dtype) for n in case.cache_seqlens]
    dout = _randn((batch * case.seqlen_q, case.heads_q, head_dim), generator, device, case.dtype)
    dtype = q.dtype
    block_table = None
    if case.page_size is None:
        k_cache = torch.full((batch, case.capacity, heads_kv, head_dim), CACHE_GARBAGE, dtype=dtype, device=device)
        v_cache = torch.full_like(k_cache, -CACHE_GARBAGE)
        for b, n in enumerate(case.cache_seqlens):
            k_cache[b, :n], v_cache[b, :n] = keys[b], values[b]
    else:
        # pages in a shuffled order with spare pages between them: an identity or off-by-one table reads garbage
        per_sequence = -(-case.capacity // case.page_size)
        num_pages = batch * per_sequence + 3
        order = torch.randperm(num_pages, generator=generator)
        block_table = order[: batch * per_sequence].reshape(batch, per_sequence).to(torch.int32)
        shape = (num_pages, case.page_size, heads_kv, head_dim)
        k_cache = torch.full(shape, CACHE_GARBAGE, dtype=dtype, device=device)
        v_cache = torch.full(shape, -CACHE_GARBAGE, dtype=dtype, device=device)
        for b, n in enumerate(case.cache_seqlens):
            for t in range(n):
                page, slot = int(block_table[b, t // case.page_size]), t % case.page_size
                k_cache[page, slot], v_cache[page, slot] = keys[b][t], values[b][t]
        block_table = block_table.to(device)
    lengths_q = [case.seqlen_q] * batch
    packed = Inputs(
        q.reshape(batch * case.seqlen_q, case.heads_q, head_dim), torch.cat(keys), torch.cat(values), dout,
        cu_seqlens_q=cu_seqlens_from_lengths(lengths_q, device),
        cu_seqlens_k=cu_seqlens_from_lengths(list(case.cache_seqlens), device),
        max_seqlen_q=case.seqlen_q, max_seqlen_k=max(case.cache_seqlens),
    )
    seqlens = torch.tensor(case.cache_seqlens, dtype=torch.int32, device=device)
    return KvCacheInputs(q, k_cache, v_cache, seqlens, block_table, packed)
