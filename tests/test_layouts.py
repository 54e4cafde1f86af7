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


@pytest.mark.parametrize("layout", ["bhsd", "bsd"])
def test_packed_calls_take_the_same_layouts(layout):
    # a packed function written in the dense layout's packed form ([H, T, D] for bhsd, [T, H*D] for bsd) registers
    # through the decorator and gives the canonical [T, H, D] result
    from attnconf import implementation, registry
    from attnconf.capabilities import Capabilities
    from attnconf.reference import reference_varlen_attention

    g = torch.Generator().manual_seed(1)
    cu_q, cu_k = torch.tensor([0, 3, 8], dtype=torch.int32), torch.tensor([0, 4, 11], dtype=torch.int32)
    q, k, v = torch.randn(8, 4, 64, generator=g), torch.randn(11, 2, 64, generator=g), torch.randn(11, 2, 64, generator=g)
    calls = []

    def packed(q_, k_, v_, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, num_heads=None, head_dim=None,
               **options):
        calls.append(q_.shape)
        if layout == "bhsd":
            to, back = (lambda t: t.transpose(0, 1)), (lambda t: t.transpose(0, 1))
        else:
            to, back = (lambda t: t.unflatten(-1, (-1, head_dim))), (lambda t: t.flatten(-2))
        return back(reference_varlen_attention(to(q_), to(k_), to(v_), cu_seqlens_q, cu_seqlens_k, **options))

    def dense(q_, k_, v_, **options):
        raise AssertionError("the packed function is used")

    try:
        implementation(f"packed-{layout}", layout=layout, varlen_forward=packed,
                       capabilities=Capabilities(varlen=True, gqa=True))(dense)
        impl = registry.registered()[f"packed-{layout}"]
        out = impl.varlen(q, k, v, cu_q, cu_k, 5, 7, causal="bottom_right")
    finally:
        registry.unregister(f"packed-{layout}")
    assert calls == [(4, 8, 64) if layout == "bhsd" else (8, 256)]
    torch.testing.assert_close(out, reference_varlen_attention(q, k, v, cu_q, cu_k, causal="bottom_right"))
