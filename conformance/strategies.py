"""Hypothesis strategies that draw cases inside an implementation's declared capabilities.

Drawing inside the manifest (rather than skipping examples) keeps every example meaningful. Lengths are kept small
so the CI profile stays fast; lengths that are not block multiples come up naturally.
"""

from __future__ import annotations

from hypothesis import strategies as st

from attnconf.capabilities import Capabilities
from attnconf.inputs import DenseCase, VarlenCase

SMALL_DTYPES_FIRST = ("float32", "float16", "bfloat16")


def _dtype(caps: Capabilities):
    ordered = sorted(caps.dtypes, key=lambda d: SMALL_DTYPES_FIRST.index(str(d).replace("torch.", "")))
    return st.sampled_from(ordered)


def _heads(caps: Capabilities):
    kv = st.integers(1, 2)
    group = st.sampled_from([1, 2, 3]) if caps.gqa else st.just(1)
    return st.tuples(kv, group).map(lambda t: (t[0] * t[1], t[0]))


def _causal(caps: Capabilities):
    return st.sampled_from([None] + sorted(caps.causal))


@st.composite
def dense_cases(draw, caps: Capabilities, *, max_len: int = 80) -> DenseCase:
    heads_q, heads_kv = draw(_heads(caps))
    mask_kinds = [None, "random", "prefix"] if caps.key_padding_mask else [None]
    limit = min(max_len, caps.max_seqlen or max_len)
    causal = draw(_causal(caps))
    seqlen_q = draw(st.integers(1, limit))
    square = causal is not None and not caps.causal_unequal
    return DenseCase(
        batch=draw(st.integers(1, 2)),
        seqlen_q=seqlen_q,
        seqlen_k=seqlen_q if square else draw(st.integers(1, limit)),
        heads_q=heads_q,
        heads_kv=heads_kv,
        dtype=draw(_dtype(caps)),
        causal=causal,
        mask=draw(st.sampled_from(mask_kinds if causal is None or caps.mask_with_causal else [None])),
    )


@st.composite
def varlen_cases(draw, caps: Capabilities, *, max_len: int = 40, max_batch: int = 4) -> VarlenCase:
    heads_q, heads_kv = draw(_heads(caps))
    batch = draw(st.integers(1, max_batch))
    limit = min(max_len, caps.max_seqlen or max_len)
    causal = draw(_causal(caps))
    lengths_q = draw(st.lists(st.integers(0, limit), min_size=batch, max_size=batch))
    if draw(st.booleans()) or (causal is not None and not caps.causal_unequal):
        lengths_k = lengths_q
    else:
        lengths_k = draw(st.lists(st.integers(0, limit), min_size=batch, max_size=batch))
    return VarlenCase(
        lengths_q=tuple(lengths_q),
        lengths_k=tuple(lengths_k),
        heads_q=heads_q,
        heads_kv=heads_kv,
        dtype=draw(_dtype(caps)),
        causal=causal,
    )
