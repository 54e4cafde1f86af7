"""A value head dim different from the query/key head dim (HEAD-3): an optional capability."""

from __future__ import annotations

import pytest

from attnconf.capabilities import BOTTOM_RIGHT, TOP_LEFT
from attnconf.inputs import DenseCase


@pytest.mark.contract("HEAD-3")
@pytest.mark.parametrize("head_dim_v", [32, 128])
@pytest.mark.parametrize("causal,mask", [(None, None), (TOP_LEFT, None), (BOTTOM_RIGHT, "random"), (None, "empty_batch")])
def test_value_head_dim(dense, head_dim_v, causal, mask):
    dense(DenseCase(seqlen_q=29, seqlen_k=41, heads_q=4, heads_kv=2, head_dim_v=head_dim_v, causal=causal, mask=mask))


@pytest.mark.contract("HEAD-3")
@pytest.mark.contract("GRAD-1")
@pytest.mark.parametrize("head_dim_v", [32, 128])
def test_value_head_dim_gradients(dense, head_dim_v):
    dense(DenseCase(seqlen_q=33, seqlen_k=33, heads_q=4, heads_kv=2, head_dim_v=head_dim_v, causal=BOTTOM_RIGHT,
                    backward=True))
