"""Implementations that break in every way people's kernels do, for ``tests/test_robust_runs.py``.

Each misbehaves on a float32 call (other dtypes run the reference), so one run shows every failure class once.
Registered through the public path: ``--impl-module tests.broken.impls:BROKEN``.

With ``ATTNCONF_BROKEN_ONCE=DIR`` the ones that end or block their process (abort, segfault, hang) do so on their
first float32 call only (a file in DIR remembers it across the worker restarts) and answer correctly after: each
failure class is still seen, at the cost of one worker restart or one timeout instead of one per test.
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


def _once(name, bad):
    """``bad`` on the first call of the run under ATTNCONF_BROKEN_ONCE, the correct result after."""
    def forward(q, k, v, **options):
        folder = os.environ.get("ATTNCONF_BROKEN_ONCE")
        if folder:
            marker = os.path.join(folder, name)
            if os.path.exists(marker):
                return _correct(q, k, v, **options)
            open(marker, "w").close()
        return bad(q, k, v, **options)
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
    for name, fn in (("broken-abort", _once("broken-abort", _abort)),
                     ("broken-segfault", _once("broken-segfault", _segfault)),
                     ("broken-hang", _once("broken-hang", _hang)),
                     ("broken-raise", _raise), ("broken-shape", _shape), ("broken-lse", _with_lse))
] + [
    # correct, but without head dim 64: it registers, and HEAD-1 fails it
    Implementation("broken-no-64", _correct, Capabilities(devices={"cpu"}, head_dims={128}),
                   description="broken: no head dim 64"),
]
