"""The pass/fail rule: error relative to the reference formulations' error, plus a rounding floor."""

import pytest
import torch

from attnconf.tolerance import FACTORS, compare


def test_passes_within_factor_of_reference_error():
    golden = torch.linspace(-1, 1, 100, dtype=torch.float64)
    reference = (golden + 1e-4).float()
    actual = (golden + 1.5e-4).float()
    c = compare("out", actual, golden, [reference])
    assert c.passed and 1.0 < c.ratio < FACTORS["out"]


def test_fails_beyond_factor():
    golden = torch.linspace(-1, 1, 100, dtype=torch.float64)
    c = compare("out", (golden + 0.05).half(), golden, [(golden + 1e-3).half()])
    assert not c.passed
    assert "bound" in c.describe()


def test_worst_reference_sets_the_bound():
    golden = torch.zeros(10, dtype=torch.float64)
    actual = torch.full((10,), 5e-3)
    assert not compare("dq", actual, golden, [torch.full((10,), 1e-3)]).passed
    assert compare("dq", actual, golden, [torch.full((10,), 1e-3), torch.full((10,), 2e-3)]).passed


def test_floor_allows_one_rounding_where_the_reference_is_exact():
    # one key: out = v exactly, so the references' error is 0; a kernel one ulp off must still pass
    golden = torch.randn(64, generator=torch.Generator().manual_seed(0)).double()  # exactly representable
    one_ulp_off = golden.float().nextafter(torch.tensor(float("inf")))
    assert compare("out", one_ulp_off, golden, [golden.float()]).passed
    assert not compare("out", golden.float() + 1e-3, golden, [golden.float()]).passed


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_fails(bad):
    golden = torch.zeros(3, dtype=torch.float64)
    actual = torch.tensor([0.0, bad, 0.0])
    with pytest.raises(AssertionError, match="non-finite"):
        compare("out", actual, golden, [actual.nan_to_num()])


def test_shape_mismatch_fails():
    with pytest.raises(AssertionError, match="shape"):
        compare("out", torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.float64), [torch.zeros(3, 2)])
