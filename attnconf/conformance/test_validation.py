"""Input validation: bad inputs raise a clear exception naming the problem; inputs are never modified."""

from __future__ import annotations

import pytest
import torch

from attnconf.checks import run_dense, run_varlen
from attnconf.inputs import DenseCase, VarlenCase, make_dense_inputs, make_varlen_inputs
from attnconf.layouts import LayoutCannotExpress

SHAPE_WORDS = ("shape", "rank", "dim", "size", "length", "batch", "seqlen")


def _raises_naming(call, words, what: str) -> None:
    try:
        call()
    except LayoutCannotExpress as exc:  # the adapter could not hand the bad input on: no verdict, and no pass
        pytest.skip(f"{what}: cannot be tested through the registered layout: {exc}")
    except Exception as exc:  # any exception type is fine, as long as it says what is wrong
        message = f"{type(exc).__name__}: {exc}".lower()
        assert any(w in message for w in words), f"{what}: raised {message[:300]!r}, which names none of {words}"
        return
    pytest.fail(f"{what}: no exception raised (a silent answer on invalid input)")


def _dense_call(impl, inputs, **overrides):
    args = dict(q=inputs.q, k=inputs.k, v=inputs.v, key_padding_mask=inputs.key_padding_mask)
    args.update(overrides)
    return lambda: impl(**args)


BAD_SHAPES = {
    "q-rank-3": (lambda i: dict(q=i.q[0]), SHAPE_WORDS),
    "batch-mismatch": (lambda i: dict(k=i.k[:1], v=i.v[:1]), SHAPE_WORDS),
    "kv-length-mismatch": (lambda i: dict(v=i.v[:, :-1]), SHAPE_WORDS),
    "head-dim-mismatch": (lambda i: dict(k=i.k[..., :32].contiguous()), SHAPE_WORDS + ("head_dim", "head dim")),
}
BAD_MASKS = {
    "mask-wrong-shape": (lambda i: dict(key_padding_mask=i.key_padding_mask[:, :-1]), ("mask",)),
    "mask-not-bool": (lambda i: dict(key_padding_mask=i.key_padding_mask.float()), ("mask",)),
}


@pytest.mark.contract("VALID-1")
@pytest.mark.parametrize("bad", list(BAD_SHAPES))
def test_wrong_shapes(impl, device, generator, require, bad):
    case = DenseCase(batch=2)
    case = require(case)
    make, words = BAD_SHAPES[bad]
    inputs = make_dense_inputs(case, device, generator)
    _raises_naming(_dense_call(impl, inputs, **make(inputs)), words, bad)


@pytest.mark.contract("VALID-1")
@pytest.mark.parametrize("bad", list(BAD_MASKS))
def test_wrong_masks(impl, device, generator, require, bad):
    case = DenseCase(batch=2, mask="random")
    case = require(case)
    make, words = BAD_MASKS[bad]
    inputs = make_dense_inputs(case, device, generator)
    _raises_naming(_dense_call(impl, inputs, **make(inputs)), words, bad)


@pytest.mark.contract("VALID-2")
def test_dtype_mismatch(impl, device, generator, require):
    declared = impl.capabilities.on(device).dtypes
    dtype = next((d for d in (torch.float32, torch.float16, torch.bfloat16) if d in declared), torch.float32)
    case = DenseCase(dtype=dtype)
    case = require(case)
    inputs = make_dense_inputs(case, device, generator)
    other = torch.float16 if dtype != torch.float16 else torch.bfloat16
    _raises_naming(_dense_call(impl, inputs, k=inputs.k.to(other)), ("dtype", "scalar type"), f"k in {other}")


@pytest.mark.contract("VALID-2")
def test_device_mismatch(impl, device, generator, require):
    if device.type == "cpu":
        pytest.skip("device mismatch needs a second device type (run with --device cuda)")
    case = DenseCase(dtype=torch.float16)
    case = require(case)
    inputs = make_dense_inputs(case, device, generator)
    _raises_naming(_dense_call(impl, inputs, k=inputs.k.cpu()), ("device", "cpu", "cuda"), "k on the CPU")


