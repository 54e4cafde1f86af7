"""Layout adapters give the canonical result and validate what they must interpret."""

import pytest
import torch

from attnconf import AttentionInputError
from attnconf.layouts import to_canonical
from attnconf.reference import reference_attention


def _canonical_inputs(hq=4, hkv=2, d=64):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, s, h, d, generator=g) for s, h in ((5, hq), (7, hkv), (7, hkv))]


def bhsd_fn(q, k, v, **options):
    out = reference_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), **options)
    return out.transpose(1, 2)


def bsd_fn(q, k, v, *, num_heads, head_dim, **options):
    split = lambda t: t.reshape(t.shape[0], t.shape[1], -1, head_dim)  # noqa: E731
    out = reference_attention(split(q), split(k), split(v), **options)
    assert out.shape[2] == num_heads
    return out.reshape(out.shape[0], out.shape[1], -1)


@pytest.mark.parametrize("layout,fn", [("bhsd", bhsd_fn), ("bsd", bsd_fn)])
def test_adapters_match_canonical(layout, fn):
    q, k, v = _canonical_inputs()
    mask = torch.tensor([[True] * 7, [True, False] * 3 + [True]])
    adapted = to_canonical(fn, layout)
    expected = reference_attention(q, k, v, key_padding_mask=mask, causal="bottom_right")
    torch.testing.assert_close(adapted(q, k, v, key_padding_mask=mask, causal="bottom_right"), expected)


def test_merged_heads_reject_a_wrong_head_dim():
    q, k, v = _canonical_inputs(hq=2, hkv=2)
    # k with 2 heads of 32 merges to the same width as 1 head of 64: without validation it would be misread
    with pytest.raises(AttentionInputError, match="head_dim"):
        to_canonical(bsd_fn, "bsd")(q, k[..., :32], v)


def test_declared_head_dims_are_enforced():
    q, k, v = _canonical_inputs(d=48)
    with pytest.raises(AttentionInputError, match="unsupported head_dim 48"):
        to_canonical(bhsd_fn, "bhsd", head_dims=frozenset({64}))(q, k, v)


def test_unknown_layout():
    with pytest.raises(ValueError, match="unknown layout"):
        to_canonical(bsd_fn, "sbhd")
