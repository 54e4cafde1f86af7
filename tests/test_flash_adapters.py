"""Adapter machinery of the flash-attn style implementations (flash-attn 2 and 4, torch varlen_attn) that runs
without a GPU: dense batches through a packed kernel, the varlen_attn signature gate, the skip reasons."""

from __future__ import annotations

import pytest
import torch

from attnconf.varlen import dense_through_varlen
from attnconf.reference import reference_attention, reference_varlen_attention
from attnconf.impls import flash_attn2, flash_attn4, torch_varlen


def _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, causal=None, scale=None):
    """A packed kernel stand-in with flash-attn's causal convention (bottom-right per sequence)."""
    assert max_q >= 1 and max_k >= 0
    return reference_varlen_attention(q, k, v, cu_q, cu_k, causal=causal, scale=scale)


def _inputs(batch=3, seqlen_q=7, seqlen_k=10, heads_q=4, heads_kv=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    make = lambda s, h: torch.randn(batch, s, h, 64, generator=gen, dtype=torch.float64)  # noqa: E731
    return make(seqlen_q, heads_q), make(seqlen_k, heads_kv), make(seqlen_k, heads_kv)


@pytest.mark.parametrize("causal", [None, "bottom_right"])
def test_dense_without_mask_packs_equal_lengths(causal):
    q, k, v = _inputs()
    out = dense_through_varlen(_reference_varlen, q, k, v, causal=causal, scale=0.3)
    torch.testing.assert_close(out, reference_attention(q, k, v, causal=causal, scale=0.3))


def test_dense_key_padding_drops_hidden_keys_and_gives_them_zero_gradient():
    q, k, v = (t.requires_grad_() for t in _inputs())
    mask = torch.rand(3, 10, generator=torch.Generator().manual_seed(2)) < 0.5
    mask[0] = False  # a batch element with no visible key: its rows must be 0
    mask[1, 3] = True
    out = dense_through_varlen(_reference_varlen, q, k, v, mask)
    torch.testing.assert_close(out, reference_attention(q, k, v, key_padding_mask=mask))
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    out.sum().backward()
    assert torch.equal(k.grad[~mask], torch.zeros_like(k.grad[~mask]))
    assert torch.equal(v.grad[~mask], torch.zeros_like(v.grad[~mask]))


def test_dense_key_padding_with_causal_is_refused():
    q, k, v = _inputs()
    mask = torch.ones(3, 10, dtype=torch.bool)
    with pytest.raises(NotImplementedError, match="causal"):
        dense_through_varlen(_reference_varlen, q, k, v, mask, causal="bottom_right")


@pytest.mark.parametrize("option", [dict(window=(3, 0)), dict(alibi_slopes=torch.ones(2))], ids=["window", "alibi"])
def test_dense_key_padding_with_positional_options_is_refused(option):
    q, k, v = _inputs()
    mask = torch.ones(3, 10, dtype=torch.bool)
    with pytest.raises(NotImplementedError, match="key-padding mask"):
        dense_through_varlen(_reference_varlen, q, k, v, mask, **option)


def test_dense_lse_comes_back_from_the_packed_layout():
    """The packed kernel's lse [H, T] becomes [B, H, Sq]: a stand-in that writes 1000 h + t at head h, token t."""
    q, k, v = _inputs(batch=3, seqlen_q=7, heads_q=4)

    def packed_with_lse(q, k, v, cu_q, cu_k, max_q, max_k, *, causal=None, scale=None, return_lse=False):
        lse = 1000.0 * torch.arange(q.shape[1])[:, None] + torch.arange(q.shape[0])[None, :]
        return _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k), lse

    out, lse = dense_through_varlen(packed_with_lse, q, k, v, return_lse=True)
    torch.testing.assert_close(out, reference_attention(q, k, v))
    b, h, s = torch.meshgrid(torch.arange(3), torch.arange(4), torch.arange(7), indexing="ij")
    assert torch.equal(lse, (1000.0 * h + b * 7 + s).to(lse.dtype))


def test_flash_attn_options_map_the_canonical_window():
    assert flash_attn2.flash_attn_options(window=(5, -1), softcap=2.0) == {"window_size": (5, -1), "softcap": 2.0}
    assert flash_attn4.cute_options(window=(-1, 3)) == {"window_size": (None, 3)}  # cute: None is unbounded


def _sig_2_10(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, is_causal=False, return_aux=None): ...


def _sig_2_11(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
              window_size=(-1, -1)): ...


def _sig_2_12(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
              window_size=(-1, -1), enable_gqa=False): ...


def test_varlen_signature_2_10_uses_is_causal_and_refuses_scale_and_gqa():
    sig = torch_varlen.VarlenSignature.of(_sig_2_10)
    assert sig.keywords(causal=True, scale=None, gqa=False) == {"is_causal": True}
    assert sig.keywords(causal=False, scale=None, gqa=False) == {}
    with pytest.raises(NotImplementedError, match="scale"):
        sig.keywords(causal=False, scale=0.5, gqa=False)
    with pytest.raises(NotImplementedError, match="enable_gqa"):
        sig.keywords(causal=False, scale=None, gqa=True)


