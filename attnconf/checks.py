"""Run an implementation on a case and judge it against the float64 golden (see ``tolerance.py``).

``check_dense`` and ``check_varlen`` are what the contract tests call: they compute the golden and the
same-dtype reference from the same inputs, run the implementation (forward, and backward when the case asks),
compare out, dQ, dK, dV, record the ratios, and raise AssertionError naming the case and every tensor's error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .failures import ConformanceFailure, NumericsFailure, WrongDevice, WrongDtype, WrongShape
from .inputs import (
    DenseCase,
    Inputs,
    KvCacheCase,
    VarlenCase,
    make_dense_inputs,
    make_kvcache_inputs,
    make_varlen_inputs,
)
from .reference import (
    RoundingTerms,
    fused_formulation,
    fused_formulation_reversed,
    fused_formulation_varlen,
    reference_attention,
    reference_varlen_attention,
    rounding_terms,
    rounding_terms_varlen,
)
from .registry import Implementation
from .tolerance import Comparison, compare, compare_lse

Recorder = Callable[[Comparison], None]
# the reference formulations beside autograd; the largest error among all of them sets the tolerance
FUSED_FORMULATIONS = (fused_formulation, fused_formulation_reversed)


@dataclass
class Outcome:
    """What one run produced: the output and, for backward cases, dQ, dK, dV (by name)."""

    out: torch.Tensor
    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    lse: torch.Tensor | None = None  # [B, Hq, Sq], natural log, when the call returned it

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"out": self.out, **self.grads}


def run_with_grads(fn: Callable[..., torch.Tensor], inputs: Inputs, *, backward: bool, dtype=None, lse_base=None,
                   **kwargs) -> Outcome:
    """Call ``fn(q, k, v, **kwargs)`` on fresh leaves (cast to ``dtype`` if given); backward with ``dout``.

    With ``return_lse=True`` in ``kwargs`` the call returns ``(out, lse)``, lse in ``lse_base`` ("e" or "2");
    the outcome holds it in the natural base.
    """
    # without a cast the leaves are the input tensors themselves (same storage and strides: views stay views)
    cast = (lambda t: t.detach().to(dtype)) if dtype is not None else (lambda t: t.detach())
    q, k, v = (cast(t).requires_grad_(backward) for t in (inputs.q, inputs.k, inputs.v))
    out = fn(q, k, v, **kwargs)
    lse = None
    if kwargs.get("return_lse"):
        if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
            raise WrongShape(f"with return_lse=True it returned {_kind(out)}, not the tuple (out, lse) of two tensors")
        out, lse = out
        lse = lse.detach() * (math.log(2.0) if lse_base == "2" else 1.0)
    elif isinstance(out, (tuple, list)):
        raise WrongShape(
            f"returned a {type(out).__name__} of {len(out)} values (out, lse?) instead of the output tensor: the "
            "canonical interface returns out alone; register a function that returns result[0]"
        )
    if not isinstance(out, torch.Tensor):
        raise WrongShape(f"returned a {type(out).__name__}, not a torch.Tensor")
    if not backward:
        return Outcome(out.detach(), lse=lse)
    if out.numel() == 0 and not out.requires_grad:  # nothing to differentiate: every gradient is zero
        return Outcome(out.detach(), {n: torch.zeros_like(t) for n, t in (("dq", q), ("dk", k), ("dv", v))}, lse)
    if not out.requires_grad:
        raise ConformanceFailure("backward is declared, but the output does not require grad (detached from q, k, v)")
    out.backward(inputs.dout.to(out.dtype))
    grads = {}
    for name, leaf in (("dq", q), ("dk", k), ("dv", v)):
        grads[name] = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
    return Outcome(out.detach(), grads, lse)


def _kind(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} values"
    return f"a {type(value).__name__}"


@dataclass
class Expected:
    """What a case should give: the float64 golden, the same-dtype references, and the rounding terms per tensor."""

    golden: Outcome
    references: list[Outcome]
    terms: dict[str, RoundingTerms]  # per tensor, for the rounding floor (see tolerance.py)
    lse_empty_row: float = -math.inf  # the lse the implementation declares for a row with no visible key


def compare_all(actual: Outcome, expected: Expected) -> list[Comparison]:
    """One comparison per tensor the implementation produced (raises AssertionError on a wrong shape or NaN)."""
    out = []
    for name, tensor in actual.tensors().items():
        out.append(compare(name, tensor, expected.golden.tensors()[name],
                           [r.tensors()[name] for r in expected.references], terms=expected.terms[name]))
    if expected.golden.lse is not None:
        if actual.lse is None:
            raise WrongShape("lse: the call returned none")
        out.append(compare_lse(actual.lse, expected.golden.lse, [r.lse for r in expected.references],
                               terms=expected.terms["lse"], empty_row=expected.lse_empty_row))
    return out


def judge(
    actual: Outcome, expected: Expected, *, what: str, expect_dtype, expect_device, record: Recorder | None = None,
) -> list[Comparison]:
    if actual.out.dtype != expect_dtype:
        raise WrongDtype(f"{what}: output dtype {actual.out.dtype}, expected the input dtype {expect_dtype}")
    if actual.out.device != expect_device:
        raise WrongDevice(f"{what}: output on {actual.out.device}, expected {expect_device}")
    try:
        comparisons = compare_all(actual, expected)
    except ConformanceFailure as exc:  # wrong shape, NaN: name the case
        raise type(exc)(f"{what}: {exc}") from None
    for c in comparisons:
        if record is not None:
            record(c)
    failed = [c for c in comparisons if not c.passed]
    if failed:
        lines = "\n  ".join(c.describe() for c in comparisons)
        worst = max(failed, key=lambda c: c.ratio)
        raise NumericsFailure(
            f"{what}: {', '.join(c.tensor for c in failed)} out of tolerance (worst {worst.tensor}, "
            f"err/bound {worst.ratio:.3g})\n  {lines}"
        )
    return comparisons


def _fused(result: dict[str, torch.Tensor], with_lse: bool = False) -> Outcome:
    lse = result.pop("lse", None)
    return Outcome(result.pop("out"), result, lse if with_lse else None)


def dense_options(case: DenseCase, inputs: Inputs) -> dict:
    """The keyword arguments of a dense case's call (those in use), the same for the references and the
    implementation."""
    options = dict(key_padding_mask=inputs.key_padding_mask, causal=case.causal, scale=case.scale,
                   window=case.window, softcap=case.softcap, alibi_slopes=inputs.alibi_slopes, sink=inputs.sink)
    return {name: value for name, value in options.items() if value is not None}


def dense_references(case: DenseCase, inputs: Inputs, lse_empty_row: float = -math.inf) -> Expected:
    """The golden in float64, the reference formulations in the test dtype and the rounding terms of a dense case."""
    kwargs = dense_options(case, inputs)
    lse = dict(return_lse=True) if case.lse else {}
    golden = run_with_grads(reference_attention, inputs, backward=case.backward, dtype=torch.float64, **kwargs, **lse)
    autograd = run_with_grads(reference_attention, inputs, backward=case.backward, **kwargs, **lse)
    dout = inputs.dout if case.backward else None
    fused = [_fused(f(inputs.q, inputs.k, inputs.v, dout, **kwargs), case.lse) for f in FUSED_FORMULATIONS]
    terms = rounding_terms(inputs.q, inputs.k, inputs.v, dout, **kwargs)
    return Expected(golden, [autograd, *fused], terms, lse_empty_row)


def run_dense(impl: Implementation, case: DenseCase, inputs: Inputs) -> Outcome:
    lse = dict(return_lse=True, lse_base=impl.capabilities.lse) if case.lse else {}
    return run_with_grads(impl, inputs, backward=case.backward, **dense_options(case, inputs), **lse)


def check_dense(
    impl: Implementation, case: DenseCase, device, generator: torch.Generator, record: Recorder | None = None,
    inputs: Inputs | None = None, before_judging: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Judge ``impl`` on ``case``; returns what the implementation produced (for further contract checks).

    ``before_judging(outcome)`` runs first on the implementation's outcome (a contract's exact checks).
    """
    inputs = inputs or make_dense_inputs(case, device, generator)
    expected = dense_references(case, inputs, impl.capabilities.on(device).lse_empty_row)
    actual = run_dense(impl, case, inputs)
    if before_judging is not None:
        before_judging(actual)
    judge(actual, expected, what=f"{impl.name} [{case}]", expect_dtype=inputs.q.dtype,
          expect_device=inputs.q.device, record=record)
    return actual


