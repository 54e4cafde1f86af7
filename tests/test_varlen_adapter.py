"""The shared pad/unpad adapter computes packed attention exactly, with per-sequence causal alignment."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attnconf import AttentionInputError
from attnconf.reference import reference_attention, reference_varlen_attention
from attnconf import validation
from attnconf.validation import check_cu_seqlens
from attnconf.varlen import cu_seqlens_from_lengths, equal_cu_seqlens, pad, unpad, varlen_through_dense


@given(
    lengths=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=4),
    causal=st.sampled_from([None, "top_left", "bottom_right"]),
    seed=st.integers(0, 1000),
)
def test_matches_reference(lengths, causal, seed):
    g = torch.Generator().manual_seed(seed)
    lq, lk = [a for a, _ in lengths], [b for _, b in lengths]
    q = torch.randn(sum(lq), 2, 8, generator=g, dtype=torch.float64)
    k = torch.randn(sum(lk), 1, 8, generator=g, dtype=torch.float64)
    v = torch.randn(sum(lk), 1, 8, generator=g, dtype=torch.float64)
    cu_q, cu_k = cu_seqlens_from_lengths(lq), cu_seqlens_from_lengths(lk)
    out = varlen_through_dense(reference_attention, q, k, v, cu_q, cu_k, max(lq + [1]), max(lk + [1]), causal=causal)
    torch.testing.assert_close(out, reference_varlen_attention(q, k, v, cu_q, cu_k, causal=causal))


@pytest.mark.parametrize("left", [False, True])
def test_pad_unpad_round_trip(left):
    x = torch.arange(12.0).reshape(6, 1, 2)
    padded = pad(x, [2, 0, 4], 4, left=left)
    assert padded.shape == (3, 4, 1, 2)
    assert torch.equal(unpad(padded, [2, 0, 4], left=left), x)


@pytest.mark.parametrize(
    "cu,message",
    [
        (torch.tensor([0, 3, 5], dtype=torch.int64), "int32"),
        (torch.tensor([1, 3, 5], dtype=torch.int32), "start at 0"),
        (torch.tensor([0, 4, 3, 5], dtype=torch.int32), "monotonic"),
        (torch.tensor([0, 3, 4], dtype=torch.int32), "end at the total"),
        (torch.tensor([5], dtype=torch.int32), "batch\\+1"),
    ],
)
def test_bad_cu_seqlens(cu, message):
    with pytest.raises(AttentionInputError, match=message):
        check_cu_seqlens(cu, 5, "cu_seqlens_q")


def test_max_seqlen_too_small():
    with pytest.raises(AttentionInputError, match="max_seqlen"):
        check_cu_seqlens(torch.tensor([0, 3, 5], dtype=torch.int32), 5, "cu_seqlens_q", max_seqlen=2)


@pytest.fixture
def host_copies_on_cpu(monkeypatch):
    """Host copies are kept for device tensors only; let CPU tensors stand in for them."""
    monkeypatch.setattr(validation, "_cacheable", lambda t: True)


def test_known_cu_seqlens_are_not_read_back(host_copies_on_cpu):
    cu = cu_seqlens_from_lengths([3, 2])
    validation.remember_host_values(cu, [0, 9, 9])  # a deliberate lie: proves the check used the host copy
    with pytest.raises(AttentionInputError, match="end at the total token count 5, got 9"):
        check_cu_seqlens(cu, 5, "cu_seqlens_q")


def test_an_in_place_change_is_seen(host_copies_on_cpu):
    cu = cu_seqlens_from_lengths([3, 2])
    assert check_cu_seqlens(cu, 5, "cu_seqlens_q") == [3, 2]
    cu[1] = 6  # bumps the version counter: the host copy is stale and the values are read again
    with pytest.raises(AttentionInputError, match="monotonic"):
        check_cu_seqlens(cu, 5, "cu_seqlens_q")
    view = cu[1:]
    view.fill_(5)  # a view shares the version counter
    assert check_cu_seqlens(cu, 5, "cu_seqlens_q") == [5, 0]


def test_host_copies_go_with_their_tensor(host_copies_on_cpu):
    cu = cu_seqlens_from_lengths([4, 4])
    key = id(cu)
    assert key in validation._host_copies
    del cu
    assert key not in validation._host_copies


def test_equal_cu_seqlens_matches_its_lengths():
    assert equal_cu_seqlens(3, 4, "cpu").tolist() == cu_seqlens_from_lengths([4, 4, 4]).tolist() == [0, 4, 8, 12]
