"""Gradients dQ, dK, dV against the float64 golden, with masks, packed batches and grouped heads."""

from __future__ import annotations

import pytest
import torch

from attnconf.capabilities import BOTTOM_RIGHT, TOP_LEFT
from attnconf.failures import NotExact
from attnconf.inputs import DenseCase, VarlenCase, make_dense_inputs

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.contract("GRAD-1")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("causal", [None, BOTTOM_RIGHT, TOP_LEFT])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(65, 65), (31, 90)])
def test_gradients(dense, dtype, causal, seqlen_q, seqlen_k):
    dense(DenseCase(seqlen_q=seqlen_q, seqlen_k=seqlen_k, dtype=dtype, causal=causal, backward=True))


@pytest.mark.contract("GRAD-2")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("causal", [None, BOTTOM_RIGHT])
def test_masked_keys_get_zero_gradients(impl, device, generator, dense, dtype, causal):
    case = DenseCase(batch=2, seqlen_q=37, seqlen_k=61, mask="random", dtype=dtype, causal=causal, backward=True)
    inputs = make_dense_inputs(case, device, generator)
    outcome = dense(case, inputs)
    hidden = ~inputs.key_padding_mask
    for name in ("dk", "dv"):
        grads = outcome.grads[name][hidden]
        bad = (grads != 0).sum().item()
        if bad:
            raise NotExact(f"{name} of masked keys: {bad} non-zero value(s), max {grads.abs().max().item():.3e}")


@pytest.mark.contract("GRAD-2")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("causal", [None, BOTTOM_RIGHT])
def test_packed_gradients(varlen, dtype, causal):
    varlen(VarlenCase(lengths_q=(9, 0, 40, 3), lengths_k=(20, 4, 40, 1), dtype=dtype, causal=causal, backward=True))


@pytest.mark.contract("GQA-1")
@pytest.mark.parametrize("heads_q,heads_kv", [(4, 2), (6, 2), (4, 1), (8, 2)])
@pytest.mark.parametrize("causal", [None, BOTTOM_RIGHT])
def test_grouped_query_attention(impl, device, dense, heads_q, heads_kv, causal):
    backward = impl.capabilities.on(device).backward
    dense(DenseCase(heads_q=heads_q, heads_kv=heads_kv, causal=causal, backward=backward))


@pytest.mark.contract("GQA-1")
def test_grouped_query_attention_packed(impl, device, varlen):
    backward = impl.capabilities.on(device).backward
    varlen(VarlenCase(lengths_q=(7, 30), lengths_k=(7, 30), heads_q=6, heads_kv=2, backward=backward))


@pytest.mark.contract("GQA-1")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["dense", "packed"])
def test_short_query_whose_head_group_spans_many_rows(impl, device, dense, varlen, dtype, layout):
    """Fewer than 128 query rows, but more than 128 once a kv head's group of query heads is stacked: the shape of
    decoding kernels that fold the group into the row dimension (one batch element, so the batch is fixed)."""
    backward = impl.capabilities.on(device).backward
    if layout == "dense":
        dense(DenseCase(batch=1, seqlen_q=69, seqlen_k=69, heads_q=2, heads_kv=1, dtype=dtype, backward=backward))
    else:
        lengths = (0, 29, 17, 23)
        varlen(VarlenCase(lengths_q=lengths, lengths_k=lengths, heads_q=4, heads_kv=1, dtype=dtype, backward=backward))
