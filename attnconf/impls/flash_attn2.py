"""flash-attn 2 (the ``flash-attn`` package): ``flash_attn_func`` for dense batches, ``flash_attn_varlen_func`` for
packed ones, and a key-padding mask through unpad -> varlen -> pad, as flash-attn's ``bert_padding`` helpers do.

flash-attn's causal mask is aligned to the bottom-right corner (query i sees keys j <= i + Sk - Sq), so that is the
only alignment declared. A key-padding mask is applied by dropping the hidden keys before a packed call; causal
positions would then count only the kept keys, so causal masking together with a key-padding mask is refused
(``dense_through_varlen``) rather than computed on shifted positions.

GPU only. A build restricted to some head dims by ``scripts/flash_attn_build_offline.sh`` records them beside the
package (``flash_attn_build.txt``), and only those are declared; an ordinary installation has every head dim.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from pathlib import Path

import torch

from attnconf import BOTTOM_RIGHT, Capabilities, Implementation, register
from attnconf.validation import check_dense_inputs, check_packed_call
from attnconf.varlen import dense_through_varlen

HALF = {torch.float16, torch.bfloat16}
CANDIDATE_HEAD_DIMS = (32, 64, 128)
EMPTY_ROW_LSE = float("inf")  # flash-attn 2's lse of a row that sees no key
INSTALL_HINT = (
    "flash-attn is not installed: pip install flash-attn --no-build-isolation (a CUDA build from source; "
    "offline GPU machines: scripts/flash_attn_build_offline.sh)"
)


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---- flash-attn 2 ------------------------------------------------------------------------------------------------


@functools.cache
def _flash_attn():
    # ImportError when missing, also where only flash-attn 4 is installed (flash_attn is then a bare namespace
    # holding flash_attn.cute)
    from flash_attn import flash_attn_func, flash_attn_varlen_func  # noqa: F401
    import flash_attn

    return flash_attn


@functools.cache
def build_record() -> dict[str, str]:
    """The key=value lines of ``flash_attn_build.txt`` beside the installed package, written by
    ``scripts/flash_attn_build_offline.sh``; empty for any other installation. Found without importing flash_attn."""
    spec = importlib.util.find_spec("flash_attn")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location).parent / "flash_attn_build.txt"
        if path.is_file():
            pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
            return {key.strip(): value.strip() for key, value in pairs}
    return {}


def supported_head_dims() -> frozenset[int]:
    """The head dims a restricted offline build names; an ordinary installation builds every head dim."""
    named = build_record().get("head_dims")
    return frozenset(int(d) for d in named.split()) if named else frozenset(CANDIDATE_HEAD_DIMS)


def _available() -> str | None:
    if not torch.cuda.is_available():
        return "flash-attn runs on CUDA GPUs only"
    try:
        _flash_attn()
    except ImportError as exc:
        return f"{INSTALL_HINT} ({exc})"
    if 64 not in supported_head_dims():
        return f"the installed flash-attn build has no head dim 64 (has {sorted(supported_head_dims())})"
    return None


def build_has_features() -> bool:
    """Whether the installed build has sliding windows, softcapping and ALiBi: every ordinary installation does; an
    offline build with ``features=core`` was compiled without them (its entry points raise for them)."""
    return build_record().get("features", "full") != "core"


def flash_attn_options(*, window=None, softcap=None, alibi_slopes=None) -> dict:
    """The canonical options as flash-attn 2 keywords: ``window_size`` is the same (left, right) pair, -1 unbounded,
    aligned bottom-right (flash-attn is where the WINDOW contract's convention comes from)."""
    options = {}
    if window is not None:
        options["window_size"] = tuple(window)
    if softcap is not None:
        options["softcap"] = softcap
    if alibi_slopes is not None:
        options["alibi_slopes"] = alibi_slopes
    return options


def flash_attn2_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=None,
                       scale=None, window=None, softcap=None, alibi_slopes=None, return_lse=False):
    """Packed call: flash_attn_varlen_func on [T, H, D]; with ``return_lse``, (out, lse [H, T])."""
    check_packed_call(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, supported_head_dims())
    if q.shape[0] == 0 or k.shape[0] == 0:
        # nothing to attend to (or no query): rows of 0, and dQ = 0; the kernel takes no empty tensor
        empty = torch.full((q.shape[1], q.shape[0]), EMPTY_ROW_LSE, device=q.device)
        return (q * 0, empty) if return_lse else q * 0
    result = _flash_attn().flash_attn_varlen_func(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max(max_seqlen_q, 1), max(max_seqlen_k, 1),
        softmax_scale=scale, causal=causal is not None, return_attn_probs=return_lse,
        **flash_attn_options(window=window, softcap=softcap, alibi_slopes=alibi_slopes),
    )
    return result[:2] if return_lse else result