def _varlen_call(fn, inputs: Inputs, case: VarlenCase):
    def call(q, k, v):
        return fn(q, k, v, inputs.cu_seqlens_q, inputs.cu_seqlens_k, inputs.max_seqlen_q, inputs.max_seqlen_k,
                  causal=case.causal, scale=case.scale, window=case.window)

    return call


def _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, causal=None, scale=None, window=None):
    return reference_varlen_attention(q, k, v, cu_q, cu_k, causal=causal, scale=scale, window=window)


def run_varlen(impl: Implementation, case: VarlenCase, inputs: Inputs) -> Outcome:
    return run_with_grads(_varlen_call(impl.varlen, inputs, case), inputs, backward=case.backward)


def varlen_references(case: VarlenCase, inputs: Inputs) -> Expected:
    """The golden in float64, the reference formulations in the test dtype and the rounding terms of a packed
    batch (``case`` gives causal, scale, window and backward)."""
    ref_call = _varlen_call(_reference_varlen, inputs, case)
    golden = run_with_grads(ref_call, inputs, backward=case.backward, dtype=torch.float64)
    autograd = run_with_grads(ref_call, inputs, backward=case.backward)
    dout = inputs.dout if case.backward else None
    options = dict(causal=case.causal, scale=case.scale, window=case.window)
    fused = [
        _fused(fused_formulation_varlen(inputs.q, inputs.k, inputs.v, dout, inputs.cu_seqlens_q,
                                        inputs.cu_seqlens_k, formulation=f, **options))
        for f in FUSED_FORMULATIONS
    ]
    terms = rounding_terms_varlen(inputs.q, inputs.k, inputs.v, dout, inputs.cu_seqlens_q, inputs.cu_seqlens_k,
                                  **options)
    return Expected(golden, [autograd, *fused], terms)


