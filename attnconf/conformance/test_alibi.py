"""ALiBi (ALIBI-*): an optional capability, the bias ``-slope * |i + Sk - Sq - j|`` on the scaled scores."""

from __future__ import annotations

import pytest

from attnconf.capabilities import BOTTOM_RIGHT, TOP_LEFT
from attnconf.inputs import DenseCase


@pytest.mark.contract("ALIBI-1")
@pytest.mark.parametrize("causal", [None, BOTTOM_RIGHT, TOP_LEFT])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(33, 33), (17, 45), (45, 17)])
def test_alibi_per_head(dense, causal, seqlen_q, seqlen_k):
    # 4 heads with distinct slopes: a bias given to the wrong head changes the result
    dense(DenseCase(seqlen_q=seqlen_q, seqlen_k=seqlen_k, heads_q=4, heads_kv=4, alibi="heads", causal=causal))


@pytest.mark.contract("ALIBI-1")
@pytest.mark.parametrize("causal", [None, BOTTOM_RIGHT])
def test_alibi_per_head_gradients(dense, causal):
    dense(DenseCase(seqlen_q=29, seqlen_k=41, heads_q=4, heads_kv=2, alibi="heads", causal=causal, mask="random",
                    backward=True))


@pytest.mark.contract("ALIBI-2")
@pytest.mark.parametrize("causal", [None, BOTTOM_RIGHT])
@pytest.mark.parametrize("backward", [False, True])
def test_alibi_per_batch_and_head(dense, causal, backward):
    dense(DenseCase(batch=3, seqlen_q=23, seqlen_k=31, heads_q=4, heads_kv=4, alibi="batch_heads", causal=causal,
                    backward=backward))
