"""Sliding-window attention (WINDOW-*): an optional capability, aligned bottom-right as flash-attn's window_size."""

from __future__ import annotations

import pytest

from attnconf.capabilities import BOTTOM_RIGHT
from attnconf.inputs import DenseCase, VarlenCase

# (left, right): both sides, one side unbounded, window 0, wider than the sequence
WINDOWS = [(4, 2), (0, 0), (7, -1), (-1, 3), (1, 0), (200, 200)]


@pytest.mark.contract("WINDOW-1")
@pytest.mark.parametrize("window", WINDOWS, ids=str)
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(33, 33), (17, 45), (45, 17)])
def test_sliding_window(dense, window, seqlen_q, seqlen_k):
    dense(DenseCase(seqlen_q=seqlen_q, seqlen_k=seqlen_k, window=window))


@pytest.mark.contract("WINDOW-1")
@pytest.mark.parametrize("window", [(5, 0), (3, 3)], ids=str)
@pytest.mark.parametrize("mask", ["random", "prefix"])
def test_window_with_padding_and_causal(dense, window, mask):
    dense(DenseCase(seqlen_q=29, seqlen_k=41, window=window, mask=mask))
    dense(DenseCase(seqlen_q=29, seqlen_k=41, window=window, causal=BOTTOM_RIGHT))


@pytest.mark.contract("WINDOW-1")
@pytest.mark.contract("GRAD-1")
@pytest.mark.parametrize("window", [(6, 2), (0, 0)], ids=str)
def test_window_gradients(dense, window):
    dense(DenseCase(seqlen_q=37, seqlen_k=53, heads_q=4, heads_kv=2, window=window, backward=True))


@pytest.mark.contract("WINDOW-2")
@pytest.mark.parametrize("window", [(3, 1), (0, 0), (9, -1)], ids=str)
@pytest.mark.parametrize("causal", [None, BOTTOM_RIGHT])
def test_window_in_packed_batches(varlen, window, causal):
    # a sequence shorter than the window, an empty one, Sq_b > Sk_b (rows before the window see nothing)
    varlen(VarlenCase(lengths_q=(7, 20, 0, 13), lengths_k=(31, 2, 4, 13), window=window, causal=causal))
    varlen(VarlenCase(lengths_q=(9, 30), lengths_k=(9, 30), window=window, causal=causal, backward=True))
