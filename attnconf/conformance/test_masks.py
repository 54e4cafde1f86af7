"""Key-padding masks: polarity, no influence from masked keys, rows with nothing visible, masks with causal."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attnconf.capabilities import ALIGNMENTS, BOTTOM_RIGHT
from attnconf.failures import NotExact
from attnconf.inputs import DenseCase, make_dense_inputs

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.contract("MASK-1")
@pytest.mark.parametrize("kind", ["random", "prefix"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_true_means_attend(dense, kind, dtype):
    dense(DenseCase(batch=3, seqlen_q=29, seqlen_k=70, mask=kind, dtype=dtype))


@pytest.mark.contract("MASK-1")
@given(seqlen_k=st.integers(1, 80), keep=st.floats(0.05, 0.95), seed=st.integers(0, 2**31))
def test_random_masks(impl, device, require, dense, example_generator, seqlen_k, keep, seed):
    gen = example_generator(seed)
    case = require(DenseCase(batch=2, seqlen_q=9, seqlen_k=seqlen_k, mask="random"))
    inputs = make_dense_inputs(case, device, gen)
    mask = torch.rand(2, seqlen_k, generator=gen) < keep
    mask[:, 0] |= ~mask.any(1)  # at least one visible key per batch element
    inputs.key_padding_mask = mask.to(inputs.q.device)
    dense(case, inputs)


def _poison_masked(inputs) -> None:
    """Put huge keys and values behind the masked positions."""
    hidden = ~inputs.key_padding_mask  # [B, Sk]
    inputs.k[hidden] = inputs.k[hidden] * 30
    inputs.v[hidden] = 1e3  # large, yet dO·V stays finite in fp16 (1e4 overflows even the reference)


@pytest.mark.contract("MASK-2")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("causal", [None, BOTTOM_RIGHT])
def test_masked_keys_have_no_influence(impl, device, generator, dense, dtype, causal):
    caps = impl.capabilities.on(device)
    case = DenseCase(batch=2, seqlen_q=40, seqlen_k=40, mask="random", dtype=dtype, causal=causal,
                     backward=caps.backward)
    inputs = make_dense_inputs(case, device, generator)
    _poison_masked(inputs)
    dense(case, inputs)


def _assert_exact_zero(tensor, where: str) -> None:
    bad = (tensor != 0).sum().item()
    if bad:
        raise NotExact(f"{where}: {bad} non-zero value(s), max |x| = {tensor.abs().max().item():.3e} (must be exactly 0)")


@pytest.mark.contract("MASK-3")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fully_masked_rows_give_zeros(impl, device, dense, dtype):
    caps = impl.capabilities.on(device)

    def rows_are_zero(outcome) -> None:  # checked first: the precise reason, before the tolerance's
        _assert_exact_zero(outcome.out[0], "output of the batch element whose keys are all masked")
        for name in outcome.grads:
            _assert_exact_zero(outcome.grads[name][0], f"{name} of the batch element whose keys are all masked")

    dense(DenseCase(batch=2, seqlen_q=17, seqlen_k=33, mask="empty_batch", dtype=dtype, backward=caps.backward),
          before_judging=rows_are_zero)


@pytest.mark.contract("MASK-3")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_causal_rows_before_the_first_key_give_zeros(impl, device, dense, dtype):
    caps = impl.capabilities.on(device)
    seqlen_q, seqlen_k = 50, 20

    def rows_are_zero(outcome) -> None:
        _assert_exact_zero(outcome.out[:, : seqlen_q - seqlen_k], "bottom-right causal rows that see no key")
        if outcome.grads:
            _assert_exact_zero(outcome.grads["dq"][:, : seqlen_q - seqlen_k], "dQ of rows that see no key")

    dense(DenseCase(batch=1, seqlen_q=seqlen_q, seqlen_k=seqlen_k, causal=BOTTOM_RIGHT, dtype=dtype,
                    backward=caps.backward), before_judging=rows_are_zero)


@pytest.mark.contract("MASK-4")
@pytest.mark.parametrize("alignment", ALIGNMENTS)
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(33, 33), (20, 51), (51, 20)])
def test_mask_with_causal(dense, alignment, seqlen_q, seqlen_k):
    dense(DenseCase(batch=3, seqlen_q=seqlen_q, seqlen_k=seqlen_k, mask="random", causal=alignment))
