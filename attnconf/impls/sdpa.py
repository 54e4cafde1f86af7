"""PyTorch's scaled_dot_product_attention, one registered implementation per backend.

Each variant pins its backend with ``torch.nn.attention.sdpa_kernel``, so a silent fallback to another backend
raises instead of passing as the backend it claims. Availability is probed with a tiny call: a backend that
cannot run on this machine reports why. Packed batches go through the shared pad/unpad adapter.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from attnconf import BOTTOM_RIGHT, TOP_LEFT, Capabilities, Implementation, compat, register
from attnconf.layouts import swap_seq_heads, to_canonical
from attnconf.reference import causal_visibility
from attnconf.validation import check_dense_inputs, check_feature_inputs

HALF = {torch.float16, torch.bfloat16}
GQA = compat.at_least(2, 5)  # SDPA's enable_gqa
ALL = {torch.float32, torch.float16, torch.bfloat16}


def sdpa_attention(q, k, v, *, backend: SDPBackend, key_padding_mask=None, causal=None, scale=None, window=None,
                   alibi_slopes=None, head_dims=None, head_dims_v=frozenset()):
    """SDPA on [B, H, S, D] inputs with one pinned backend; ``head_dims``: the ones this variant declares.

    SDPA has no window and no ALiBi: both go into ``attn_mask``, a boolean band for the window and an additive float
    bias for ALiBi (-inf where hidden), written here with SDPA's own conventions (not the suite's predicates).
    """
    # SDPA would read a float mask as additive and broadcast a mask of the wrong shape: check what this wrapper
    # builds on, in SDPA's layout (k, v [B, Hkv, Sk, D])
    check_dense_inputs(*(swap_seq_heads(t) for t in (q, k, v)), key_padding_mask, head_dims=head_dims,
                       head_dims_v=head_dims_v)
    batch, heads, seqlen_q, seqlen_k = q.shape[0], q.shape[1], q.shape[-2], k.shape[-2]
    check_feature_inputs(alibi_slopes, None, batch, heads, q.device)
    explicit = key_padding_mask is not None or window is not None or alibi_slopes is not None
    attn_mask, is_causal = None, False
    if causal is not None and not explicit and (causal == TOP_LEFT or seqlen_q == seqlen_k):
        is_causal = True  # top-left, or square where both alignments agree: the path every backend takes
    elif causal is not None:
        attn_mask = causal_visibility(seqlen_q, seqlen_k, causal, device=q.device)[None, None]
    if window is not None:
        band = window_band(seqlen_q, seqlen_k, *window, device=q.device)[None, None]
        attn_mask = band if attn_mask is None else attn_mask & band
    if key_padding_mask is not None:
        padding = key_padding_mask[:, None, None, :]
        attn_mask = padding if attn_mask is None else attn_mask & padding
    if alibi_slopes is not None:
        bias = alibi_bias(alibi_slopes, seqlen_q, seqlen_k)
        attn_mask = (bias if attn_mask is None else bias.masked_fill(~attn_mask, float("-inf"))).to(q.dtype)
    gqa = {"enable_gqa": True} if q.shape[1] != k.shape[1] else {}  # a keyword of torch >= 2.5 (GQA declared there)
    with sdpa_kernel(backend):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale, **gqa)


def window_band(seqlen_q: int, seqlen_k: int, left: int, right: int, device) -> torch.Tensor:
    """bool [Sq, Sk]: flash-attn's window_size as a band around the diagonal ending at the last key."""
    band = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool, device=device)
    offset = seqlen_k - seqlen_q
    if right >= 0:
        band = band.tril(offset + right)
    if left >= 0:
        band = band.triu(offset - left)
    return band


def alibi_bias(slopes: torch.Tensor, seqlen_q: int, seqlen_k: int) -> torch.Tensor:
    """float32 [B or 1, H, Sq, Sk]: -slope * |i + Sk - Sq - j| (flash-attn's alibi_slopes, [H] or [B, H])."""
    rows = torch.arange(seqlen_q, device=slopes.device)[:, None] + (seqlen_k - seqlen_q)
    distance = (rows - torch.arange(seqlen_k, device=slopes.device)[None, :]).abs().float()
    per_head = slopes[None] if slopes.dim() == 1 else slopes
    return -per_head[:, :, None, None] * distance


def _probe(backend: SDPBackend, device: str, dtype: torch.dtype):
    def available() -> str | None:
        if device == "cuda" and not torch.cuda.is_available():
            return "needs a CUDA device"
        q = torch.randn(1, 1, 8, 64, device=device, dtype=dtype)
        try:
            sdpa_attention(q, q, q, backend=backend)
        except RuntimeError as exc:
            return f"backend {backend.name} cannot run on {device}: {str(exc).splitlines()[0]}"
        return None

    return functools.cache(available)


@functools.cache
def _takes_gqa(backend: SDPBackend, device: str) -> bool:
    """Whether this backend runs grouped-query heads (enable_gqa) here: one tiny call, forward only."""
    q, k = torch.zeros(1, 2, 8, 64, device=device), torch.zeros(1, 1, 8, 64, device=device)
    try:
        sdpa_attention(q, k, k, backend=backend)
    except RuntimeError:
        return False
    return True


# the CPU flash kernel takes enable_gqa from torch 2.9 ("No available kernel" on 2.6 to 2.8, seen under tox)
FLASH_CPU_GQA = GQA and _takes_gqa(SDPBackend.FLASH_ATTENTION, "cpu")


