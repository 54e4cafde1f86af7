"""Hypothesis strategies that draw cases inside an implementation's declared capabilities.

Drawing inside the manifest (rather than skipping examples) keeps every example meaningful. Everything a case can
vary is drawn: batch, lengths (mostly short, sometimes long enough to span several tiles of any plausible tile size,
never a block multiple on purpose), heads and GQA groups, head dims, dtype, causal alignment, mask, custom scale,
large logits, values that share an offset, and backward. The fixed tests keep the curated edge cases.
"""

from __future__ import annotations

from hypothesis import strategies as st

from attnconf.capabilities import REQUIRED_HEAD_DIM, Capabilities
from attnconf.inputs import DenseCase, VarlenCase

SMALL_DTYPES_FIRST = ("float32", "float16", "bfloat16")
# head dims drawn for an implementation that declares every head dim
ANY_HEAD_DIMS = (16, 32, 64, 80, 128)
LONG_LENGTHS = (129, 300, 577)  # past one, two and four 128-wide tiles, none a block multiple


def _dtype(caps: Capabilities):
    ordered = sorted(caps.dtypes, key=lambda d: SMALL_DTYPES_FIRST.index(str(d).replace("torch.", "")))
    return st.sampled_from(ordered)


def _heads(caps: Capabilities):
    kv = st.integers(1, 2)
    group = st.sampled_from([1, 2, 3]) if caps.gqa else st.just(1)
    return st.tuples(kv, group).map(lambda t: (t[0] * t[1], t[0]))


def _head_dim(caps: Capabilities):
    """A declared head dim, 64 first (hypothesis shrinks towards it)."""
    declared = sorted(caps.head_dims) if caps.head_dims is not None else list(ANY_HEAD_DIMS)
    return st.sampled_from(sorted(declared, key=lambda d: d != REQUIRED_HEAD_DIM))


def _causal(caps: Capabilities):
    return st.sampled_from([None] + sorted(caps.causal))


def _length(limit: int, short: int, shortest: int = 1):
    """Mostly shortest..short; one draw in five from the long lengths the implementation allows."""
    long = [n for n in LONG_LENGTHS if n <= limit]
    small = st.integers(shortest, max(shortest, min(short, limit)))
    return st.one_of(small, small, small, small, st.sampled_from(long)) if long else small


def _scale(caps: Capabilities):
    return st.sampled_from([None, None, 0.3, 1.0]) if caps.custom_scale else st.just(None)


def _backward(caps: Capabilities):
    return st.booleans() if caps.backward else st.just(False)


@st.composite
def dense_cases(draw, caps: Capabilities, *, max_len: int = 600, short: int = 80) -> DenseCase:
    heads_q, heads_kv = draw(_heads(caps))
    mask_kinds = [None, "random", "prefix"] if caps.key_padding_mask else [None]
    limit = min(max_len, caps.max_seqlen or max_len)
    causal = draw(_causal(caps))
    square = causal is not None and not caps.causal_unequal
    seqlen_q = draw(_length(limit, short, caps.min_seqlen_k if square else 1))
    seqlen_k = seqlen_q if square else draw(_length(limit, short, caps.min_seqlen_k))
    long = max(seqlen_q, seqlen_k) > short
    return DenseCase(
        batch=1 if long else draw(st.integers(1, 2)),
        seqlen_q=seqlen_q,
        seqlen_k=seqlen_k,
        heads_q=heads_q,
        heads_kv=heads_kv,
        head_dim=draw(_head_dim(caps)),
        dtype=draw(_dtype(caps)),
        causal=causal,
        mask=draw(st.sampled_from(mask_kinds if causal is None or caps.mask_with_causal else [None])),
        scale=draw(_scale(caps)),
        magnitude=draw(st.sampled_from([1.0, 1.0, 3.0, 10.0])),
        value_offset=draw(st.sampled_from([0.0, 0.0, 3.0])),
        backward=draw(_backward(caps)),
    )


@st.composite
def varlen_cases(draw, caps: Capabilities, *, max_len: int = 300, short: int = 40, max_batch: int = 4) -> VarlenCase:
    heads_q, heads_kv = draw(_heads(caps))
    batch = draw(st.integers(1, max_batch))
    limit = min(max_len, caps.max_seqlen or max_len)
    causal = draw(_causal(caps))
    length = st.one_of(st.just(0), _length(limit, short, caps.min_seqlen_k))  # empty sequences too
    lengths_q = draw(st.lists(length, min_size=batch, max_size=batch))
    if draw(st.booleans()) or (causal is not None and not caps.causal_unequal):
        lengths_k = lengths_q
    else:
        lengths_k = draw(st.lists(length, min_size=batch, max_size=batch))
    return VarlenCase(
        lengths_q=tuple(lengths_q),
        lengths_k=tuple(lengths_k),
        heads_q=heads_q,
        heads_kv=heads_kv,
        head_dim=draw(_head_dim(caps)),
        dtype=draw(_dtype(caps)),
        causal=causal,
        scale=draw(_scale(caps)),
        backward=draw(_backward(caps)),
    )
