"""What an implementation declares it can do: the capability manifest.

Conformance tests outside the manifest are skipped with a reason naming the capability; tests inside it must pass.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

TOP_LEFT = "top_left"  # query i sees keys j <= i (SDPA's is_causal)
BOTTOM_RIGHT = "bottom_right"  # query i sees keys j <= i + Sk - Sq (flash-attn >= 2.1, KV caches)
ALIGNMENTS = (TOP_LEFT, BOTTOM_RIGHT)

REQUIRED_HEAD_DIM = 64
LSE_BASES = (None, "e", "2")
ALL_FLOAT_DTYPES = frozenset({torch.float32, torch.float16, torch.bfloat16})


@dataclass(frozen=True)
class Capabilities:
    """The capability manifest of one implementation.

    ``overrides`` maps a device type ("cpu", "cuda") to field values that hold on that device only, e.g. a
    kernel that runs fp32 on CPU but only fp16/bf16 on GPU.
    """

    devices: frozenset[str] = frozenset({"cpu"})
    dtypes: frozenset[torch.dtype] = ALL_FLOAT_DTYPES
    head_dims: frozenset[int] | None = frozenset({REQUIRED_HEAD_DIM})  # None: every head dim
    # value head dims Dv other than the query/key head dim (HEAD-3): empty, none; None, any
    head_dims_v: frozenset[int] | None = frozenset()
    causal: frozenset[str] = frozenset()  # supported causal alignments
    causal_unequal: bool = True  # causal masking also when seqlen_q != seqlen_k (else only square)
    # a key-padding mask in one call with what depends on key positions: causal masking, a window, ALiBi (an
    # implementation that applies the mask by dropping keys, unpad -> varlen, shifts those positions)
    mask_with_causal: bool = True
    key_padding_mask: bool = False
    varlen: bool = False  # packed batches (natively, or through the shared pad/unpad adapter)
    gqa: bool = False  # Hq a multiple of Hkv, including MQA
    window: bool = False  # sliding-window attention (left, right), aligned bottom-right (WINDOW)
    softcap: bool = False  # cap * tanh(s / cap) on the scaled scores (SOFTCAP)
    alibi: bool = False  # ALiBi slopes [H] and [B, H] (ALIBI)
    sink: bool = False  # a sink logit per query head in the softmax denominator (SINK)
    lse: str | None = None  # the base of the log-sum-exp returned with return_lse=True: "e" or "2" (LSE)
    lse_empty_row: float = float("-inf")  # the lse of a row with no visible key (and no sink)
    kvcache: bool = False  # decoding against a KV cache with per-sequence lengths (KVCACHE), kvcache_forward
    paged: bool = False  # the cache in pages through a block table (PAGED)
    custom_scale: bool = True
    backward: bool = False
    deterministic: bool = False  # forward and backward bit-identical across repeats
    memory_efficient: bool = False  # peak memory grows linearly with sequence length
    max_seqlen: int | None = None
    min_seqlen_k: int = 1  # the shortest key length a (non-empty) call may have: a kernel limit, honoured by the draws
    notes: str = ""
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("devices", "dtypes", "head_dims", "head_dims_v", "causal"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, frozenset(getattr(self, name)))
        if self.lse not in LSE_BASES:
            raise ValueError(f"unknown lse base {self.lse!r}; use one of {LSE_BASES}")
        unknown = set(self.causal) - set(ALIGNMENTS)
        if unknown:
            raise ValueError(f"unknown causal alignment(s) {sorted(unknown)}; use {ALIGNMENTS}")
        for device, values in self.overrides.items():
            bad = set(values) - {f.name for f in dataclasses.fields(self)} | ({"overrides"} & set(values))
            if bad:
                raise ValueError(f"overrides for {device!r} name unknown capabilities {sorted(bad)}")

    def on(self, device: str | torch.device) -> "Capabilities":
        """The manifest as it holds on one device type."""
        device_type = torch.device(device).type
        values = self.overrides.get(device_type)
        if not values:
            return self
        return dataclasses.replace(self, overrides={}, **values)

    def missing(
        self,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        head_dim: int | None = None,
        head_dim_v: int | None = None,
        causal: str | None = None,
        causal_unequal: bool = False,
        key_padding_mask: bool = False,
        mask_with_causal: bool = False,
        varlen: bool = False,
        gqa: bool = False,
        window: bool = False,
        softcap: bool = False,
        alibi: bool = False,
        sink: bool = False,
        lse: bool = False,
        kvcache: bool = False,
        paged: bool = False,
        custom_scale: bool = False,
        backward: bool = False,
        deterministic: bool = False,
        memory_efficient: bool = False,
        seqlen: int | None = None,
        shortest_seqlen_k: int | None = None,
    ) -> str | None:
        """The first capability a test needs that is not declared, as a skip reason; None when all are."""
        caps = self
        if device is not None:
            device_type = torch.device(device).type
            if device_type not in self.devices:
                return f"device {device_type!r} not declared (capability: devices={sorted(self.devices)})"
            caps = self.on(device_type)
        checks = [
            (dtype is not None and dtype not in caps.dtypes, f"dtype {dtype} not declared (capability: dtypes)"),
            (
                head_dim is not None and caps.head_dims is not None and head_dim not in caps.head_dims,
                f"head_dim {head_dim} not declared (capability: head_dims={sorted(caps.head_dims or ())})",
            ),
            (
                head_dim_v is not None and head_dim_v != head_dim and caps.head_dims_v is not None
                and head_dim_v not in caps.head_dims_v,
                f"value head dim {head_dim_v} != head dim {head_dim} not declared (capability: head_dims_v="
                f"{'any' if caps.head_dims_v is None else sorted(caps.head_dims_v)})",
            ),
            (
                causal is not None and causal not in caps.causal,
                f"causal alignment {causal!r} not declared (capability: causal={sorted(caps.causal)})",
            ),
            (
                causal_unequal and not caps.causal_unequal,
                "causal masking with seqlen_q != seqlen_k not declared (capability: causal_unequal)",
            ),
            (
                mask_with_causal and not caps.mask_with_causal,
                "key-padding mask together with causal masking, a window or ALiBi not declared (capability: "
                "mask_with_causal)",
            ),
            (key_padding_mask and not caps.key_padding_mask, "key-padding mask not declared (capability: key_padding_mask)"),
            (varlen and not caps.varlen, "packed variable-length batches not declared (capability: varlen)"),
            (gqa and not caps.gqa, "grouped-query attention not declared (capability: gqa)"),
            (window and not caps.window, "sliding-window attention not declared (capability: window)"),
            (softcap and not caps.softcap, "score softcapping not declared (capability: softcap)"),
            (alibi and not caps.alibi, "ALiBi slopes not declared (capability: alibi)"),
            (sink and not caps.sink, "attention sink logits not declared (capability: sink)"),
            (lse and caps.lse is None, "returning the log-sum-exp not declared (capability: lse)"),
            (kvcache and not caps.kvcache, "decoding against a KV cache not declared (capability: kvcache)"),
            (paged and not caps.paged, "a paged KV cache (block_table) not declared (capability: paged)"),
            (custom_scale and not caps.custom_scale, "custom softmax scale not declared (capability: custom_scale)"),
            (backward and not caps.backward, "backward pass not declared (capability: backward)"),
            (deterministic and not caps.deterministic, "determinism not declared (capability: deterministic)"),
            (
                memory_efficient and not caps.memory_efficient,
                "linear memory not declared (capability: memory_efficient)",
            ),
            (
                seqlen is not None and caps.max_seqlen is not None and seqlen > caps.max_seqlen,
                f"sequence length {seqlen} above the declared limit (capability: max_seqlen={caps.max_seqlen})",
            ),
            (
                shortest_seqlen_k is not None and shortest_seqlen_k < caps.min_seqlen_k,
                f"key length {shortest_seqlen_k} below the declared limit (capability: min_seqlen_k={caps.min_seqlen_k})",
            ),
        ]
        for failed, reason in checks:
            if failed:
                return reason
        return None

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly view, for reports and ``--list-impls``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "overrides":
                value = {d: {k: _plain(v) for k, v in vals.items()} for d, vals in value.items()}
            out[f.name] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (set, frozenset)):
        if all(isinstance(v, int) for v in value):
            return sorted(value)
        return sorted(str(v).replace("torch.", "") for v in value)
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    if isinstance(value, float) and not math.isfinite(value):  # JSON has no infinities
        return str(value)
    return value
