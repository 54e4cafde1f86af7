"""FlexAttention adapter machinery that the conformance suite does not see: the visibility tensors behind the one
mask function, block-mask caching (reuse, and rebuilds when what determines a mask changes), shared buffers, and the
kernel options that steer short grouped queries off inductor's decoding kernel."""

from __future__ import annotations

import pytest
import torch

from attnconf import registered
from attnconf.reference import causal_visibility, reference_attention, reference_varlen_attention, visibility
from attnconf.varlen import cu_seqlens_from_lengths

flex = pytest.importorskip("attnconf.impls.flex")
pytestmark = pytest.mark.skipif(flex.flex_attention is None, reason="this torch has no flex_attention")


def _materialise(doc_q, first_q, pos_q, doc_k, pos_k) -> torch.Tensor:
    """bool [B, Sq, Sk] from the visibility tensors, by the mask function's own formula."""
    mask_mod = flex.visibility_mask_mod(doc_q, first_q, pos_q, doc_k, pos_k)
    b = torch.arange(doc_q.shape[0])[:, None, None]
    q = torch.arange(doc_q.shape[1])[None, :, None]
    kv = torch.arange(doc_k.shape[1])[None, None, :]
    return mask_mod(b, 0, q, kv)


@pytest.mark.parametrize("window", [None, (2, 1), (0, -1), (-1, 0)], ids=str)
@pytest.mark.parametrize("causal", [None, "top_left", "bottom_right"])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(5, 9), (9, 5), (7, 7)])
def test_dense_visibility_matches_the_reference(causal, seqlen_q, seqlen_k, window):
    if window is not None and causal == "top_left":
        pytest.skip("the window contract pairs with bottom-right causal only")
    mask = torch.rand(3, seqlen_k, generator=torch.Generator().manual_seed(1)) < 0.6
    tensors = flex.dense_visibility(3, seqlen_q, seqlen_k, mask, causal, "cpu", window)
    expected = visibility(seqlen_q, seqlen_k, batch=3, key_padding_mask=mask, causal=causal, window=window)[:, 0]
    assert torch.equal(_materialise(*tensors), expected)


@pytest.mark.parametrize("causal", [None, "top_left", "bottom_right"])
def test_packed_visibility_is_block_diagonal_with_per_sequence_causality(causal):
    lengths_q, lengths_k = [3, 0, 6, 2], [5, 4, 2, 2]
    seen = _materialise(*flex.packed_visibility(lengths_q, lengths_k, causal, "cpu"))[0]
    expected = torch.zeros(sum(lengths_q), sum(lengths_k), dtype=torch.bool)
    q0 = k0 = 0
    for n_q, n_k in zip(lengths_q, lengths_k):
        block = torch.ones(n_q, n_k, dtype=torch.bool) if causal is None else causal_visibility(n_q, n_k, causal)
        expected[q0 : q0 + n_q, k0 : k0 + n_k] = block
        q0, k0 = q0 + n_q, k0 + n_k
    assert torch.equal(seen, expected)


@pytest.fixture
def eager_flex():
    flex.BLOCK_MASKS.clear()
    yield registered()["flex-eager"]
    flex.BLOCK_MASKS.clear()


def _qkv(batch, seqlen_q, seqlen_k, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, seqlen_q, 2, 64, generator=gen), torch.randn(batch, seqlen_k, 2, 64, generator=gen),
            torch.randn(batch, seqlen_k, 2, 64, generator=gen))


def test_block_mask_is_reused_for_the_same_shape_and_rebuilt_for_a_new_one(eager_flex):
    q, k, v = _qkv(2, 9, 13)
    eager_flex(q, k, v, causal="bottom_right")
    eager_flex(*_qkv(2, 9, 13, seed=1), causal="bottom_right")  # new numbers, same shape: cached
    assert flex.BLOCK_MASKS.builds == 1
    eager_flex(q, k, v, causal="top_left")
    eager_flex(*_qkv(3, 9, 13), causal="bottom_right")
    assert flex.BLOCK_MASKS.builds == 3


def test_key_padding_mask_is_keyed_on_its_contents(eager_flex):
    q, k, v = _qkv(2, 6, 11)
    mask = torch.rand(2, 11, generator=torch.Generator().manual_seed(3)) < 0.5
    mask[:, 0] = True
    eager_flex(q, k, v, key_padding_mask=mask)
    eager_flex(q, k, v, key_padding_mask=mask.clone())  # an equal mask in a new tensor: cached
    assert flex.BLOCK_MASKS.builds == 1
    mask[0, 1:] = ~mask[0, 1:]  # changed in place: must not reuse the stale block mask
    out = eager_flex(q, k, v, key_padding_mask=mask)
    assert flex.BLOCK_MASKS.builds == 2
    torch.testing.assert_close(out, reference_attention(q, k, v, key_padding_mask=mask))


