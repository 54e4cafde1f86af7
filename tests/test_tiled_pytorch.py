"""The teaching version (impls/tiled_pytorch.py): tile sizes from the SRAM size M, and what it keeps in memory."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from attnconf.reference import reference_attention
from attnconf.impls import tiled_pytorch
from attnconf.impls.tiled_pytorch import DEFAULT_SRAM_SIZE, TiledAttention, block_sizes, tile_counts

SEED_SEQLEN, SEED_HEAD_DIM, SEED_SRAM = 3072, 128, 1536  # the seed example: "flash attention from scratch"


def test_seed_example_block_sizes():
    # Bc = ceil(1536 / (4 * 128)) = 3 key rows, Br = min(3, 128) = 3 query rows: 1024 x 1024 tiles
    assert block_sizes(SEED_SRAM, SEED_HEAD_DIM) == (3, 3)
    assert tile_counts(SEED_SEQLEN, SEED_SEQLEN, SEED_SRAM, SEED_HEAD_DIM) == (1024, 1024)


@pytest.mark.parametrize("sram_size,head_dim,expected", [
    (1536, 64, (6, 6)),  # Bc = ceil(1536 / 256) = 6; Br = min(6, 64)
    (DEFAULT_SRAM_SIZE, 128, (114, 114)),  # Bc = 58368 / 512 = 114; Br = min(114, 128)
    (DEFAULT_SRAM_SIZE, 32, (32, 456)),  # Br is capped by the head dim
    (1000, 64, (4, 4)),  # ceil(1000 / 256) = 4: the ceiling, not the floor
])
def test_block_sizes_follow_the_paper(sram_size, head_dim, expected):
    assert block_sizes(sram_size, head_dim) == expected


def test_module_doctests():
    result = doctest.testmod(tiled_pytorch)
    assert result.attempted >= 3 and result.failed == 0


def _inputs(batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, seqlen_q, heads_q, head_dim, generator=g)
    k = torch.randn(batch, seqlen_k, heads_kv, head_dim, generator=g)
    v = torch.randn(batch, seqlen_k, heads_kv, head_dim, generator=g)
    return q, k, v


@pytest.mark.parametrize("causal", [None, "top_left", "bottom_right"])
def test_seed_sized_tiles_compute_attention(causal):
    """The seed's M gives 3x3 tiles at d = 128: many tiles, ragged ends, the same function (forward and backward)."""
    q, k, v = (t.requires_grad_() for t in _inputs(1, 14, 10, 2, 1, SEED_HEAD_DIM))
    mask = torch.ones(1, 10, dtype=torch.bool)
    mask[0, 4] = False
    out = TiledAttention.apply(q, k, v, mask, causal, 0.1, SEED_SRAM)
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    expected = reference_attention(*leaves, key_padding_mask=mask, causal=causal, scale=0.1)
    expected_grads = torch.autograd.grad(expected, leaves, dout.double())
    torch.testing.assert_close(out.double(), expected, atol=2e-5, rtol=0)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=0)


def test_forward_saves_only_inputs_output_and_logsumexp():
    q, k, v = (t.requires_grad_() for t in _inputs(2, 50, 70, 4, 2, 64))
    out = TiledAttention.apply(q, k, v, None, None, 0.125, DEFAULT_SRAM_SIZE)
    saved = out.grad_fn.saved_tensors
    assert len(saved) == 5
    for kept, given in zip(saved[:3], (q, k, v)):
        assert kept.data_ptr() == given.data_ptr()
    assert torch.equal(saved[3], out.detach())
    assert saved[4].shape == (2, 4, 50) and saved[4].dtype == torch.float32  # one log-sum-exp per row and head


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements any operation produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for t in result if isinstance(result, (tuple, list)) else (result,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return result


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
def test_no_score_matrix_is_materialised(backward):
    batch, heads, seqlen, head_dim = 1, 2, 700, 64
    q, k, v = (t.requires_grad_(backward) for t in _inputs(batch, seqlen, seqlen, heads, heads, head_dim))
    query_rows, key_rows = block_sizes(DEFAULT_SRAM_SIZE, head_dim)
    with _LargestTensor() as probe:
        out = TiledAttention.apply(q, k, v, None, "bottom_right", 0.125, DEFAULT_SRAM_SIZE)
        if backward:
            out.backward(torch.ones_like(out))
    one_tile = batch * heads * query_rows * key_rows
    linear = batch * heads * seqlen * head_dim
    assert probe.largest <= max(one_tile, linear)
    assert probe.largest < batch * heads * seqlen * seqlen // 4  # a score matrix would be 7x one tile
