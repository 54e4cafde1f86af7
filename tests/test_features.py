"""The optional features' definitions: score functions, the sink and the lse in the reference, the lse merge, the
KV-cache inputs (what the contract tests rest on, checked against plain formulas)."""

from __future__ import annotations

import math

import pytest
import torch

from attnconf import masks
from attnconf.checks import Outcome, merge_by_lse
from attnconf.inputs import KvCacheCase, make_kvcache_inputs
from attnconf.reference import reference_attention


def _qkv(seed=0, batch=2, seqlen_q=5, seqlen_k=9, heads=3):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, s, heads, 16, generator=gen, dtype=torch.float64) for s in (seqlen_q, seqlen_k, seqlen_k)]


def test_softcap_and_alibi_follow_their_formulas():
    q, k, v = _qkv()
    scale = 0.25
    slopes = torch.tensor([0.5, 0.25, 0.125])
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    capped = 2.0 * torch.tanh(scores / 2.0)
    distance = (torch.arange(5)[:, None] + 9 - 5 - torch.arange(9)[None, :]).abs()
    expected = torch.einsum("bhqk,bkhd->bqhd", (capped - slopes[:, None, None].double() * distance).softmax(-1), v)
    out = reference_attention(q, k, v, scale=scale, softcap=2.0, alibi_slopes=slopes)
    torch.testing.assert_close(out, expected)


def test_signed_alibi_of_attention_gym_agrees_under_causal_masking_only():
    slopes = torch.tensor([0.5])
    gym = lambda s, b, h, q, kv: s + slopes[h] * (kv - q)  # noqa: E731
    ours = masks.alibi(slopes, 6, 6)
    zeros = torch.zeros(1, 1, 6, 6)
    a, b = masks.apply_scores(ours, zeros), masks.apply_scores(gym, zeros)
    causal = masks.materialise(masks.causal("bottom_right", 6, 6), 1, 1, 6, 6)
    assert torch.equal(a[causal], b[causal]) and not torch.equal(a, b)


def test_sink_adds_one_term_to_the_denominator_and_to_the_lse():
    q, k, v = _qkv()
    sink = torch.tensor([0.0, 1.0, -2.0])
    out, lse = reference_attention(q, k, v, sink=sink, return_lse=True)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / 4.0
    with_sink = torch.cat([scores, sink.double()[None, :, None, None].expand(2, 3, 5, 1)], dim=-1)
    probs = with_sink.softmax(-1)[..., :-1]
    torch.testing.assert_close(out, torch.einsum("bhqk,bkhd->bqhd", probs, v))
    torch.testing.assert_close(lse, torch.logsumexp(with_sink, -1))


def test_rows_with_no_visible_key_give_zero_and_minus_infinity_or_the_sink():
    q, k, v = _qkv()
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1] = False
    out, lse = reference_attention(q, k, v, key_padding_mask=mask, return_lse=True)
    assert torch.equal(out[1], torch.zeros_like(out[1])) and torch.isneginf(lse[1]).all()
    sink = torch.tensor([0.5, 1.0, 2.0])
    _, lse = reference_attention(q, k, v, key_padding_mask=mask, sink=sink, return_lse=True)
    torch.testing.assert_close(lse[1], sink.double()[:, None].expand(3, 5))


@pytest.mark.parametrize("split", [1, 4, 8])
def test_two_blocks_merged_through_their_lse_equal_the_whole(split):
    q, k, v = _qkv(seed=split)
    mask = torch.rand(2, 9, generator=torch.Generator().manual_seed(3)) < 0.6
    mask[0, split:] = False  # batch element 0 sees nothing in the second block
    whole, whole_lse = reference_attention(q, k, v, key_padding_mask=mask, return_lse=True)
    parts = [Outcome(*reference_attention(q, k[:, s], v[:, s], key_padding_mask=mask[:, s], return_lse=True)[:1],
                     lse=reference_attention(q, k[:, s], v[:, s], key_padding_mask=mask[:, s], return_lse=True)[1])
             for s in (slice(0, split), slice(split, None))]
    merged = merge_by_lse(parts)
    torch.testing.assert_close(merged.out, whole)
    torch.testing.assert_close(merged.lse.double(), whole_lse, atol=1e-6, rtol=1e-6)


def test_a_declared_sentinel_merges_as_minus_infinity():
    out = torch.ones(1, 1, 1, 4)
    empty = Outcome(out * 7, lse=torch.full((1, 1, 1), math.inf))
    seen = Outcome(out, lse=torch.zeros(1, 1, 1))
    assert torch.equal(merge_by_lse([empty, seen], empty_row=math.inf).out, out)


@pytest.mark.parametrize("page_size", [None, 4, 5])
def test_kvcache_inputs_hold_each_sequence_where_the_table_says(page_size):
    case = KvCacheCase(cache_seqlens=(3, 11, 8), capacity=12, page_size=page_size)
    inputs = make_kvcache_inputs(case, "cpu", torch.Generator().manual_seed(0))
    starts = [0, 3, 14]
    for b, n in enumerate(case.cache_seqlens):
        for t in range(n):
            if page_size is None:
                key = inputs.k_cache[b, t]
            else:
                key = inputs.k_cache[int(inputs.block_table[b, t // page_size]), t % page_size]
            assert torch.equal(key, inputs.packed.k[starts[b] + t])
    if page_size is not None:  # shuffled: an identity table would read other sequences' pages
        identity = torch.arange(inputs.block_table.numel()).reshape(inputs.block_table.shape)
        assert not torch.equal(inputs.block_table.long(), identity)
