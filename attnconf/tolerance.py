"""How close is close enough: error relative to a same-dtype reference's error against a float64 golden.

An output passes when ``max|out - golden| <= factor * max|ref - golden| + floor``, where ``ref`` ranges over the
reference formulations run in the test dtype (the larger error counts: see ``reference.fused_formulation``) and
``floor`` is twice the error of one rounding at the data's magnitude: ``max|(golden + 0.3 - 0.3) - golden|`` in the
test dtype, as flash-attention's Hopper tests do. It keeps a tensor that the references happen to compute
exactly (a single key: out = v) from demanding bit-exactness. The measured ratio
``max|out - golden| / (max|ref - golden| + floor)`` is recorded for the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

# Multipliers on the same-dtype reference error, per tensor (flash-attention uses 2 for out, 2-3 for grads).
FACTORS = {"out": 2.0, "dq": 3.0, "dk": 3.0, "dv": 3.0}


@dataclass(frozen=True)
class Comparison:
    tensor: str
    error: float  # max |actual - golden|
    reference_error: float  # max |reference - golden|
    floor: float
    factor: float

    @property
    def bound(self) -> float:
        return self.factor * self.reference_error + self.floor

    @property
    def ratio(self) -> float:
        """Error in units of (reference error + floor); passes at <= factor (approximately)."""
        return self.error / (self.reference_error + self.floor) if self.error else 0.0

    @property
    def passed(self) -> bool:
        return self.error <= self.bound

    def describe(self) -> str:
        return (
            f"{self.tensor}: max|err|={self.error:.3e} vs bound {self.bound:.3e} "
            f"(= {self.factor:g} x reference error {self.reference_error:.3e} + floor {self.floor:.3e}); "
            f"ratio {self.ratio:.2f}"
        )


def compare(tensor: str, actual: torch.Tensor, golden: torch.Tensor, references: Sequence[torch.Tensor]) -> Comparison:
    """Compare ``actual`` and the ``references`` (all in the test dtype) against ``golden`` (float64)."""
    if tuple(actual.shape) != tuple(golden.shape):
        raise AssertionError(f"{tensor}: shape {tuple(actual.shape)}, expected {tuple(golden.shape)}")
    golden = golden.detach().double()
    if not torch.isfinite(actual).all():
        bad = (~torch.isfinite(actual)).sum().item()
        raise AssertionError(f"{tensor}: {bad} non-finite value(s) (NaN or inf) in the result")
    err = _max_abs(actual.detach().double() - golden.to(actual.device))
    ref_err = max(_max_abs(ref.detach().double().to(golden.device) - golden) for ref in references)
    shifted = golden.to(actual.dtype) + 0.3
    rounding = _max_abs((shifted - 0.3).double() - golden)
    return Comparison(tensor, err, ref_err, 2.0 * rounding + 1e-12, FACTORS[tensor])


def _max_abs(t: torch.Tensor) -> float:
    return t.abs().max().item() if t.numel() else 0.0