def check_varlen(
    impl: Implementation, case: VarlenCase, device, generator: torch.Generator, record: Recorder | None = None,
    inputs: Inputs | None = None,
) -> Outcome:
    inputs = inputs or make_varlen_inputs(case, device, generator)
    expected = varlen_references(case, inputs)
    actual = run_varlen(impl, case, inputs)
    judge(actual, expected, what=f"{impl.name} varlen [{case}]", expect_dtype=inputs.q.dtype,
          expect_device=inputs.q.device, record=record)
    return actual


def skip_reason(impl: Implementation, case, device, **extra) -> str | None:
    """Why ``impl`` cannot be asked to run ``case`` on ``device`` (a capability it does not declare), or None."""
    return impl.capabilities.missing(device=device, **{**case.needs(), **extra})


def merge_by_lse(parts: list[Outcome], empty_row: float = -math.inf) -> Outcome:
    """Attention over several key blocks from each block's (out, lse), as split-KV decoding and ring attention
    combine them: weights exp(lse_i - max), rows that see no key in any block give 0 and lse -inf."""
    lses = torch.stack([torch.where(p.lse == empty_row, -math.inf, p.lse.double()) for p in parts])  # [n, B, H, Sq]
    top = lses.amax(dim=0)
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    weights = torch.exp(lses - top)  # 0 for a block in which the row sees nothing
    total = weights.sum(dim=0)
    safe_total = torch.where(total == 0, torch.ones_like(total), total)
    outs = torch.stack([p.out.double() for p in parts])  # [n, B, Sq, H, D]
    merged = (weights.transpose(-1, -2)[..., None] * outs).sum(dim=0) / safe_total.transpose(-1, -2)[..., None]
    lse = torch.where(total == 0, -math.inf, top + torch.log(safe_total))
    return Outcome(merged.to(parts[0].out.dtype), lse=lse.float())


