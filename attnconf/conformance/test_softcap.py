"""Score softcapping (SOFTCAP-*): an optional capability, ``cap * tanh(s / cap)`` on the scaled scores, before the mask."""

from __future__ import annotations

import pytest

from attnconf.capabilities import BOTTOM_RIGHT, TOP_LEFT
from attnconf.inputs import DenseCase

# magnitude 3 makes the scaled scores ~N(0, 9): every cap below bends them (30 and 50 are Gemma's, nearly linear)
CAPS = [0.5, 5.0, 30.0]


@pytest.mark.contract("SOFTCAP-1")
@pytest.mark.parametrize("cap", CAPS)
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(33, 33), (17, 45)])
def test_softcap(dense, cap, seqlen_q, seqlen_k):
    dense(DenseCase(seqlen_q=seqlen_q, seqlen_k=seqlen_k, softcap=cap, magnitude=3.0))


@pytest.mark.contract("SOFTCAP-1")
@pytest.mark.parametrize("cap", [0.5, 5.0])
@pytest.mark.parametrize("mask", ["random", "empty_batch"])
def test_softcap_keeps_masked_keys_hidden(dense, cap, mask):
    # a cap applied after the mask would turn -inf into -cap: masked keys, and rows with none visible, would attend
    dense(DenseCase(seqlen_q=21, seqlen_k=38, softcap=cap, magnitude=3.0, mask=mask))
    dense(DenseCase(seqlen_q=21, seqlen_k=38, softcap=cap, magnitude=3.0, causal=BOTTOM_RIGHT))


@pytest.mark.contract("SOFTCAP-2")
@pytest.mark.parametrize("cap", [0.5, 5.0])
@pytest.mark.parametrize("causal", [None, TOP_LEFT])
def test_softcap_gradients(dense, cap, causal):
    dense(DenseCase(seqlen_q=37, seqlen_k=37, heads_q=4, heads_kv=2, softcap=cap, magnitude=3.0, causal=causal,
                    backward=True))
    dense(DenseCase(seqlen_q=19, seqlen_k=44, softcap=cap, magnitude=3.0, mask="random", backward=True))
