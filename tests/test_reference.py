"""The reference formulations agree with each other and with the definition written out by hand."""

import math

import pytest
import torch

from attnconf.reference import (
    causal_visibility,
    fused_formulation,
    fused_formulation_reversed,
    reference_attention,
    reference_varlen_attention,
)


def _inputs(seed, b=2, sq=5, sk=7, hq=4, hkv=2, d=8):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, sq, hq, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, sk, hkv, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, sk, hkv, d, generator=g, dtype=torch.float64)
    return q, k, v


def test_matches_hand_written_softmax():
    q, k, v = _inputs(0, hq=2, hkv=2)
    out = reference_attention(q, k, v)
    for b in range(2):
        for h in range(2):
            for i in range(5):
                w = torch.tensor([math.exp(q[b, i, h] @ k[b, j, h] / math.sqrt(8)) for j in range(7)], dtype=torch.float64)
                w = w / w.sum()
                expected = sum(w[j] * v[b, j, h] for j in range(7))
                torch.testing.assert_close(out[b, i, h], expected, rtol=1e-12, atol=1e-12)


def test_gqa_reads_kv_head_h_over_group():
    q, k, v = _inputs(1, hq=4, hkv=2)
    out = reference_attention(q, k, v)
    for h in range(4):
        alone = reference_attention(q[:, :, h : h + 1], k[:, :, h // 2 : h // 2 + 1], v[:, :, h // 2 : h // 2 + 1])
        torch.testing.assert_close(out[:, :, h : h + 1], alone)


@pytest.mark.parametrize("sq,sk", [(3, 7), (7, 3), (5, 5)])
def test_causal_alignments(sq, sk):
    top_left, bottom_right = causal_visibility(sq, sk, "top_left"), causal_visibility(sq, sk, "bottom_right")
    for i in range(sq):
        for j in range(sk):
            assert top_left[i, j] == (j <= i)
            assert bottom_right[i, j] == (j <= i + sk - sq)
    assert bottom_right[-1].all(), "the last query sees every key under bottom-right alignment"


def test_rows_without_keys_are_zero_with_zero_gradients():
    q, k, v = (t.requires_grad_() for t in _inputs(2))
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1] = False
    out = reference_attention(q, k, v, key_padding_mask=mask)
    out.sum().backward()
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert torch.equal(q.grad[1], torch.zeros_like(q.grad[1]))
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()


@pytest.mark.parametrize("formulation", [fused_formulation, fused_formulation_reversed])
@pytest.mark.parametrize("causal", [None, "top_left", "bottom_right"])
def test_fused_formulations_equal_autograd_in_float64(formulation, causal):
    q, k, v = (t.requires_grad_() for t in _inputs(3, sq=6, sk=9))
    mask = torch.rand(2, 9, generator=torch.Generator().manual_seed(4)) < 0.7
    mask[0] = False  # one batch element with no visible key at all
    dout = torch.randn(2, 6, 4, 8, dtype=torch.float64)
    out = reference_attention(q, k, v, key_padding_mask=mask, causal=causal, scale=0.3)
    out.backward(dout)
    fused = formulation(q.detach(), k.detach(), v.detach(), dout, key_padding_mask=mask, causal=causal, scale=0.3)
    for name, expected in (("out", out), ("dq", q.grad), ("dk", k.grad), ("dv", v.grad)):
        torch.testing.assert_close(fused[name], expected, rtol=1e-10, atol=1e-12, msg=name)


def test_varlen_is_each_sequence_alone():
    g = torch.Generator().manual_seed(5)
    lengths = [3, 0, 4]
    q = torch.randn(7, 2, 8, generator=g, dtype=torch.float64)
    k, v = torch.randn(7, 2, 8, generator=g, dtype=torch.float64), torch.randn(7, 2, 8, generator=g, dtype=torch.float64)
    cu = torch.tensor([0, 3, 3, 7], dtype=torch.int32)
    out = reference_varlen_attention(q, k, v, cu, cu, causal="bottom_right")
    assert out.shape == q.shape
    torch.testing.assert_close(out[3:], reference_attention(q[None, 3:], k[None, 3:], v[None, 3:], causal="bottom_right")[0])
    assert sum(lengths) == 7
