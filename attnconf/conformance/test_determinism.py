"""Determinism, for implementations that declare it."""

from __future__ import annotations

import pytest

from attnconf.checks import run_dense, run_varlen
from attnconf.failures import NotExact
from attnconf.inputs import DenseCase, VarlenCase, make_dense_inputs, make_varlen_inputs

REPEATS = 5


def _assert_bit_identical(runs, what: str) -> None:
    first = runs[0].tensors()
    for n, run in enumerate(runs[1:], 2):
        for name, tensor in run.tensors().items():
            differ = (tensor != first[name]).sum().item()
            if differ:
                raise NotExact(f"{what}: run {n} differs from run 1 in {differ} value(s) of {name}")


@pytest.mark.contract("DET-1")
def test_dense_repeats_are_bit_identical(impl, device, generator, require):
    caps = impl.capabilities.on(device)
    case = DenseCase(batch=2, seqlen_q=130, seqlen_k=257, heads_q=4, heads_kv=2 if caps.gqa else 4,
                     backward=caps.backward)
    case = require(case, deterministic=True)
    inputs = make_dense_inputs(case, device, generator)
    _assert_bit_identical([run_dense(impl, case, inputs) for _ in range(REPEATS)], "dense")


@pytest.mark.contract("DET-1")
def test_packed_repeats_are_bit_identical(impl, device, generator, require):
    caps = impl.capabilities.on(device)
    case = VarlenCase(lengths_q=(100, 3, 77), lengths_k=(100, 3, 77), backward=caps.backward)
    case = require(case, deterministic=True)
    inputs = make_varlen_inputs(case, device, generator)
    _assert_bit_identical([run_varlen(impl, case, inputs) for _ in range(REPEATS)], "packed")
