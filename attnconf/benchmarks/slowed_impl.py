"""A deliberately slowed implementation, to show that a comparison against a saved baseline catches a regression.

    python -m pytest benchmarks --benchmark-only --impl-module attnconf.benchmarks.slowed_impl:slowed --impl sdpa-flash \\
        --benchmark-compare=0001 --benchmark-compare-fail=mean:10%

``slowed()`` replaces the implementation named by ``ATTNCONF_SLOWED_IMPL`` (default ``sdpa-flash``) with one that
computes the same attention but runs one extra forward per call and one more in its backward. It keeps the name,
so its results carry the same benchmark names as the baseline's and are compared with them.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from attnconf import registry
from attnconf.registry import Implementation

DEFAULT_TARGET = "sdpa-flash"


class _ExtraWorkInBackward(torch.autograd.Function):
    """Identity on the output whose backward first calls ``work()``."""

    @staticmethod
    def forward(ctx, out, work):
        ctx.work = work
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        ctx.work()
        return grad, None


def _slower(fn):
    def slowed_fn(*args, **options):
        detached = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]

        def extra_forward():
            with torch.no_grad():
                fn(*detached, **options)

        extra_forward()
        return _ExtraWorkInBackward.apply(fn(*args, **options), extra_forward)

    return slowed_fn


def slow_down(name: str) -> Implementation:
    """Replace the registered implementation ``name`` by its slowed copy (same name, manifest and availability)."""
    original = registry.registered().get(name)
    if original is None:
        raise ValueError(f"cannot slow down {name!r}: not registered ({', '.join(registry.registered())})")
    slowed_impl = dataclasses.replace(
        original,
        forward=_slower(original.forward),
        varlen_forward=None if original.varlen_forward is None else _slower(original.varlen_forward),
        description=f"{original.description} [deliberately slowed: one extra forward per call and per backward]",
    )
    registry.unregister(name)
    return registry.register(slowed_impl)


def slowed() -> list[Implementation]:
    """Entry for ``--impl-module attnconf.benchmarks.slowed_impl:slowed``."""
    return [slow_down(os.environ.get("ATTNCONF_SLOWED_IMPL", DEFAULT_TARGET))]
