"""Packed variable-length batches: per-sequence equivalence, isolation, edge lengths, padding, causal alignment."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attnconf.capabilities import ALIGNMENTS
from attnconf.checks import check_dense, run_varlen
from attnconf.failures import NotExact
from attnconf.inputs import DenseCase, Inputs, VarlenCase, make_varlen_inputs
from attnconf.varlen import pad, padding_mask
from .strategies import varlen_cases

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.contract("VARLEN-1")
@given(data=st.data(), seed=st.integers(0, 2**31))
def test_packed_equals_each_sequence_alone(impl, device, varlen, data, seed):
    case = data.draw(varlen_cases(impl.capabilities.on(device)), label="case")
    varlen(case, seed=seed)


@pytest.mark.contract("VARLEN-1")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_packed_batch(varlen, dtype):
    # one sequence of 1025 keys spans several tiles of any tile size; values sharing an offset do not average out,
    # so sums kept in a half dtype drift past the bound there (as in DTYPE-1's long rows)
    varlen(VarlenCase(lengths_q=(37, 5, 40, 13), lengths_k=(37, 5, 1025, 13), dtype=dtype, value_offset=3.0))


@pytest.mark.contract("VARLEN-2")
def test_no_leakage_across_sequences(impl, device, generator, require):
    case = VarlenCase(lengths_q=(20, 33, 9), lengths_k=(25, 33, 9))
    case = require(case)
    inputs = make_varlen_inputs(case, device, generator)
    before = run_varlen(impl, case, inputs).out
    lo_q, hi_q = inputs.cu_seqlens_q[1].item(), inputs.cu_seqlens_q[2].item()
    lo_k, hi_k = inputs.cu_seqlens_k[1].item(), inputs.cu_seqlens_k[2].item()
    for name, lo, hi in (("q", lo_q, hi_q), ("k", lo_k, hi_k), ("v", lo_k, hi_k)):
        t = getattr(inputs, name).clone()
        noise = torch.randn(t.shape, generator=generator).to(t) * 10
        keep = torch.zeros(t.shape[0], dtype=torch.bool, device=t.device)
        keep[lo:hi] = True
        setattr(inputs, name, torch.where(keep[:, None, None], t, noise))
    after = run_varlen(impl, case, inputs).out
    changed = (before[lo_q:hi_q] != after[lo_q:hi_q]).sum().item()
    if changed:
        raise NotExact(f"{changed} output values of sequence 1 changed when only sequences 0 and 2 changed")


@pytest.mark.contract("VARLEN-3")
@pytest.mark.parametrize(
    "lengths_q,lengths_k",
    [((0, 5, 1), (0, 5, 1)), ((1, 1, 1), (1, 1, 1)), ((3, 0, 7), (3, 4, 7)), ((4, 6), (0, 6)), ((0,), (0,))],
    ids=["empty-first", "all-length-1", "empty-query", "empty-keys", "all-empty"],
)
def test_empty_and_length_one_sequences(impl, device, varlen, lengths_q, lengths_k):
    varlen(VarlenCase(lengths_q=lengths_q, lengths_k=lengths_k, backward=impl.capabilities.on(device).backward))


@pytest.mark.contract("VARLEN-4")
def test_padded_batch_with_mask_equals_packed(impl, device, generator, record_comparison, require, varlen):
    case = VarlenCase(lengths_q=(12, 30, 1), lengths_k=(12, 30, 1))
    dense_case = DenseCase(batch=3, seqlen_q=30, seqlen_k=30, mask="prefix")
    case = require(case)
    dense_case = require(dense_case.replace(dtype=case.dtype))
    packed = make_varlen_inputs(case, device, generator)
    packed_out = varlen(case, packed).out
    lengths = list(case.lengths_q)
    padded = Inputs(
        q=pad(packed.q, lengths, 30), k=pad(packed.k, lengths, 30), v=pad(packed.v, lengths, 30),
        dout=pad(packed.dout, lengths, 30), key_padding_mask=padding_mask(lengths, 30, device=packed.q.device),
    )
    # Both representations are judged against the one definition, row for row; the padded rows beyond each
    # sequence's length are ignored by the dense golden's mask and carry no output.
    dense_out = check_dense(impl, dense_case, device, generator, record_comparison, padded).out
    assert dense_out.shape[:2] == (3, 30) and packed_out.shape[0] == sum(lengths)


@pytest.mark.contract("VARLEN-5")
@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_causal_alignment_per_sequence(impl, device, varlen, alignment):
    case = VarlenCase(lengths_q=(5, 40, 17, 1), lengths_k=(30, 12, 17, 9), causal=alignment,
                      backward=impl.capabilities.on(device).backward)
    varlen(case)
