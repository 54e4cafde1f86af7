"""Capability manifests: skip reasons that name the capability, per-device overrides."""

import pytest
import torch

from attnconf import Capabilities


def test_missing_names_the_capability():
    caps = Capabilities(causal={"bottom_right"})
    assert caps.missing(dtype=torch.float32, head_dim=64) is None
    assert "capability: causal" in caps.missing(causal="top_left")
    assert "capability: key_padding_mask" in caps.missing(key_padding_mask=True)
    assert "capability: varlen" in caps.missing(varlen=True)
    assert "capability: head_dims" in caps.missing(head_dim=128)
    assert "capability: devices" in caps.missing(device="cuda")


def test_device_overrides():
    caps = Capabilities(
        devices={"cpu", "cuda"}, overrides={"cuda": {"dtypes": {torch.float16}, "key_padding_mask": True}}
    )
    assert caps.missing(device="cpu", dtype=torch.float32) is None
    assert "dtype" in caps.missing(device="cuda", dtype=torch.float32)
    assert caps.on("cuda").key_padding_mask and not caps.on("cpu").key_padding_mask


def test_every_head_dim():
    assert Capabilities(head_dims=None).missing(head_dim=80) is None


def test_max_seqlen_square_causal_and_mask_with_causal():
    caps = Capabilities(max_seqlen=128, causal={"top_left"}, causal_unequal=False, key_padding_mask=True,
                        mask_with_causal=False)
    assert "max_seqlen" in caps.missing(seqlen=129)
    assert "causal_unequal" in caps.missing(causal="top_left", causal_unequal=True)
    assert "mask_with_causal" in caps.missing(causal="top_left", key_padding_mask=True, mask_with_causal=True)
    assert caps.missing(key_padding_mask=True) is None


def test_cases_without_dtype_run_in_the_first_declared_one():
    from attnconf.inputs import DenseCase, resolve_dtype

    assert resolve_dtype(DenseCase(), {torch.bfloat16, torch.float16}).dtype == torch.float16
    assert resolve_dtype(DenseCase(), {torch.float32, torch.float16}).dtype == torch.float32
    assert resolve_dtype(DenseCase(dtype=torch.bfloat16), {torch.float32}).dtype == torch.bfloat16


@pytest.mark.parametrize(
    "kwargs,message",
    [({"causal": {"diagonal"}}, "unknown causal alignment"), ({"overrides": {"cuda": {"speed": 1}}}, "unknown")],
)
def test_invalid_manifests(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Capabilities(**kwargs)


def test_describe_is_json_friendly():
    import json

    text = json.dumps(Capabilities(overrides={"cuda": {"dtypes": {torch.bfloat16}}}).describe())
    assert "bfloat16" in text
