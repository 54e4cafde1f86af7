"""Causal masking and its alignment when the query and key lengths differ."""

from __future__ import annotations

import pytest

from attnconf.capabilities import ALIGNMENTS, BOTTOM_RIGHT, TOP_LEFT
from attnconf.inputs import DenseCase

UNEQUAL = [(17, 45), (45, 17), (1, 64), (64, 1)]


@pytest.mark.contract("CAUSAL-1")
@pytest.mark.parametrize("alignment", ALIGNMENTS)
@pytest.mark.parametrize("seqlen", [1, 33, 97])
def test_square_causal(dense, alignment, seqlen):
    dense(DenseCase(seqlen_q=seqlen, seqlen_k=seqlen, causal=alignment))


@pytest.mark.contract("CAUSAL-2")
@pytest.mark.parametrize("seqlen_q,seqlen_k", UNEQUAL)
def test_bottom_right_alignment(dense, seqlen_q, seqlen_k):
    dense(DenseCase(seqlen_q=seqlen_q, seqlen_k=seqlen_k, causal=BOTTOM_RIGHT))


@pytest.mark.contract("CAUSAL-3")
@pytest.mark.parametrize("seqlen_q,seqlen_k", UNEQUAL)
def test_top_left_alignment(dense, seqlen_q, seqlen_k):
    dense(DenseCase(seqlen_q=seqlen_q, seqlen_k=seqlen_k, causal=TOP_LEFT))
