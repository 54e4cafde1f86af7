"""How close is close enough: error relative to a same-dtype reference's error against a float64 golden.

For each tensor (out, dQ, dK, dV) an implementation passes when ``max|out - golden| <= bound``, with

    bound = min(factor * max|ref - golden| + floor, cap)
    floor = u(dtype) * S + u(float32) * sqrt(L) * (T + A)
    cap   = max(CAP * max|golden|, u(dtype) * S + u(float32) * sqrt(L) * T)

- ``ref`` ranges over the reference formulations run in the test dtype (the largest error counts: see
  ``reference.fused_formulation``), ``factor`` is 2 for the output and 3 for gradients (flash-attention's rule).
- ``u`` is the unit roundoff (half the machine epsilon). ``S`` is the largest sum of absolute terms of what a standard kernel stores in the test dtype on the way (P, O,
  dS), ``T`` the largest sum of absolute terms behind one element before cancellation, ``A`` the same with each
  term weighted by the size of its score, and ``L`` the reduction length (``reference.RoundingTerms``). The floor is what rounding to
  the test dtype, plus float32 scores and float32 sums in any order, can cost. It does not collapse where the true
  value is exactly zero (one key makes dQ = 0), and in float32 it allows for the summation order of SIMD kernels
  and thread counts, which a same-dtype reference samples only once.
- The cap keeps a garbage reference from granting a garbage bound: in half precision at large logits the
  same-dtype reference rounds the scores themselves to the half dtype, its error approaches the golden's size,
  and all-zero or random results would pass. No result further from the golden than ``CAP`` of the golden's
  largest value passes, unless rounding alone (without the score term) may cost more: tensors whose true value
  is exactly zero.

``ratio = error / bound`` is recorded for the report: a result passes at ratio <= 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .failures import NonFiniteResult, NumericsFailure, WrongShape
from .reference import RoundingTerms, max_abs

# Multipliers on the same-dtype reference error, per tensor (flash-attention uses 2 for out, 2-3 for grads).
FACTORS = {"out": 2.0, "lse": 2.0, "dq": 3.0, "dk": 3.0, "dv": 3.0}
# No result off by more than this fraction of the golden's largest magnitude passes (see the module docstring).
CAP = 0.25
ACCUMULATION_EPS = torch.finfo(torch.float32).eps / 2  # unit roundoff of float32


@dataclass(frozen=True)
class Comparison:
    tensor: str
    error: float  # max |actual - golden|
    reference_error: float  # max |reference - golden|
    floor: float
    factor: float
    cap: float = math.inf

    @property
    def bound(self) -> float:
        return min(self.factor * self.reference_error + self.floor, self.cap)

    @property
    def capped(self) -> bool:
        return self.factor * self.reference_error + self.floor > self.cap

    @property
    def ratio(self) -> float:
        """Error in units of the bound: passes at <= 1."""
        if not self.error:
            return 0.0
        return self.error / self.bound if self.bound else math.inf

    @property
    def passed(self) -> bool:
        return self.error <= self.bound

    def describe(self) -> str:
        rule = (
            f"the cap {CAP:g} x max|golden|" if self.capped
            else f"{self.factor:g} x reference error {self.reference_error:.3e} + floor {self.floor:.3e}"
        )
        return f"{self.tensor}: max|err|={self.error:.3e} vs bound {self.bound:.3e} (= {rule}); err/bound {self.ratio:.2f}"


def _eps(dtype: torch.dtype) -> float:
    """The unit roundoff (half the machine epsilon): the largest relative error of one rounding to ``dtype``."""
    return torch.finfo(dtype).eps / 2 if dtype.is_floating_point else ACCUMULATION_EPS


def compare(
    tensor: str, actual: torch.Tensor, golden: torch.Tensor, references: Sequence[torch.Tensor], *,
    terms: RoundingTerms, eps_dtype: torch.dtype | None = None,
) -> Comparison:
    """Compare ``actual`` and the ``references`` (all in the test dtype) against ``golden`` (float64).

    ``terms`` are this tensor's T, A and L of the module docstring (``reference.rounding_terms``).
    """
    if tuple(actual.shape) != tuple(golden.shape):
        raise WrongShape(f"{tensor}: shape {tuple(actual.shape)}, expected {tuple(golden.shape)}")
    golden = golden.detach().double()
    if not torch.isfinite(actual).all():
        bad = (~torch.isfinite(actual)).sum().item()
        raise NonFiniteResult(f"{tensor}: {bad} non-finite value(s) (NaN or inf) in the result")
    err = max_abs(actual.detach().double() - golden.to(actual.device))
    ref_err = max(max_abs(ref.detach().double().to(golden.device) - golden) for ref in references)
    eps, accumulation = _eps(eps_dtype or references[0].dtype), ACCUMULATION_EPS * math.sqrt(max(terms.length, 1))
    floor = eps * terms.stored + accumulation * (terms.plain + terms.scores)
    cap = max(CAP * max_abs(golden), eps * terms.stored + accumulation * terms.plain)
    return Comparison(tensor, err, ref_err, floor, FACTORS[tensor], cap)


def compare_lse(
    actual: torch.Tensor, golden: torch.Tensor, references: Sequence[torch.Tensor], *, terms: RoundingTerms,
    empty_row: float = -math.inf,
) -> Comparison:
    """``compare`` for the log-sum-exp [B, H, Sq] (natural log): rows with no visible key (golden -inf) must hold
    exactly the declared ``empty_row`` value; the others are compared as any tensor."""
    if tuple(actual.shape) != tuple(golden.shape):
        raise WrongShape(f"lse: shape {tuple(actual.shape)}, expected {tuple(golden.shape)}")
    golden = golden.detach().double()
    actual = actual.detach().double().to(golden.device)
    empty = torch.isneginf(golden)
    wrong = empty & (actual != empty_row)
    if wrong.any():
        found = actual[wrong][0].item()
        raise NumericsFailure(
            f"lse: {int(wrong.sum())} row(s) with no visible key hold {found} (expected {empty_row}, the declared "
            "capability lse_empty_row)"
        )
    keep = ~empty
    return compare("lse", actual[keep], golden[keep], [r.detach().double().to(golden.device)[keep] for r in references],
                   terms=terms, eps_dtype=torch.float32)