def flash_attn2_dense(q, k, v, *, key_padding_mask=None, causal=None, scale=None, window=None, softcap=None,
                      alibi_slopes=None, return_lse=False):
    """Dense call: flash_attn_func, or unpad -> flash_attn_varlen_func -> pad with a key-padding mask."""
    check_dense_inputs(q, k, v, key_padding_mask, head_dims=supported_head_dims())
    options = flash_attn_options(window=window, softcap=softcap, alibi_slopes=alibi_slopes)
    if key_padding_mask is not None:
        return dense_through_varlen(flash_attn2_varlen, q, k, v, key_padding_mask, causal=causal, scale=scale,
                                    window=window, softcap=softcap, alibi_slopes=alibi_slopes, return_lse=return_lse)
    result = _flash_attn().flash_attn_func(q, k, v, softmax_scale=scale, causal=causal is not None,
                                           return_attn_probs=return_lse, **options)
    return result[:2] if return_lse else result


def flash_attn2_kvcache(q, k_cache, v_cache, cache_seqlens, *, block_table=None, causal=None, scale=None):
    """Decoding: flash_attn_with_kvcache, causal aligned to each sequence's cache end."""
    return _flash_attn().flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=cache_seqlens,
                                                 block_table=block_table, softmax_scale=scale,
                                                 causal=causal is not None)


def _capabilities() -> Capabilities:
    version = installed_version("flash-attn")
    record = build_record()
    features = build_has_features()
    build = (f" (offline build: head dims {record.get('head_dims')}, sm{record.get('cuda_archs')}, features "
             f"{record.get('features')}, nvcc {record.get('nvcc')}, torch {record.get('torch')})" if record else "")
    return Capabilities(
        devices={"cuda"}, dtypes=HALF, head_dims=supported_head_dims(), causal={BOTTOM_RIGHT},
        key_padding_mask=True, mask_with_causal=False, varlen=True, gqa=True, backward=True, memory_efficient=True,
        window=features, softcap=features, alibi=features, lse="e", lse_empty_row=EMPTY_ROW_LSE, kvcache=True,
        notes=(f"flash-attn {version or 'not installed'}{build}; causal is bottom-right aligned only; key padding "
               "drops the hidden keys (unpad -> varlen -> pad), so causal, a window or ALiBi with key padding is "
               "refused; window, softcap and ALiBi "
               + ("declared" if features else "not declared: this build was compiled without them")
               + "; the lse of a row with no key is +inf; the paged cache is not declared: flash_attn_with_kvcache "
               "takes pages of a multiple of 256 tokens only (the PAGED tests use 4, 5 and 16); backward "
               "accumulates dQ with atomics: not deterministic"),
    )


register(
    Implementation(
        name="flash-attn2",
        forward=flash_attn2_dense,
        varlen_forward=flash_attn2_varlen,
        kvcache_forward=flash_attn2_kvcache,
        capabilities=_capabilities(),
        available=_available,
        description="flash-attn 2: flash_attn_func / flash_attn_varlen_func",
    )
)
