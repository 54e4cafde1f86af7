"""Implementations that break in every way people's kernels do, for ``tests/test_robust_runs.py``.

Each misbehaves on a float32 call (other dtypes run the reference), so one run shows every failure class once.
Registered through the public path: ``--impl-module tests.broken.impls:BROKEN``.
"""

from __future__ import annotations

import ctypes
import os
import time

import torch

from attnconf import Capabilities, Implementation
from attnconf.reference import reference_attention

CAPS = Capabilities(devices={"cpu"})


def _correct(q, k, v, **options):
    return reference_attention(q, k, v, **options)


def _on_float32(bad):
    def forward(q, k, v, **options):
        return bad(q, k, v, **options) if q.dtype == torch.float32 else _correct(q, k, v, **options)
    return forward


def _abort(q, k, v, **options):
    os.abort()


def _segfault(q, k, v, **options):
    ctypes.string_at(0)  # reads address 0


def _hang(q, k, v, **options):
    time.sleep(3600)


def _raise(q, k, v, **options):
    raise RuntimeError("no kernel image is available for execution on the device")


def _shape(q, k, v, **options):
    return _correct(q, k, v, **options)[:, :-1]


def _with_lse(q, k, v, **options):
    return _correct(q, k, v, **options), torch.zeros(q.shape[:3])


BROKEN = [
    Implementation(name, _on_float32(fn), CAPS, description=f"broken: {name}")
    for name, fn in (("broken-abort", _abort), ("broken-segfault", _segfault), ("broken-hang", _hang),
                     ("broken-raise", _raise), ("broken-shape", _shape), ("broken-lse", _with_lse))
] + [
    # correct, but without head dim 64: it registers, and HEAD-1 fails it
    Implementation("broken-no-64", _correct, Capabilities(devices={"cpu"}, head_dims={128}),
                   description="broken: no head dim 64"),
]
