"""attnconf: a vendor-neutral conformance and benchmark suite for attention implementations.

What a kernel author or test author uses is exported here: the registration API (``implementation``,
``register``, ``Capabilities``), the definition the suite judges by (``reference_attention``,
``reference_varlen_attention``), the validation helpers an implementation may call on its own inputs, and the case
types the contract tests draw.
"""

from .capabilities import ALIGNMENTS, BOTTOM_RIGHT, TOP_LEFT, Capabilities
from .inputs import DenseCase, VarlenCase
from .layouts import LAYOUTS, LayoutCannotExpress
from .reference import reference_attention, reference_varlen_attention
from .registry import Implementation, implementation, register, registered
from .validation import AttentionInputError, check_cu_seqlens, check_dense_inputs, check_packed_inputs
from .varlen import cu_seqlens_from_lengths

__version__ = "0.1.0"

__all__ = [
    "ALIGNMENTS",
    "BOTTOM_RIGHT",
    "LAYOUTS",
    "TOP_LEFT",
    "AttentionInputError",
    "Capabilities",
    "DenseCase",
    "Implementation",
    "LayoutCannotExpress",
    "VarlenCase",
    "check_cu_seqlens",
    "check_dense_inputs",
    "check_packed_inputs",
    "cu_seqlens_from_lengths",
    "implementation",
    "reference_attention",
    "reference_varlen_attention",
    "register",
    "registered",
]
