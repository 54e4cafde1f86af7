"""Layout adapters give the canonical result, and hand bad inputs on instead of validating them."""

import pytest
import torch

from attnconf.layouts import LayoutCannotExpress, to_canonical
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


def test_merged_heads_cannot_express_a_wrong_head_dim():
    q, k, v = _canonical_inputs(hq=2, hkv=2)
    # k with 2 heads of 32 merges to the same width as 1 head of 64: the adapter says so instead of calling fn
    with pytest.raises(LayoutCannotExpress, match="head dims"):
        to_canonical(bsd_fn, "bsd")(q, k[..., :32], v)


@pytest.mark.parametrize("layout", ["bhsd", "bsd"])
def test_adapters_hand_bad_inputs_on_instead_of_validating(layout):
    # validation is the implementation's job: a rank-3 q reaches the function, converted as far as it goes
    seen = []

    def fn(q, k, v, **options):
        seen.append(q.dim())
        raise ValueError("rank of q")

    q, k, v = _canonical_inputs()
    with pytest.raises(ValueError, match="rank of q"):
        to_canonical(fn, layout)(q[0], k, v)
    assert seen == [3 if layout == "bhsd" else 2]


def test_unknown_layout():
    with pytest.raises(ValueError, match="unknown layout"):
        to_canonical(bsd_fn, "sbhd")