@pytest.mark.contract("VALID-3")
def test_heads_that_do_not_divide(impl, device, generator, require):
    # every implementation: one without GQA must reject unequal head counts just the same
    case = require(DenseCase()).replace(heads_q=3, heads_kv=2)
    inputs = make_dense_inputs(case, device, generator)
    _raises_naming(_dense_call(impl, inputs), ("head",), "Hq=3, Hkv=2")


@pytest.mark.contract("VALID-4")
def test_unsupported_head_dim(impl, device, generator, require):
    declared = impl.capabilities.on(device).head_dims
    if declared is None:
        pytest.skip(f"{impl.name} declares every head dim")
    head_dim = next(d for d in (48, 40, 24, 96, 80, 160, 8, 512) if d not in declared)
    case = DenseCase(head_dim=head_dim)
    case = require(case.replace(head_dim=64)).replace(head_dim=head_dim)
    inputs = make_dense_inputs(case, device, generator)
    _raises_naming(_dense_call(impl, inputs), ("head_dim", "head dim", "headdim"), f"undeclared head_dim {head_dim}")


BAD_CU_SEQLENS = {
    "int64": lambda cu, total: cu.long(),
    "not-monotonic": lambda cu, total: torch.tensor([0, 9, 4, total], dtype=torch.int32, device=cu.device),
    "not-starting-at-0": lambda cu, total: cu + 1,
    "not-ending-at-total": lambda cu, total: torch.cat([cu[:-1], cu[-1:] - 1]),
    "too-short": lambda cu, total: cu[-1:],
    "batch-differs-from-k": lambda cu, total: torch.cat([cu[:1], cu[2:]]),
}


@pytest.mark.contract("VALID-5")
@pytest.mark.parametrize("bad", list(BAD_CU_SEQLENS))
def test_bad_cu_seqlens(impl, device, generator, require, bad):
    case = VarlenCase(lengths_q=(4, 6, 3), lengths_k=(4, 6, 3))
    case = require(case)
    if impl.varlen_forward is None:
        pytest.skip(f"{impl.name} has no packed API of its own: packed batches reach it through attnconf's pad/unpad "
                    "adapter, whose cu_seqlens checks would not be the implementation's (register varlen_forward)")
    inputs = make_varlen_inputs(case, device, generator)
    cu_q = BAD_CU_SEQLENS[bad](inputs.cu_seqlens_q, inputs.q.shape[0])

    def call():
        return impl.varlen(inputs.q, inputs.k, inputs.v, cu_q, inputs.cu_seqlens_k, inputs.max_seqlen_q,
                           inputs.max_seqlen_k)

    _raises_naming(call, ("cu_seqlens",), f"cu_seqlens_q {bad}")


def _snapshot(*tensors):
    return [None if t is None else t.detach().clone() for t in tensors]


def _assert_unchanged(before, after, names) -> None:
    for name, old, new in zip(names, before, after):
        if old is not None:
            assert torch.equal(old, new.detach()), f"{name} was modified in place"


@pytest.mark.contract("VALID-6")
def test_dense_inputs_not_modified(impl, device, generator, require):
    caps = impl.capabilities.on(device)
    case = DenseCase(mask="random" if caps.key_padding_mask else None, backward=caps.backward)
    case = require(case)
    inputs = make_dense_inputs(case, device, generator)
    names = ("q", "k", "v", "key_padding_mask", "dout")
    tensors = [getattr(inputs, n) for n in names]
    before = _snapshot(*tensors)
    run_dense(impl, case, inputs)
    _assert_unchanged(before, tensors, names)


@pytest.mark.contract("VALID-6")
def test_packed_inputs_not_modified(impl, device, generator, require):
    caps = impl.capabilities.on(device)
    case = VarlenCase(backward=caps.backward)
    case = require(case)
    inputs = make_varlen_inputs(case, device, generator)
    names = ("q", "k", "v", "cu_seqlens_q", "cu_seqlens_k", "dout")
    tensors = [getattr(inputs, n) for n in names]
    before = _snapshot(*tensors)
    run_varlen(impl, case, inputs)
    _assert_unchanged(before, tensors, names)