def test_packed_block_mask_is_keyed_on_the_lengths(eager_flex):
    lengths_q, lengths_k = [4, 0, 7], [6, 3, 7]
    cu_q, cu_k = cu_seqlens_from_lengths(lengths_q), cu_seqlens_from_lengths(lengths_k)
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(n, 2, 64, generator=gen) for n in (11, 16, 16))
    for _ in range(2):
        out = eager_flex.varlen(q, k, v, cu_q, cu_k, 7, 7, causal="bottom_right")
    assert flex.BLOCK_MASKS.builds == 1
    torch.testing.assert_close(out, reference_varlen_attention(q, k, v, cu_q, cu_k, causal="bottom_right"))
    eager_flex.varlen(q, k, v, cu_seqlens_from_lengths([5, 0, 6]), cu_k, 7, 7, causal="bottom_right")
    assert flex.BLOCK_MASKS.builds == 2


def test_cache_is_bounded():
    cache = flex.BlockMaskCache(capacity=2)
    for key in "abc":
        cache.get(key, lambda: object())
    cache.get("a", lambda: object())  # evicted, so built again
    assert cache.builds == 4


def test_inputs_sharing_one_buffer_are_separated():
    x = torch.randn(1, 2, 5, 64)
    q, k, v = flex._separate_buffers(x, x, x)
    assert q is x and k is not x and v is not x and v is not k
    assert k.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    assert torch.equal(k, x) and torch.equal(v, x)
    a, b, c = torch.randn(3, 1, 2, 5, 64).unbind(0)
    assert flex._separate_buffers(a, b, c)[1] is not b  # views of one buffer count as shared
    distinct = [torch.randn(1, 2, 5, 64) for _ in range(3)]
    assert all(x is y for x, y in zip(flex._separate_buffers(*distinct), distinct))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiled flex on one shared buffer: checked on CUDA")
def test_compiled_flex_accepts_one_buffer_for_q_k_v():
    qkv = torch.randn(2, 33, 3, 2, 64, device="cuda", dtype=torch.float16)
    q, k, v = qkv.unbind(2)
    out = registered()["flex-compiled"](q, k, v, causal="bottom_right")
    expected = reference_attention(q.double(), k.double(), v.double(), causal="bottom_right")
    torch.testing.assert_close(out.double(), expected, atol=2e-3, rtol=0)
    x = torch.randn(1, 17, 2, 64, device="cuda", dtype=torch.float16, requires_grad=True)
    registered()["flex-compiled"](x, x, x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    "device_type,heads_q,heads_kv,seqlen_q,steered",
    [
        ("cuda", 2, 1, 69, True),  # 138 rows stacked: the decoding kernel's tile (256) overshoots the 128-row block
        ("cuda", 4, 1, 33, True),
        ("cuda", 2, 1, 64, False),  # exactly one block
        ("cuda", 2, 2, 69, False),  # no group
        ("cuda", 2, 1, 128, False),  # not short: inductor does not take the decoding kernel
        ("cuda", 2, 1, 0, False),
        ("cpu", 2, 1, 69, False),  # the CPU lowering has no decoding kernel
    ],
)
def test_kernel_options_steer_only_short_queries_with_a_long_head_group(device_type, heads_q, heads_kv, seqlen_q,
                                                                        steered):
    options = flex.kernel_options_for(device_type, heads_q, heads_kv, seqlen_q, block_rows=128)
    assert (options is not None) == steered
    if steered:
        assert options in ({"BACKEND": "TRITON"}, {"FORCE_USE_FLEX_ATTENTION": True})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="inductor's flex decoding kernel: CUDA only")
def test_torch_decoding_kernel_still_lacks_a_tile_for_a_long_head_group():
    """Why ``kernel_options_for`` exists (torch 2.11, H100): without it this shape has no kernel. When this test
    fails, torch has fixed it and ``kernel_options_for`` can go."""
    lengths = (0, 29, 17, 23)
    block_mask = flex.packed_block_mask(lengths, lengths, None, torch.device("cuda"))
    q = torch.randn(1, 2, sum(lengths), 64, device="cuda")
    k, v = (torch.randn(1, 1, sum(lengths), 64, device="cuda") for _ in range(2))

    def attend(q, k, v):  # its own code object, so no graph the adapter compiled earlier is reused
        return flex.flex_attention(q, k, v, block_mask=block_mask, enable_gqa=True)

    with pytest.raises(Exception, match="NoValidChoicesError"):
        torch.compile(attend, dynamic=True)(q, k, v)
