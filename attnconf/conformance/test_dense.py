"""Dense attention: the definition, output properties, lengths, head dims, scale, dtypes and layouts."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attnconf.checks import run_dense
from attnconf.capabilities import REQUIRED_HEAD_DIM
from attnconf.failures import ConformanceFailure, WrongDevice, WrongDtype, WrongShape
from attnconf.inputs import DenseCase, make_dense_inputs
from .strategies import dense_cases

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.contract("DENSE-1")
@given(data=st.data(), seed=st.integers(0, 2**31))
def test_matches_definition_on_random_shapes(impl, device, dense, data, seed):
    case = data.draw(dense_cases(impl.capabilities.on(device)), label="case")
    dense(case, seed=seed)


@pytest.mark.contract("DENSE-1")
def test_fresh_inputs_give_fresh_results(dense):
    case = DenseCase()
    dense(case)
    dense(case)  # same shape, new random numbers: a cached result would fail here


@pytest.mark.contract("DENSE-2")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_output_dtype_device_shape(impl, device, generator, require, dtype):
    case = DenseCase(batch=3, seqlen_q=7, seqlen_k=11, heads_q=4, heads_kv=4, dtype=dtype)
    case = require(case)
    inputs = make_dense_inputs(case, device, generator)
    out = run_dense(impl, case, inputs).out
    if tuple(out.shape) != (3, 7, 4, 64):
        raise WrongShape(f"shape {tuple(out.shape)}, expected (3, 7, 4, 64)")
    if out.dtype != dtype:
        raise WrongDtype(f"dtype {out.dtype}, expected {dtype}")
    if out.device != inputs.q.device:
        raise WrongDevice(f"device {out.device}, expected {inputs.q.device}")


@pytest.mark.contract("DENSE-3")
@pytest.mark.parametrize("seqlen_q,seqlen_k,batch", [(1, 239, 1), (113, 203, 1), (203, 113, 1), (128, 17, 1), (17, 1, 1),
                                                      (29, 41, 2), (41, 29, 3)])
def test_different_query_and_key_lengths(dense, seqlen_q, seqlen_k, batch):
    # batch > 1 too: a kernel that confuses the query and key row strides is right on batch element 0 only
    dense(DenseCase(batch=batch, seqlen_q=seqlen_q, seqlen_k=seqlen_k))


@pytest.mark.contract("HEAD-1")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_head_dim_64(impl, device, dense, dtype):
    caps = impl.capabilities.on(device)
    if caps.head_dims is not None and REQUIRED_HEAD_DIM not in caps.head_dims and dtype in caps.dtypes:
        raise ConformanceFailure(f"{impl.name} does not declare head_dim {REQUIRED_HEAD_DIM} (declares "
                                 f"{sorted(caps.head_dims)}): every implementation must support it")
    dense(DenseCase(head_dim=REQUIRED_HEAD_DIM, dtype=dtype, backward=caps.backward))


@pytest.mark.contract("HEAD-2")
@pytest.mark.parametrize("head_dim", [32, 128])
def test_other_head_dims(impl, device, dense, head_dim):
    backward = impl.capabilities.on(device).backward
    dense(DenseCase(head_dim=head_dim, backward=backward))


@pytest.mark.contract("SCALE-1")
@pytest.mark.parametrize("scale", [0.3, 1.0])
def test_custom_scale(dense, scale):
    dense(DenseCase(scale=scale))


@pytest.mark.contract("DTYPE-1")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("causal", [None, "bottom_right", "top_left"])
def test_dtypes(impl, device, dense, dtype, causal):
    caps = impl.capabilities.on(device)
    dense(DenseCase(seqlen_q=45, seqlen_k=45, dtype=dtype, causal=causal, backward=caps.backward))


@pytest.mark.contract("DTYPE-1")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_long_rows_accumulate_in_float32(impl, device, generator, dense, dtype):
    # Values that share an offset do not average out over 4097 keys: a running output or softmax sum kept in fp16
    # or bf16 drifts past the bound here, while on zero-mean values it hides inside it. Half dtypes only: against
    # the fp32 golden, correct fp32 kernels that merely sum in another order come close to the bound on this input.
    caps = impl.capabilities.on(device)
    case = DenseCase(batch=1, seqlen_q=16, seqlen_k=4097, heads_q=1, heads_kv=1, dtype=dtype, backward=caps.backward)
    inputs = make_dense_inputs(case, device, generator)
    inputs.v = inputs.v + 3.0
    dense(case, inputs)


def _transposed(t: torch.Tensor) -> torch.Tensor:
    """The same values held in a [B, H, S, D] buffer and viewed as [B, S, H, D]."""
    return t.transpose(1, 2).contiguous().transpose(1, 2)


def _head_slice(t: torch.Tensor) -> torch.Tensor:
    """The same values as a slice of a buffer with twice the heads."""
    bigger = torch.cat([t, torch.full_like(t, 7.0)], dim=2)
    return bigger[:, :, : t.shape[2]]


@pytest.mark.contract("LAYOUT-1")
@pytest.mark.parametrize("make_view", [_transposed, _head_slice], ids=["transposed", "head-slice"])
def test_non_contiguous_inputs(impl, device, generator, require, dense, make_view):
    caps = impl.capabilities.on(device)
    case = require(DenseCase(seqlen_q=19, seqlen_k=23, backward=caps.backward))
    inputs = make_dense_inputs(case, device, generator)
    inputs.q, inputs.k, inputs.v = (make_view(t) for t in (inputs.q, inputs.k, inputs.v))
    assert not inputs.q.is_contiguous() and inputs.q.stride(-1) == 1
    dense(case, inputs)
