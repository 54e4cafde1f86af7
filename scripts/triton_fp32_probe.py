"""A probe, not a drop-in: triton-flash with float32 declared on CUDA too, to measure float32 against every contract.

triton-flash declares float32 on the CPU (interpreter) only. To see where float32 stands on a GPU, the device
script runs the suite on this variant:  PYTHONPATH=scripts python -m pytest conformance
--impl-module triton_fp32_probe:variant --impl triton-flash-fp32 --device cuda
"""

from __future__ import annotations

import dataclasses

from attnconf import Implementation
from attnconf.impls import triton_flash


def variant() -> Implementation:
    caps = triton_flash.CAPABILITIES
    return Implementation(
        name="triton-flash-fp32",
        forward=triton_flash.flash_attention,
        varlen_forward=triton_flash.flash_attention_varlen,
        capabilities=dataclasses.replace(caps, overrides={}, notes="probe: float32 declared on CUDA as well"),
        available=triton_flash.IMPLEMENTATION.available,
        description="triton-flash with float32 declared on every device (probe)",
    )