def test_varlen_signature_2_11_gives_causal_as_a_tuple_window():
    kwargs = torch_varlen.VarlenSignature.of(_sig_2_11).keywords(causal=True, scale=0.5, gqa=False)
    assert kwargs == {"window_size": (-1, 0), "scale": 0.5}
    assert type(kwargs["window_size"]) is tuple  # a list silently means no causal mask in torch 2.11
    with pytest.raises(NotImplementedError, match="enable_gqa"):
        torch_varlen.VarlenSignature.of(_sig_2_11).keywords(causal=False, scale=None, gqa=True)


def test_varlen_signature_2_12_passes_enable_gqa():
    kwargs = torch_varlen.VarlenSignature.of(_sig_2_12).keywords(causal=False, scale=None, gqa=True)
    assert kwargs == {"enable_gqa": True}


def test_varlen_signature_windows_intersect_with_causal():
    sig = torch_varlen.VarlenSignature.of(_sig_2_12)
    assert sig.window and sig.lse
    assert sig.keywords(causal=False, scale=None, gqa=False, window=(4, 2)) == {"window_size": (4, 2)}
    assert sig.keywords(causal=True, scale=None, gqa=False, window=(4, 2)) == {"window_size": (4, 0)}
    assert sig.keywords(causal=True, scale=None, gqa=False, window=(4, -1)) == {"window_size": (4, 0)}
    with pytest.raises(NotImplementedError, match="window_size"):
        torch_varlen.VarlenSignature.of(_sig_2_10).keywords(causal=False, scale=None, gqa=False, window=(4, 2))


def test_manifest_follows_the_installed_signature():
    caps = torch_varlen._capabilities()
    sig = torch_varlen._signature()
    if sig is None:
        assert not caps.causal
    else:
        assert caps.gqa == sig.enable_gqa and caps.custom_scale == sig.scale
        assert caps.window == sig.window and (caps.lse == "e") == sig.lse
        assert caps.causal == ({"bottom_right"} if sig.causal_keyword else set())


@pytest.fixture
def pretend_cuda(monkeypatch):
    """A machine that reports a GPU, so the availability checks get as far as the imports."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    flash_attn2._flash_attn.cache_clear()
    flash_attn4._cute.cache_clear()
    yield
    flash_attn2._flash_attn.cache_clear()
    flash_attn4._cute.cache_clear()


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


@pytest.mark.skipif(_importable("flash_attn.flash_attn_interface"), reason="flash-attn 2 is installed here")
def test_missing_flash_attn_skips_with_install_command(pretend_cuda):
    reason = flash_attn2._available()
    assert reason is not None and "pip install flash-attn" in reason and "flash_attn_build_offline.sh" in reason


@pytest.mark.skipif(_importable("flash_attn.cute"), reason="flash-attn 4 is installed here")
def test_missing_flash_attn4_skips_with_install_command(pretend_cuda):
    reason = flash_attn4._available()
    assert reason is not None and "pip install --pre flash-attn-4" in reason


def test_without_cuda_every_flash_implementation_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for available in (flash_attn2._available, flash_attn4._available):
        assert "CUDA" in available()


def test_head_dims_come_from_the_offline_build_record(tmp_path, monkeypatch):
    (tmp_path / "flash_attn").mkdir()
    (tmp_path / "flash_attn" / "__init__.py").write_text("")  # a regular package: found before an installed one
    (tmp_path / "flash_attn_build.txt").write_text("flash_attn=2.8.3.post2\nhead_dims=64 128\nfeatures=core\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "flash_attn", raising=False)
    flash_attn2.build_record.cache_clear()
    try:
        assert flash_attn2.supported_head_dims() == {64, 128}
        assert flash_attn2.build_record()["features"] == "core"
    finally:
        flash_attn2.build_record.cache_clear()


def test_without_a_build_record_every_candidate_head_dim_is_declared(monkeypatch):
    monkeypatch.setattr(flash_attn2, "build_record", lambda: {})
    assert flash_attn2.supported_head_dims() == set(flash_attn2.CANDIDATE_HEAD_DIMS)


def test_flash_attn4_deviations_apply_on_sm90_only(monkeypatch):
    """Its sm90 backward refuses GQA with Dv != D; other architectures have other backward kernels, where a strict
    entry could turn a pass into XPASS(strict), so the entries exist only where they were measured."""
    from attnconf import registered
    from attnconf.expected_failures import for_implementation

    impl = registered()["flash-attn4"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    entries = for_implementation(impl)
    assert sorted(entries) == [f"conformance/test_value_head_dim.py::test_value_head_dim_gradients[flash-attn4-{dv}]"
                               for dv in (128, 32)]
    assert all("head_dim == head_dim_v" in reason for reason in entries.values())
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (10, 0))
    assert for_implementation(impl) == {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert for_implementation(impl) == {}
