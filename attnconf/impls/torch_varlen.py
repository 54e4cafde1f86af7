"""PyTorch's packed attention, ``torch.nn.attention.varlen.varlen_attn`` (torch >= 2.10, CUDA only).

Its signature changed across releases, so the call is built from what the installed torch offers:
- 2.10: ``is_causal=True``; no ``scale``;
- 2.11: ``window_size=(-1, 0)`` for causal (it must be a tuple: a list silently means no causal mask) and
  ``scale``;
- 2.12: ``enable_gqa``; earlier releases take no grouped-query heads, so GQA is declared only from there.
A sliding window is the same ``window_size`` pair (declared where it exists; causal masking is its right side
clamped to 0), and the lse comes back through ``return_aux=AuxRequest(lse=True)`` (declared where ``return_aux``
exists) as [H, T]: its docstring (2.11 to 2.13) says (T_q, H_q), but the tensor is the kernel's (num_heads, total_q)
(measured on an H200 with torch 2.11; torch's own code comments say the same).
The kernel is FlashAttention's, so causal masking is bottom-right aligned. Dense batches go through the packed
call (``dense_through_varlen``): equal lengths without a mask, the kept keys of each batch element with one.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch

from attnconf import BOTTOM_RIGHT, Capabilities, Implementation, register
from attnconf.validation import check_dense_inputs
from attnconf.validation import check_packed_call
from attnconf.varlen import dense_through_varlen

HALF = {torch.float16, torch.bfloat16}
HEAD_DIMS = frozenset({32, 64, 128})
CAUSAL_WINDOW = (-1, 0)  # (left, right): every earlier key, no later one


@dataclass(frozen=True)
class VarlenSignature:
    """What the installed ``varlen_attn`` accepts."""

    causal_keyword: str | None  # "window_size" (2.11+), "is_causal" (2.10), None when neither
    scale: bool
    enable_gqa: bool
    lse: bool = False  # return_aux=AuxRequest(lse=True)

    @classmethod
    def of(cls, fn) -> "VarlenSignature":
        params = inspect.signature(fn).parameters
        causal = "window_size" if "window_size" in params else ("is_causal" if "is_causal" in params else None)
        return cls(causal_keyword=causal, scale="scale" in params, enable_gqa="enable_gqa" in params,
                   lse="return_aux" in params)

    @property
    def window(self) -> bool:
        return self.causal_keyword == "window_size"

    def keywords(self, *, causal: bool, scale: float | None, gqa: bool, window=None, return_lse=False) -> dict:
        """Keyword arguments for one call; raises for what this torch cannot do."""
        kwargs = {}
        if window is not None:
            if not self.window:
                raise NotImplementedError("this torch's varlen_attn has no window_size (added in torch 2.11)")
            left, right = window
            kwargs["window_size"] = (left, 0 if causal and (right == -1 or right > 0) else right)
        elif causal:
            if self.causal_keyword == "window_size":
                kwargs["window_size"] = CAUSAL_WINDOW
            elif self.causal_keyword == "is_causal":
                kwargs["is_causal"] = True
            else:
                raise NotImplementedError("this torch's varlen_attn has no causal option")
        if scale is not None:
            if not self.scale:
                raise NotImplementedError("this torch's varlen_attn takes no scale (added in torch 2.11)")
            kwargs["scale"] = scale
        if gqa:
            if not self.enable_gqa:
                raise NotImplementedError("this torch's varlen_attn takes no grouped-query heads (enable_gqa, 2.12)")
            kwargs["enable_gqa"] = True
        if return_lse:
            if not self.lse:
                raise NotImplementedError("this torch's varlen_attn returns no lse (return_aux)")
            from torch.nn.attention.varlen import AuxRequest

            kwargs["return_aux"] = AuxRequest(lse=True)
        return kwargs


@functools.cache
def _varlen_attn():
    from torch.nn.attention.varlen import varlen_attn  # ImportError before torch 2.10

    return varlen_attn


def _signature() -> VarlenSignature | None:
    try:
        return VarlenSignature.of(_varlen_attn())
    except ImportError:
        return None


@functools.cache
def _available() -> str | None:
    if _signature() is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen.varlen_attn (needs torch >= 2.10)"
    if not torch.cuda.is_available():
        return "varlen_attn runs on CUDA only"
    q = torch.zeros(8, 1, 64, device="cuda", dtype=torch.float16)
    cu = torch.tensor([0, 8], dtype=torch.int32, device="cuda")
    try:
        _varlen_attn()(q, q, q, cu, cu, 8, 8)
    except RuntimeError as exc:
        return f"varlen_attn cannot run here: {str(exc).splitlines()[0]}"
    return None


def torch_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=None, scale=None,
                 window=None, return_lse=False):
    """Packed call on [T, H, D]; with ``return_lse``, (out, lse [H, T])."""
    check_packed_call(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, HEAD_DIMS)
    kwargs = _signature().keywords(causal=causal is not None, scale=scale, gqa=q.shape[1] != k.shape[1],
                                   window=window, return_lse=return_lse)
    if q.shape[0] == 0 or k.shape[0] == 0:
        # nothing to attend to (or no query): rows of 0, and dQ = 0
        return (q * 0, torch.full((q.shape[1], q.shape[0]), float("-inf"), device=q.device)) if return_lse else q * 0
    result = _varlen_attn()(q, k, v, cu_seqlens_q, cu_seqlens_k, max(max_seqlen_q, 1), max(max_seqlen_k, 1),
                            **kwargs)
    return result  # with return_lse: (out, lse [H, T])


def torch_varlen_dense(q, k, v, *, key_padding_mask=None, causal=None, scale=None, window=None, return_lse=False):
    """Dense call through the packed one."""
    check_dense_inputs(q, k, v, key_padding_mask, head_dims=HEAD_DIMS)
    return dense_through_varlen(torch_varlen, q, k, v, key_padding_mask, causal=causal, scale=scale, window=window,
                                return_lse=return_lse)


def _capabilities() -> Capabilities:
    signature = _signature()
    causal_ok = signature is not None and signature.causal_keyword is not None
    return Capabilities(
        devices={"cuda"}, dtypes=HALF, head_dims=HEAD_DIMS, causal={BOTTOM_RIGHT} if causal_ok else set(),
        key_padding_mask=True, mask_with_causal=False, varlen=True,
        gqa=bool(signature and signature.enable_gqa), custom_scale=bool(signature and signature.scale),
        window=bool(signature and signature.window), lse="e" if signature and signature.lse else None,
        backward=True, memory_efficient=True,
        notes=(f"torch {torch.__version__}: causal via "
               f"{signature.causal_keyword if signature else 'nothing'}, scale "
               f"{'yes' if signature and signature.scale else 'no'}, enable_gqa "
               f"{'yes' if signature and signature.enable_gqa else 'no'}, lse "
               f"{'yes' if signature and signature.lse else 'no'}; FlashAttention kernel: causal is "
               "bottom-right aligned; key padding drops the hidden keys, so causal or a window with key padding "
               "is refused; seqused_k and block_table (KV cache, torch 2.13) not declared: not run here"),
    )


register(
    Implementation(
        name="torch-varlen",
        forward=torch_varlen_dense,
        varlen_forward=torch_varlen,
        capabilities=_capabilities(),
        available=_available,
        description="torch.nn.attention.varlen.varlen_attn (packed; dense batches packed by the adapter)",
    )
)
