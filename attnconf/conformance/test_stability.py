"""Numerical stability: large logits and lengths that are not block multiples."""

from __future__ import annotations

import pytest
import torch

from attnconf.capabilities import BOTTOM_RIGHT
from attnconf.inputs import DenseCase

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.contract("STAB-1")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("magnitude", [5.0, 10.0, 30.0])
def test_large_logits(impl, device, dense, dtype, magnitude):
    backward = impl.capabilities.on(device).backward
    dense(DenseCase(seqlen_q=70, seqlen_k=70, dtype=dtype, magnitude=magnitude, backward=backward))


@pytest.mark.contract("STAB-2")
@pytest.mark.parametrize("seqlen", [1, 17, 97, 127, 1025])
@pytest.mark.parametrize("causal", [None, BOTTOM_RIGHT])
def test_lengths_not_block_multiples(impl, device, dense, seqlen, causal):
    backward = impl.capabilities.on(device).backward
    dense(DenseCase(batch=1, seqlen_q=seqlen, seqlen_k=seqlen, heads_q=1, heads_kv=1, causal=causal,
                    backward=backward))
