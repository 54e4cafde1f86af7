"""Decoding against a KV cache (KVCACHE-*) and a paged cache (PAGED-*): optional capabilities, judged through the
implementation's own ``kvcache_forward`` (there is no adapter)."""

from __future__ import annotations

import pytest

from attnconf.capabilities import BOTTOM_RIGHT
from attnconf.checks import check_kvcache
from attnconf.inputs import KvCacheCase


@pytest.fixture
def kvcache(impl, device, generator, record_comparison, require):
    def run(case):
        return check_kvcache(impl, require(case), device, generator, record_comparison)

    return run


@pytest.mark.contract("KVCACHE-1")
@pytest.mark.parametrize("seqlen_q", [1, 4, 16])
@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (8, 1)], ids=lambda h: f"Hq{h[0]}-Hkv{h[1]}")
def test_decoding_against_a_cache(kvcache, seqlen_q, heads):
    # lengths of one key, of the whole capacity and in between; slots past each length hold 1e3
    kvcache(KvCacheCase(cache_seqlens=(16, 48, 17, 33), seqlen_q=seqlen_q, heads_q=heads[0], heads_kv=heads[1]))


@pytest.mark.contract("KVCACHE-2")
@pytest.mark.parametrize("seqlen_q", [1, 3, 16])
def test_causal_decoding_is_aligned_to_each_cache_end(kvcache, seqlen_q):
    # query i of sequence b sees keys j <= i + cache_seqlens[b] - Sq: the last query sees the whole cache
    kvcache(KvCacheCase(cache_seqlens=(16, 48, 19, 30), seqlen_q=seqlen_q, causal=BOTTOM_RIGHT))


@pytest.mark.contract("PAGED-1")
@pytest.mark.parametrize("page_size", [4, 16])
@pytest.mark.parametrize("causal", [None, BOTTOM_RIGHT])
def test_paged_cache(kvcache, page_size, causal):
    # lengths that are multiples of the page size; pages shuffled, spare pages between them
    kvcache(KvCacheCase(cache_seqlens=(16, 48, 32), seqlen_q=4, capacity=48, page_size=page_size, causal=causal))


@pytest.mark.contract("PAGED-2")
@pytest.mark.parametrize("page_size", [5, 16])
@pytest.mark.parametrize("seqlen_q", [1, 7])
def test_paged_cache_partial_pages(kvcache, page_size, seqlen_q):
    # lengths that end inside a page, and a sequence shorter than one page
    kvcache(KvCacheCase(cache_seqlens=(7, 45, 21, 3 if seqlen_q == 1 else 9), seqlen_q=seqlen_q, capacity=48,
                        page_size=page_size, causal=BOTTOM_RIGHT))
