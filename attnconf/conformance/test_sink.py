"""Attention sinks (SINK-*): an optional capability, a logit per query head that adds ``exp(sink)`` to every row's
softmax denominator (flash-attn 4's ``learnable_sink``, gpt-oss)."""

from __future__ import annotations

import pytest

from attnconf.capabilities import BOTTOM_RIGHT
from attnconf.inputs import DenseCase


@pytest.mark.contract("SINK-1")
@pytest.mark.parametrize("mask,causal", [(None, None), ("empty_batch", None), (None, BOTTOM_RIGHT)])
@pytest.mark.parametrize("backward", [False, True])
def test_sink(dense, mask, causal, backward):
    # empty_batch: rows with no visible key give all their weight to the sink (out 0)
    dense(DenseCase(seqlen_q=25, seqlen_k=39, heads_q=4, heads_kv=2, sink=True, mask=mask, causal=causal,
                    backward=backward))


@pytest.mark.contract("SINK-2")
@pytest.mark.parametrize("mask", [None, "empty_batch"])
def test_sink_in_the_lse(dense, mask):
    dense(DenseCase(seqlen_q=25, seqlen_k=39, heads_q=4, heads_kv=4, sink=True, lse=True, mask=mask))
