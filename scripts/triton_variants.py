"""triton-flash's load-path variants as implementations of their own, so that one benchmark run times them side by
side (``--impl-module scripts.triton_variants:VARIANTS --impl triton-flash,triton-flash-pointer,...``).

``triton-flash`` itself loads as ``ATTNCONF_TRITON_LOADS`` says (default ``tma``); these name the path explicitly.
Same kernels, same capabilities (notes/triton-kernel.md, version 5).
"""

from attnconf.impls import triton_flash

VARIANTS = [triton_flash.variant("triton-flash-pointer", "pointer"), triton_flash.variant("triton-flash-tma", "tma")]
