"""flash-attn 4 (the ``flash-attn-4`` package, CuTe DSL kernels, imported as ``flash_attn.cute``).

Registered beside flash-attn 2: same causal convention (bottom-right), same key-padding path (unpad -> varlen ->
pad, so causal + key padding is refused), but a different kernel family, JIT-compiled per configuration on first
use (a few seconds; ``FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED=1`` keeps compiled kernels on disk). Its functions
return ``(out, lse)``, and in ``flash_attn_varlen_func`` the fourth positional parameter is ``qv``, not
``cu_seqlens_q``: everything after q, k, v is passed by keyword.

Installing: ``pip install --pre flash-attn-4`` (pre-releases only). Where the packages sit on ``PYTHONPATH``
rather than in site-packages, the ``.pth`` file of ``nvidia-cutlass-dsl`` is not read, so its ``dsl_packages``
folder must be on the path too (``scripts/gpu_site.sh`` does this for the offline GPU run).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import torch

from attnconf import BOTTOM_RIGHT, Capabilities, Implementation, register
from attnconf.validation import check_dense_inputs
from attnconf.validation import check_packed_call
from attnconf.varlen import dense_through_varlen
from .flash_attn2 import installed_version

HALF = {torch.float16, torch.bfloat16}
HEAD_DIMS = frozenset({32, 64, 128})
INSTALL_HINT = (
    "flash-attn 4 is not installed: pip install --pre flash-attn-4 (CuTe DSL; Hopper or Blackwell GPUs; "
    "offline GPU machines: scripts/fa4_pack.sh, then scripts/gpu_site.sh there)"
)


@functools.cache
def _cute():
    import flash_attn.cute as cute  # ImportError when missing

    return cute


def _available() -> str | None:
    if not torch.cuda.is_available():
        return "flash-attn 4 runs on CUDA GPUs only"
    try:
        _cute()
    except ImportError as exc:
        return f"{INSTALL_HINT} ({exc})"
    major, _ = torch.cuda.get_device_capability()
    if major < 9:
        return f"flash-attn 4 needs a Hopper (sm90) or newer GPU; this one is sm{major}x"
    return None


def cute_options(*, window=None, softcap=None, sink=None) -> dict:
    """The canonical options as flash_attn.cute keywords: ``window_size`` takes None, not -1, for an unbounded
    side; ``learnable_sink`` is the sink logit per query head."""
    options = {}
    if window is not None:
        options["window_size"] = tuple(None if side == -1 else side for side in window)
    if softcap is not None:
        options["softcap"] = softcap
    if sink is not None:
        options["learnable_sink"] = sink
    return options


def flash_attn4_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=None,
                       scale=None, window=None, softcap=None, sink=None, return_lse=False):
    """Packed call: flash_attn.cute.flash_attn_varlen_func on [T, H, D], every option by keyword; with
    ``return_lse``, (out, lse [H, T])."""
    check_packed_call(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, HEAD_DIMS, HEAD_DIMS)
    if q.shape[0] == 0 or k.shape[0] == 0:
        return (q * 0, torch.full((q.shape[1], q.shape[0]), float("-inf"), device=q.device)) if return_lse else q * 0
    out, lse = _cute().flash_attn_varlen_func(
        q, k, v, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max(max_seqlen_q, 1),
        max_seqlen_k=max(max_seqlen_k, 1), softmax_scale=scale, causal=causal is not None, return_lse=return_lse,
        **cute_options(window=window, softcap=softcap, sink=sink),
    )
    return (out, lse) if return_lse else out


def flash_attn4_dense(q, k, v, *, key_padding_mask=None, causal=None, scale=None, window=None, softcap=None,
                      sink=None, return_lse=False):
    """Dense call: flash_attn.cute.flash_attn_func, or unpad -> varlen -> pad with a key-padding mask."""
    check_dense_inputs(q, k, v, key_padding_mask, head_dims=HEAD_DIMS, head_dims_v=HEAD_DIMS)
    if key_padding_mask is not None:
        return dense_through_varlen(flash_attn4_varlen, q, k, v, key_padding_mask, causal=causal, scale=scale,
                                    window=window, softcap=softcap, sink=sink, return_lse=return_lse)
    out, lse = _cute().flash_attn_func(q, k, v, softmax_scale=scale, causal=causal is not None,
                                       return_lse=return_lse, **cute_options(window=window, softcap=softcap, sink=sink))
    return (out, lse) if return_lse else out


def flash_attn4_kvcache(q, k_cache, v_cache, cache_seqlens, *, block_table=None, causal=None, scale=None):
    """Decoding: flash_attn_varlen_func with batched q and cache, ``seqused_k`` the cache lengths and the block
    table as ``page_table``."""
    out, _lse = _cute().flash_attn_varlen_func(q, k_cache, v_cache, seqused_k=cache_seqlens, page_table=block_table,
                                               softmax_scale=scale, causal=causal is not None)
    return out


_SM90_BACKWARD_GQA_DV = (
    "sm90 backward refuses grouped-query heads with a value head dim other than the head dim (AssertionError \"GQA "
    "backward requires head_dim == head_dim_v\" in flash_bwd_sm90.py); the forward passes HEAD-3 and the backward "
    "with Hq == Hkv is not refused (flash-attn-4 4.0.0b36, NVIDIA H200, torch 2.11.0+cu130, 2026-12-02)"
)


class _HopperDeviations(Mapping):
    """flash-attn 4's deviations on sm90 only: its other architectures have their own backward kernels, where the
    same tests may pass (a strict entry would then turn XPASS into a failure). Worked out when the suite reads the
    entries, at collection in the process that runs the tests: asking for the GPU's architecture at import would
    start CUDA in every process that merely loads the built-ins."""

    ENTRIES = {f"conformance/test_value_head_dim.py::test_value_head_dim_gradients[flash-attn4-{dv}]":
               _SM90_BACKWARD_GQA_DV for dv in (32, 128)}

    def _entries(self) -> dict[str, str]:
        on_sm90 = torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)
        return self.ENTRIES if on_sm90 else {}

    def __getitem__(self, pattern: str) -> str:
        return self._entries()[pattern]

    def __iter__(self):
        return iter(self._entries())

    def __len__(self) -> int:
        return len(self._entries())


register(
    Implementation(
        name="flash-attn4",
        forward=flash_attn4_dense,
        varlen_forward=flash_attn4_varlen,
        kvcache_forward=flash_attn4_kvcache,
        capabilities=Capabilities(
            devices={"cuda"}, dtypes=HALF, head_dims=HEAD_DIMS, head_dims_v=HEAD_DIMS, causal={BOTTOM_RIGHT},
            key_padding_mask=True, mask_with_causal=False, varlen=True, gqa=True, window=True, softcap=True,
            sink=True, lse="e", kvcache=True, paged=True, backward=True, memory_efficient=True,
            notes=(f"flash-attn-4 {installed_version('flash-attn-4') or 'not installed'}; causal is bottom-right "
                   "aligned only; key padding drops the hidden keys, so causal, a window or ALiBi with key padding "
                   "is refused; no ALiBi (no slopes argument); "
                   "kernels JIT-compile per configuration on first use; not declared deterministic (default "
                   "backward)"),
        ),
        available=_available,
        expected_failures=_HopperDeviations(),
        description="flash-attn 4 (CuTe DSL): flash_attn.cute.flash_attn_func / flash_attn_varlen_func",
    )
)
