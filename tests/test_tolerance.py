"""The pass/fail rule: error relative to the reference formulations' error, a rounding floor, and a cap."""

import pytest
import torch

from attnconf.reference import RoundingTerms, rounding_terms
from attnconf.tolerance import CAP, FACTORS, compare

NO_TERMS = RoundingTerms(stored=0.0, plain=0.0, scores=0.0, length=1)


def test_passes_within_factor_of_reference_error():
    golden = torch.linspace(-1, 1, 100, dtype=torch.float64)
    reference = (golden + 1e-4).float()
    actual = (golden + 1.5e-4).float()
    c = compare("out", actual, golden, [reference], terms=NO_TERMS)
    assert c.passed and 0.5 < c.ratio < 1.0  # err/bound: 1.5e-4 / (2 x 1e-4)


def test_fails_beyond_factor_and_ratio_above_one():
    golden = torch.linspace(-1, 1, 100, dtype=torch.float64)
    c = compare("out", (golden + 0.05).half(), golden, [(golden + 1e-3).half()], terms=NO_TERMS)
    assert not c.passed and c.ratio > 1.0
    assert "bound" in c.describe()


def test_worst_reference_sets_the_bound():
    golden = torch.ones(10, dtype=torch.float64)
    actual = torch.full((10,), 1 + 5e-3)
    assert not compare("dq", actual, golden, [torch.full((10,), 1 + 1e-3)], terms=NO_TERMS).passed
    assert compare("dq", actual, golden, [torch.full((10,), 1 + 1e-3), torch.full((10,), 1 + 2e-3)],
                   terms=NO_TERMS).passed


def test_floor_does_not_collapse_where_the_true_value_is_zero():
    # one key: dQ is exactly 0 and the references compute it exactly; a kernel whose D = rowsum(dO * O) sums in
    # another order than dP = dO . v leaves ~1e-7 there, which must pass, while a real error must not
    g = torch.Generator().manual_seed(0)
    q, k, v, dout = (torch.randn(1, 1, 1, 64, generator=g) for _ in range(4))
    terms = rounding_terms(q, k, v, dout)["dq"]
    golden = torch.zeros(1, 1, 1, 64, dtype=torch.float64)
    assert compare("dq", torch.full((1, 1, 1, 64), 2e-7), golden, [golden.float()], terms=terms).passed
    assert not compare("dq", torch.full((1, 1, 1, 64), 1e-3), golden, [golden.float()], terms=terms).passed


def test_cap_refuses_a_garbage_reference():
    # a same-dtype reference as far off as the golden's size would let zeros pass; the cap does not
    golden = torch.linspace(1, 2, 100, dtype=torch.float64)
    garbage_reference = torch.zeros(100, dtype=torch.bfloat16)
    zeros = compare("out", torch.zeros(100, dtype=torch.bfloat16), golden, [garbage_reference], terms=NO_TERMS)
    assert zeros.capped and not zeros.passed
    assert zeros.bound == pytest.approx(CAP * 2.0)
    near = compare("out", (golden + 0.1).bfloat16(), golden, [garbage_reference], terms=NO_TERMS)
    assert near.passed


def test_factors():
    assert FACTORS == {"out": 2.0, "lse": 2.0, "dq": 3.0, "dk": 3.0, "dv": 3.0}


def test_lse_rows_with_no_visible_key_must_hold_the_declared_value():
    from attnconf.failures import NumericsFailure
    from attnconf.tolerance import compare_lse

    golden = torch.tensor([[[1.0, float("-inf"), 2.0]]], dtype=torch.float64)
    terms = RoundingTerms(0.0, 3.0, 1.0, 8)
    ok = compare_lse(torch.tensor([[[1.0, float("-inf"), 2.0]]]), golden, [golden.float()], terms=terms)
    assert ok.passed and ok.error == 0
    with pytest.raises(NumericsFailure, match="expected -inf"):
        compare_lse(torch.tensor([[[1.0, float("inf"), 2.0]]]), golden, [golden.float()], terms=terms)
    declared = compare_lse(torch.tensor([[[1.0, float("inf"), 2.0]]]), golden, [golden.float()], terms=terms,
                           empty_row=float("inf"))
    assert declared.passed
    off = compare_lse(torch.tensor([[[1.5, float("-inf"), 2.0]]]), golden, [golden.float()], terms=terms)
    assert not off.passed


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_fails(bad):
    golden = torch.zeros(3, dtype=torch.float64)
    actual = torch.tensor([0.0, bad, 0.0])
    with pytest.raises(AssertionError, match="non-finite"):
        compare("out", actual, golden, [actual.nan_to_num()], terms=NO_TERMS)


def test_shape_mismatch_fails():
    with pytest.raises(AssertionError, match="shape"):
        compare("out", torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.float64), [torch.zeros(3, 2)], terms=NO_TERMS)
