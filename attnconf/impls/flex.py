"""FlexAttention (``torch.nn.attention.flex_attention``), compiled and eager, registered as two implementations.

Every case goes through one mask function, so the compiled kernel is the same whatever the mask: each query and
key carries a document id and a position, and

    visible(b, q, kv) = doc_q[b, q] == doc_k[b, kv]  and  first_q[b, q] <= pos_k[b, kv] <= pos_q[b, q]

- dense: every query is in document 0, a padded key in document -1 (so nothing sees it); ``pos_q`` is the query
  index shifted by the causal alignment's offset (0 top-left, Sk - Sq bottom-right), or a huge number without
  causal masking, lowered to the window's right end; ``first_q`` the window's left end (None
  without a window, and then not read);
- packed (varlen): a batch of one; the document is the sequence's index and positions count from each sequence's
  start, so causal alignment holds per sequence (the seeds' "document masks").

The mask function reads only tensors (no Python numbers), so ``torch.compile(dynamic=True)`` keeps one graph
across shapes and masks; a new graph is compiled for a new dtype, GQA on/off, a new custom scale value, a
query length of 1, or a short grouped query steered off inductor's decoding kernel (``kernel_options_for``).
Block masks are cached (``BlockMaskCache``) on what determines them; see its docstring for what forces a rebuild.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections import OrderedDict
from typing import Callable, Hashable

import torch

from attnconf import BOTTOM_RIGHT, TOP_LEFT, Capabilities, Implementation, compat, masks, register
from attnconf.validation import check_dense_inputs, check_feature_inputs, check_packed_call

try:
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
except ImportError:  # torch < 2.5
    flex_attention = None
try:
    from torch.nn.attention.flex_attention import FlexKernelOptions

    _KERNEL_OPTION_NAMES = frozenset(FlexKernelOptions.__annotations__)
except ImportError:  # older torch: no typed options; FORCE_USE_FLEX_ATTENTION is the knob there
    _KERNEL_OPTION_NAMES = frozenset()

HEAD_DIMS = frozenset({32, 64, 128})
NOT_CAUSAL = 1 << 30  # a query position past every key: no causal restriction
NO_WINDOW_START = -(1 << 30)  # a window start before every key: no window
PADDED_KEY_DOC = -1  # the document of a masked key: no query belongs to it


# ---- visibility as tensors ---------------------------------------------------------------------------------------


def _window_ends(centre, pos_q, window):
    """(first_q, pos_q): the window (left, right) around each query's bottom-right-aligned key ``centre``;
    first_q is None without a window (the mask function then reads one query-side tensor fewer)."""
    first_q = None
    if window is not None:
        first_q = torch.full_like(centre, NO_WINDOW_START)
        left, right = window
        if left >= 0:
            first_q = centre - left
        if right >= 0:
            pos_q = torch.minimum(pos_q, centre + right)
    return first_q, pos_q


def dense_visibility(batch, seqlen_q, seqlen_k, key_padding_mask, causal, device, window=None):
    """(doc_q, first_q, pos_q, doc_k, pos_k), int32, each [B, S].

    flex evaluates the mask function with the batch index of the query even for a block mask built with batch
    size 1, so the tensors keep the full batch dimension.
    """
    offset = {None: NOT_CAUSAL, TOP_LEFT: 0, BOTTOM_RIGHT: seqlen_k - seqlen_q}[causal]
    index_q = torch.arange(seqlen_q, dtype=torch.int32, device=device)
    pos_q = (index_q + offset).repeat(batch, 1)
    first_q, pos_q = _window_ends((index_q + seqlen_k - seqlen_q).repeat(batch, 1), pos_q, window)
    pos_k = torch.arange(seqlen_k, dtype=torch.int32, device=device).repeat(batch, 1)
    doc_q = torch.zeros(batch, seqlen_q, dtype=torch.int32, device=device)
    if key_padding_mask is None:
        doc_k = torch.zeros(batch, seqlen_k, dtype=torch.int32, device=device)
    else:
        doc_k = torch.where(key_padding_mask, 0, PADDED_KEY_DOC).to(torch.int32)
    return doc_q, first_q, pos_q, doc_k, pos_k


def packed_visibility(lengths_q, lengths_k, causal, device, window=None):
    """(doc_q, first_q, pos_q, doc_k, pos_k) of a packed batch seen as one sequence of documents, each [1, T]."""

    def docs_and_positions(lengths):
        lengths_t = torch.tensor(lengths, dtype=torch.int64)
        docs = torch.repeat_interleave(torch.arange(len(lengths)), lengths_t)
        starts = torch.repeat_interleave(torch.cumsum(lengths_t, 0) - lengths_t, lengths_t)
        return docs, torch.arange(int(lengths_t.sum())) - starts

    doc_q, index_q = docs_and_positions(lengths_q)
    doc_k, pos_k = docs_and_positions(lengths_k)
    centre = index_q + (torch.tensor(lengths_k) - torch.tensor(lengths_q))[doc_q]  # per sequence: + Sk_b - Sq_b
    if causal is None:
        pos_q = torch.full_like(index_q, NOT_CAUSAL)
    else:
        pos_q = centre if causal == BOTTOM_RIGHT else index_q
    first_q, pos_q = _window_ends(centre, pos_q, window)
    return tuple(None if t is None else t.to(device=device, dtype=torch.int32)[None]
                 for t in (doc_q, first_q, pos_q, doc_k, pos_k))


def visibility_mask_mod(doc_q, first_q, pos_q, doc_k, pos_k):
    """The one mask function; with a window (``first_q`` not None) it also bounds the keys from below.

    Compiled on the CPU, a mask that reads a third query-side tensor fails inductor's own bounds check whenever
    Sq != Sk ("index out of bounds: 0 <= tmp16 < cur_kvSplitSize", torch 2.13): flex-compiled declares windows on
    CUDA only.
    """
    if first_q is None:
        def mask_mod(b, h, q_idx, kv_idx):
            return (doc_q[b, q_idx] == doc_k[b, kv_idx]) & (pos_k[b, kv_idx] <= pos_q[b, q_idx])
    else:
        def mask_mod(b, h, q_idx, kv_idx):
            key = pos_k[b, kv_idx]
            return (doc_q[b, q_idx] == doc_k[b, kv_idx]) & (key <= pos_q[b, q_idx]) & (key >= first_q[b, q_idx])

    return mask_mod


# ---- block masks, built once per key --------------------------------------------------------------------------


class BlockMaskCache:
    """Least-recently-used block masks, keyed on everything that determines them.

    - no key-padding mask: (device, B, Sq, Sk, causal alignment);
    - key-padding mask: the same plus the mask's contents (copied to the host for the key, a device sync on
      CUDA): a new mask, or the same tensor changed in place, gives a new key;
    - packed batches: (device, cu_seqlens_q, cu_seqlens_k, causal alignment) by value.
    A new batch size, sequence length, alignment, padding pattern or set of sequence lengths forces a rebuild. The cache owns
    the tensors its masks read, so a caller changing its own tensors later cannot change a cached mask.
    """

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._masks: OrderedDict[Hashable, BlockMask] = OrderedDict()
        self.builds = 0  # how many block masks were built (a rebuild counts), for tests

    def get(self, key: Hashable, build: Callable[[], BlockMask]) -> BlockMask:
        if key in self._masks:
            self._masks.move_to_end(key)
            return self._masks[key]
        mask = build()
        self.builds += 1
        self._masks[key] = mask
        if len(self._masks) > self.capacity:
            self._masks.popitem(last=False)
        return mask

    def clear(self) -> None:
        self._masks.clear()
        self.builds = 0


BLOCK_MASKS = BlockMaskCache()


def _build(visibility, seqlen_q, seqlen_k, device) -> BlockMask:
    batch = visibility[0].shape[0]
    return create_block_mask(visibility_mask_mod(*visibility), batch, None, seqlen_q, seqlen_k, device=device)


def dense_block_mask(batch, seqlen_q, seqlen_k, key_padding_mask, causal, device, window=None) -> BlockMask:
    padding_key = None
    if key_padding_mask is not None:
        padding_key = (tuple(key_padding_mask.shape), key_padding_mask.cpu().numpy().tobytes())
    key = ("dense", str(device), batch, seqlen_q, seqlen_k, causal, padding_key, window)
    return BLOCK_MASKS.get(
        key,
        lambda: _build(dense_visibility(batch, seqlen_q, seqlen_k, key_padding_mask, causal, device, window),
                       seqlen_q, seqlen_k, device),
    )


def packed_block_mask(lengths_q, lengths_k, causal, device, window=None) -> BlockMask:
    key = ("packed", str(device), tuple(lengths_q), tuple(lengths_k), causal, window)
    return BLOCK_MASKS.get(
        key,
        lambda: _build(packed_visibility(lengths_q, lengths_k, causal, device, window), sum(lengths_q),
                       sum(lengths_k), device),
    )


# ---- the kernel call ------------------------------------------------------------------------------------------


@functools.cache
def _compiled_flex():
    return torch.compile(flex_attention, dynamic=True)


def _compile_settings(device_type: str):
    """Settings for compiled calls: no silent fallback anywhere, and dynamic shapes that survive CPU code generation.

    - a higher recompile limit (256) that fails loudly when hit: past dynamo's limit (8) the call would silently run
      uncompiled, and this implementation would no longer be what it claims;
    - CPU only: duck shaping off, because with it a mask tensor of length Sk shares Sk's symbol and inductor's CPU
      flex template emits C++ that does not compile (undeclared ``cur_kvSplitSize7``, torch 2.13); and
      size-oblivious sizes, so batch 1 or a single block do not each compile their own graph (every graph costs
      seconds of C++ compilation there). CUDA keeps torch's defaults.
    """
    import torch._dynamo.config as dynamo_config
    import torch.fx.experimental._config as shape_config

    settings = [(dynamo_config, dict(recompile_limit=256, cache_size_limit=256, fail_on_recompile_limit_hit=True,
                                     fail_on_cache_limit_hit=True))]
    if device_type == "cpu":
        settings.append((shape_config, dict(use_duck_shape=False, backed_size_oblivious=True)))
    stack = contextlib.ExitStack()
    for config, wanted in settings:
        known = {name: value for name, value in wanted.items() if hasattr(config, name)}
        stack.enter_context(config.patch(**known))
    return stack


def _separate_buffers(q, k, v):
    """Copies of k and v where they share memory with q (or each other).

    Compiled flex has been seen rejecting q, k, v that are one buffer (the project's field notes); not reproduced on
    torch 2.13's CPU path, kept because the copy costs something only in that case.
    """
    shared = lambda a, b: a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()  # noqa: E731
    if shared(k, q):
        k = k.clone()
    if shared(v, q) or shared(v, k):
        v = v.clone()
    return q, k, v


def kernel_options_for(device_type: str, heads_q: int, heads_kv: int, seqlen_q: int, block_rows: int) -> dict | None:
    """None (torch's defaults), or options that keep inductor off its flex-decoding kernel where that has no tile.

    On CUDA, inductor lowers a short query (Sq < 128) with a power-of-two head group to its decoding kernel, whose
    row tile is the next power of two of Sq x group; past the block mask's row block (``block_rows``, 128) that tile
    does not divide the block and no kernel is left: ``NoValidChoicesError`` (torch 2.11 on an H100, e.g. packed
    lengths summing to 69 with 2 query heads per kv head; notes/flex-compiled.md). There the main flex kernel is
    asked for instead. Which graph a shape lands in depends on which shape compiled first, so the rule looks at the
    call itself, never at what ran before.
    """
    group = heads_q // heads_kv
    if device_type != "cuda" or group == 1 or not 0 < seqlen_q < 128 or seqlen_q * group <= block_rows:
        return None
    return {"BACKEND": "TRITON"} if "BACKEND" in _KERNEL_OPTION_NAMES else {"FORCE_USE_FLEX_ATTENTION": True}


def _flex(q, k, v, block_mask, scale, *, compiled: bool, score_mod=None, return_lse: bool = False):
    """flex_attention on [B, H, S, D] views."""
    gqa = q.shape[1] != k.shape[1]
    lse = dict(return_lse=True) if return_lse else {}
    if compiled:
        q, k, v = _separate_buffers(q, k, v)
        options = kernel_options_for(q.device.type, q.shape[1], k.shape[1], q.shape[2], block_mask.BLOCK_SIZE[0])
        with _compile_settings(q.device.type):
            return _compiled_flex()(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale,
                                    enable_gqa=gqa, kernel_options=options, **lse)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
        return flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale, enable_gqa=gqa,
                              **lse)


def score_mod_for(softcap, alibi_slopes, seqlen_q: int, seqlen_k: int, device):
    """The ``score_mod`` of softcap and ALiBi: the predicates of ``attnconf/masks.py``, fed 0-dim tensors for the
    cap and the lengths, so a compiled graph does not specialise on (and recompile for) each value."""
    if softcap is None and alibi_slopes is None:
        return None
    as_tensor = lambda x, dtype: torch.tensor(x, dtype=dtype, device=device)  # noqa: E731
    return masks.score_modification(
        as_tensor(seqlen_q, torch.int64), as_tensor(seqlen_k, torch.int64),
        softcap_value=None if softcap is None else as_tensor(float(softcap), torch.float32),
        alibi_slopes=alibi_slopes)


def flex_dense(q, k, v, *, key_padding_mask=None, causal=None, scale=None, window=None, softcap=None,
               alibi_slopes=None, return_lse=False, compiled: bool):
    """Canonical dense call: [B, S, H, D] in and out (and the lse [B, H, Sq], natural log, with ``return_lse``)."""
    check_dense_inputs(q, k, v, key_padding_mask, head_dims=HEAD_DIMS, head_dims_v=HEAD_DIMS)
    batch, seqlen_q, seqlen_k = q.shape[0], q.shape[1], k.shape[1]
    check_feature_inputs(alibi_slopes, None, batch, q.shape[2], q.device)
    if compiled and q.device.type == "cpu" and batch > 1 and seqlen_q != seqlen_k:
        # compiled flex on the CPU (torch 2.13) reads the query-side mask tensors [B, Sq] with the key side's row
        # stride when Sq != Sk: batch element 0 is right, the others off by O(1) (found 2026-12-02 by DENSE-3 with
        # batch > 1; notes/flex-compiled.md). One element at a time is the path that is right.
        parts = [
            flex_dense(q[i : i + 1], k[i : i + 1], v[i : i + 1], causal=causal, scale=scale, compiled=True,
                       key_padding_mask=None if key_padding_mask is None else key_padding_mask[i : i + 1],
                       window=window, softcap=softcap, return_lse=return_lse,
                       alibi_slopes=alibi_slopes if alibi_slopes is None or alibi_slopes.dim() == 1
                       else alibi_slopes[i : i + 1])
            for i in range(batch)
        ]
        if not return_lse:
            return torch.cat(parts)
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    block_mask = dense_block_mask(batch, seqlen_q, seqlen_k, key_padding_mask, causal, q.device,
                                  None if window is None else tuple(window))
    score_mod = score_mod_for(softcap, alibi_slopes, seqlen_q, seqlen_k, q.device)
    result = _flex(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask, scale, compiled=compiled,
                   score_mod=score_mod, return_lse=return_lse)
    if not return_lse:
        return result.transpose(1, 2)
    out, lse = result
    return out.transpose(1, 2), lse


def flex_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=None, scale=None,
                window=None, compiled: bool):
    """Packed call: [T, H, D] in and out; the batch is one row of documents."""
    lengths_q, lengths_k = check_packed_call(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, head_dims=HEAD_DIMS
    )
    if q.shape[0] == 0 or k.shape[0] == 0:
        return q * 0  # no query, or no key for any query: every row is 0 (and so is dQ)
    block_mask = packed_block_mask(lengths_q, lengths_k, causal, q.device, None if window is None else tuple(window))
    as_batch = lambda t: t.unsqueeze(0).transpose(1, 2)  # noqa: E731  [T, H, D] -> [1, H, T, D]
    out = _flex(as_batch(q), as_batch(k), as_batch(v), block_mask, scale, compiled=compiled)
    return out.transpose(1, 2).squeeze(0)


# ---- registration -----------------------------------------------------------------------------------------------


def _available(compiled: bool):
    def available() -> str | None:
        if flex_attention is None:
            return f"torch {torch.__version__} has no torch.nn.attention.flex_attention (needs torch >= 2.5)"
        if compiled and not compat.at_least(2, 6) and not torch.cuda.is_available():
            return f"torch {torch.__version__} compiles FlexAttention for CUDA only (the CPU from torch 2.6)"
        if compiled and (reason := compat.inductor_cpp_reason()):
            return reason
        if compiled and (emulated := compat.emulated_cpu_capability()):
            return (f"compiled FlexAttention under an emulated SIMD level (ATEN_CPU_CAPABILITY: {emulated}): "
                    "inductor's CPU code then crashes or returns wrong numbers (torch 2.13, 2026-12-02: segfaults "
                    "and err/bound up to 6e4 on DENSE-1 and SOFTCAP-1 with avx2 on an AVX-512 machine), which is "
                    "torch's inconsistency, not a verdict on this wrapper")
        if compiled and (os.environ.get("ATEN_CPU_CAPABILITY") or not torch.cuda.is_available()):
            return _cpu_compile_probe(os.environ.get("ATEN_CPU_CAPABILITY"))
        return None

    return available


@functools.cache
def _cpu_compile_probe(capability: str | None) -> str | None:
    """Whether inductor can build flex's CPU kernel here: one small compiled call (its graph is the dynamic one the
    suite's calls reuse, so a run that goes on to test this implementation pays nothing more for it).

    - under an emulated SIMD level (``ATEN_CPU_CAPABILITY=default`` on an AVX2 machine, torch 2.13) inductor still
      emits the host's vector code (``at::vec::transpose_block``, ``pack_vnni2``), which the pinned build does not
      provide: every call fails to compile;
    - torch 2.6 cannot lower the CPU flex template with dynamic shapes at all (``LoweringException: TypeError:
      cannot determine truth value of Relational``, every length), and torch 2.7 and 2.8 generate C++ that does
      not compile (``expected primary-expression before ')' token``, with or without ``_compile_settings``; both
      seen under tox, 2026-12-01).
    That is torch's inconsistency, not a verdict on this wrapper, so the implementation says it cannot run.
    """
    q = torch.randn(1, 16, 1, 64)
    try:
        flex_dense(q, q.clone(), q.clone(), compiled=True)
    except Exception as exc:  # noqa: BLE001 (inductor raises several kinds)
        text = str(exc).splitlines()
        lines = ([line.split("error:", 1)[1].strip() for line in text if "error:" in line]
                 or [line.strip() for line in text if "Error" in line] or text[:1])
        where = f"with ATEN_CPU_CAPABILITY={capability}" if capability else f"on torch {torch.__version__}"
        return (f"compiled FlexAttention cannot build its CPU kernel {where}: "
                f"{type(exc).__name__}: {lines[0][:200] if lines else ''}")
    return None


def _eager_expected_failures() -> dict[str, str]:
    """Deviations of eager flex on the installed torch (strict: one that goes away on a version shows as XPASS)."""
    if compat.at_least(2, 10):
        return {}
    return {
        "conformance/test_stability.py::test_large_logits[flex-eager-30.0-torch.bfloat16]": (
            f"torch {torch.__version__} (before 2.10): eager flex_attention multiplies q and k in their own dtype and "
            "casts the scores to float32 after (math_attention in torch/_higher_order_ops/flex_attention.py; 2.10 "
            "casts q and k first), so bfloat16 logits of magnitude 30 carry bfloat16 rounding: err/bound 1.59 on "
            "torch 2.6 and 2.7 (tox, 2026-12-02); the other half-precision cases stay inside the bound (up to 0.84)"
        ),
    }


_COMMON = dict(
    devices={"cpu", "cuda"}, head_dims=HEAD_DIMS, causal={TOP_LEFT, BOTTOM_RIGHT}, key_padding_mask=True,
    varlen=True, gqa=True, backward=True, deterministic=True, softcap=True, alibi=True, lse="e", head_dims_v=HEAD_DIMS,
)
_WHAT_REBUILDS = (
    "block masks are cached on (B, Sq, Sk, causal alignment) plus the key-padding mask's contents, or on the packed "
    "batch's cu_seqlens: a new batch size, length, alignment, padding pattern or set of sequence lengths rebuilds one"
)

for _name, _compiled, _caps in (
    (
        "flex-compiled",
        True,
        Capabilities(
            **_COMMON, memory_efficient=True, window=True,
            # no window on the CPU: see visibility_mask_mod (inductor's CPU flex kernel, torch 2.13)
            overrides={"cpu": dict(backward=False, memory_efficient=False, dtypes={torch.float32}, lse=None,
                                   window=False)},
            notes=("torch.compile(flex_attention, dynamic=True): a new graph for each dtype, head counts, "
                   "stride pattern, custom scale value and Sq == 1; CUDA: a query shorter than 128 whose head "
                   "group spans more than 128 rows (Sq x Hq/Hkv) runs the main flex kernel (BACKEND='TRITON'), "
                   "because inductor's decoding kernel has no tile for it (NoValidChoicesError, torch 2.11); "
                   + _WHAT_REBUILDS + "; CPU: forward only "
                   "(torch has no flex backward on CPU) and without the lse (inductor's CPU flex: 'return_lse is not "
                   "supported yet', torch 2.13), float32 only: each graph costs 4-10 s of C++ "
                   "compilation on a 2-core machine and the suite needs about 40 of them across three dtypes "
                   "(flex-eager covers float16 and bfloat16 on CPU; CUDA declares all three)"),
        ),
    ),
    (
        "flex-eager",
        False,
        Capabilities(
            **_COMMON, window=True,
            overrides={"cpu": dict(backward=False)},
            notes=("flex_attention without torch.compile: materialises the [Sq, Sk] scores (quadratic memory); "
                   + _WHAT_REBUILDS + "; CPU: forward only (torch has no flex backward on CPU)"),
        ),
    ),
):
    register(
        Implementation(
            name=_name,
            forward=functools.partial(flex_dense, compiled=_compiled),
            varlen_forward=functools.partial(flex_varlen, compiled=_compiled),
            capabilities=_caps,
            available=_available(_compiled),
            description=("torch.nn.attention.flex_attention under torch.compile" if _compiled
                         else "torch.nn.attention.flex_attention, eager (unfused)"),
            expected_failures={} if _compiled else _eager_expected_failures(),
        )
    )