def check_lse_merge(impl: Implementation, case: DenseCase, split: int, device, generator: torch.Generator,
                    record: Recorder | None = None) -> Outcome:
    """LSE-2: the keys cut at ``split`` into two blocks, each run alone with ``return_lse``, merged through their
    LSEs (``merge_by_lse``), equal attention over all keys (out and lse), judged as one call.

    A sink belongs to one block only (the first), as a decoder adds it once. The references (autograd and the fused
    formulations in the test dtype) are merged the same way.
    """
    if case.causal is not None or case.window is not None or case.alibi is not None or case.backward:
        raise ValueError("the merge contract cuts the keys: positions must not matter (no causal, window, ALiBi)")
    case = case.replace(lse=True)
    inputs = make_dense_inputs(case, device, generator)
    expected = dense_references(case, inputs)
    blocks = []
    for keys in (slice(0, split), slice(split, None)):
        part = Inputs(inputs.q, inputs.k[:, keys], inputs.v[:, keys], inputs.dout,
                      key_padding_mask=None if inputs.key_padding_mask is None else inputs.key_padding_mask[:, keys],
                      alibi_slopes=None, sink=inputs.sink if keys.start == 0 else None)
        blocks.append((case.replace(seqlen_k=part.k.shape[1], sink=part.sink is not None), part))
    empty = impl.capabilities.on(device).lse_empty_row
    actual = merge_by_lse([run_dense(impl, c, p) for c, p in blocks], empty)
    references = []
    for formulation in FUSED_FORMULATIONS:
        references.append(merge_by_lse([
            _fused(formulation(p.q, p.k, p.v, None, **dense_options(c, p)), with_lse=True) for c, p in blocks]))
    references.append(merge_by_lse([run_with_grads(reference_attention, p, backward=False, return_lse=True,
                                                   **dense_options(c, p)) for c, p in blocks]))
    judge(actual, Expected(expected.golden, references, expected.terms), what=f"{impl.name} [{case}] keys cut at "
          f"{split}, merged by lse", expect_dtype=inputs.q.dtype, expect_device=inputs.q.device, record=record)
    return actual


def check_kvcache(impl: Implementation, case: KvCacheCase, device, generator: torch.Generator,
                  record: Recorder | None = None) -> Outcome:
    """KVCACHE-*, PAGED-*: the call against the cache equals the packed batch of each sequence's valid keys (the
    reference and its tolerance are those of ``check_varlen``), forward only."""
    inputs = make_kvcache_inputs(case, device, generator)
    packed = inputs.packed
    expected = varlen_references(VarlenCase(causal=case.causal, scale=case.scale), packed)
    what = f"{impl.name} kvcache [{case}]"
    out = impl.kvcache(inputs.q, inputs.k_cache, inputs.v_cache, inputs.cache_seqlens, block_table=inputs.block_table,
                       causal=case.causal, scale=case.scale)
    if not isinstance(out, torch.Tensor):
        raise WrongShape(f"{what}: returned {_kind(out)}, not the output tensor")
    if tuple(out.shape) != tuple(inputs.q.shape):
        raise WrongShape(f"{what}: out shape {tuple(out.shape)}, expected q's {tuple(inputs.q.shape)}")
    actual = Outcome(out.detach().reshape(packed.q.shape))
    judge(actual, expected, what=what, expect_dtype=inputs.q.dtype, expect_device=inputs.q.device, record=record)
    return actual