def _cpu_flash_bf16_error() -> str | None:
    """Why the CPU flash kernel cannot run bfloat16 here, or None. Probed only under an emulated SIMD level: on a
    CPU with AMX, from 64 query rows on, torch packs the operands with pack_vnni2, which then refuses any level
    below AVX512 ("pack_vnni2 is only supported when avx512 is supported", forward and backward, torch 2.13 with
    ATEN_CPU_CAPABILITY=avx2 on an AMX Xeon, 2026-12-02); a CPU that really has only AVX2 takes another path."""
    emulated = compat.emulated_cpu_capability()
    if emulated is None:
        return None
    q = torch.randn(1, 1, 64, 64, dtype=torch.bfloat16)
    try:
        sdpa_attention(q, q, q, backend=SDPBackend.FLASH_ATTENTION)
    except RuntimeError as exc:
        return f"{emulated}: {str(exc).splitlines()[0]}"
    return None


FLASH_CPU_BF16_ERROR = _cpu_flash_bf16_error()
FLASH_CPU_DTYPES = ALL if FLASH_CPU_BF16_ERROR is None else ALL - {torch.bfloat16}


def _variant(name: str, backend: SDPBackend, capabilities: Capabilities, probe_device: str, probe_dtype) -> Implementation:
    return register(
        Implementation(
            name=name,
            forward=to_canonical(functools.partial(sdpa_attention, backend=backend, head_dims=capabilities.head_dims,
                                                   head_dims_v=capabilities.head_dims_v), "bhsd"),
            capabilities=capabilities,
            available=_probe(backend, probe_device, probe_dtype),
            description=f"torch.nn.functional.scaled_dot_product_attention pinned to {backend.name}",
        )
    )


# math: the reference backend, everything on every device (it materialises the score matrix)
_variant(
    "sdpa-math",
    SDPBackend.MATH,
    Capabilities(
        devices={"cpu", "cuda"}, dtypes=ALL, head_dims=None, causal={TOP_LEFT, BOTTOM_RIGHT},
        key_padding_mask=True, varlen=True, gqa=GQA, backward=True, deterministic=True, window=True, alibi=True,
        head_dims_v=None,
        notes="sliding window and ALiBi through attn_mask (a boolean band; an additive bias in the input dtype); any "
              "value head dim",
    ),
    "cpu",
    torch.float32,
)

# flash: on CPU a tiled C++ kernel that also takes boolean masks; on CUDA FlashAttention-2, which takes no mask
_variant(
    "sdpa-flash",
    SDPBackend.FLASH_ATTENTION,
    Capabilities(
        devices={"cpu", "cuda"}, dtypes=ALL, head_dims={32, 64, 128}, causal={TOP_LEFT, BOTTOM_RIGHT},
        key_padding_mask=True, varlen=True, gqa=GQA, backward=True, deterministic=True, memory_efficient=True,
        window=True, alibi=True,
        overrides={"cpu": dict(gqa=FLASH_CPU_GQA, dtypes=FLASH_CPU_DTYPES),
                   "cuda": dict(dtypes=HALF, causal_unequal=False, key_padding_mask=False, varlen=False,
                                deterministic=False, window=False, alibi=False)},
        notes="CUDA: no attn_mask (so no key padding, window or ALiBi), causal only with seqlen_q == seqlen_k; "
        "fp16/bf16 only; CPU: sliding window and ALiBi through attn_mask; "
        f"GQA only where torch's CPU flash kernel takes enable_gqa (from 2.9; torch {torch.__version__}: "
        f"{'yes' if FLASH_CPU_GQA else 'no, No available kernel'})"
        + (f"; CPU bfloat16 not declared here: the kernel raises under {FLASH_CPU_BF16_ERROR}"
           if FLASH_CPU_BF16_ERROR else ""),
    ),
    "cuda" if torch.cuda.is_available() else "cpu",
    torch.float16 if torch.cuda.is_available() else torch.float32,
)

# memory-efficient (xformers-style) kernel: CUDA only, takes arbitrary masks
_variant(
    "sdpa-efficient",
    SDPBackend.EFFICIENT_ATTENTION,
    Capabilities(
        devices={"cuda"}, dtypes=HALF, head_dims={32, 64, 128}, causal={TOP_LEFT, BOTTOM_RIGHT},
        key_padding_mask=True, varlen=True, gqa=False, backward=True, memory_efficient=True, window=True, alibi=True,
        notes="sliding window and ALiBi through attn_mask; no enable_gqa (torch 2.11 finds no kernel); backward uses atomics: not declared deterministic; "
        "fp32 not declared: on an H200 with torch 2.11 its fp32 errors reached 2-3.7x the reference "
        "formulations' (outputs with one key are not exactly v), beyond the bound",
    ),
    "cuda",
    torch.float16,
)

# cuDNN: CUDA only (sm80+), fp16/bf16
_variant(
    "sdpa-cudnn",
    SDPBackend.CUDNN_ATTENTION,
    Capabilities(
        devices={"cuda"}, dtypes=HALF, head_dims={64, 128}, causal={TOP_LEFT, BOTTOM_RIGHT}, causal_unequal=False,
        key_padding_mask=False, varlen=False, gqa=GQA, backward=True, memory_efficient=True, min_seqlen_k=2,
        notes="declared conservatively: mask and GQA support vary across cuDNN versions; causal only when square; "
              "no kernel for a key length of 1 ('No available kernel', H100/H200 with torch 2.11.0+cu130, "
              "2026-11-21)",
    ),
    "cuda",
    torch.float16,
)
