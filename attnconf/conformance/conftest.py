"""Fixtures shared by the contract tests: capability gating and the judged runs."""

from __future__ import annotations

import pytest

from attnconf.checks import check_dense, check_varlen, skip_reason
from attnconf.inputs import resolve_dtype


@pytest.fixture
def require(impl, device):
    """``require(case, **extra)`` skips unless ``impl`` declares everything ``case`` (and ``extra``) needs.

    Returns the case with its dtype resolved (a case with dtype None runs in the first declared dtype).
    """

    def require_(case, **extra):
        case = resolve_dtype(case, impl.capabilities.on(device).dtypes)
        reason = skip_reason(impl, case, device, **extra)
        if reason:
            pytest.skip(f"{impl.name}: {reason}")
        return case

    return require_


@pytest.fixture
def dense(impl, device, generator, example_generator, record_comparison, require):
    """``dense(case, inputs=None, seed=None, before_judging=None)``: gate on capabilities, run, judge.

    ``before_judging(outcome)`` runs on the implementation's outcome before the tolerance check (exact checks
    whose message says more than "out of tolerance").

    Returns the implementation's outcome. Hypothesis tests pass a drawn ``seed`` so each example's tensors are a
    function of the example alone (shrinking replays see the same numbers).
    """

    def run(case, inputs=None, *, seed: int | None = None, before_judging=None):
        case = require(case)
        gen = generator if seed is None else example_generator(seed)
        return check_dense(impl, case, device, gen, record_comparison, inputs, before_judging=before_judging)

    return run


@pytest.fixture
def varlen(impl, device, generator, example_generator, record_comparison, require):
    """``varlen(case, inputs=None)``: as ``dense`` for packed batches."""

    def run(case, inputs=None, *, seed: int | None = None):
        case = require(case)
        gen = generator if seed is None else example_generator(seed)
        return check_varlen(impl, case, device, gen, record_comparison, inputs)

    return run
