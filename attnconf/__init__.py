"""attnconf: a vendor-neutral conformance and benchmark suite for attention implementations."""

from .capabilities import ALIGNMENTS, BOTTOM_RIGHT, TOP_LEFT, Capabilities
from .registry import Implementation, implementation, register, registered
from .validation import AttentionInputError

__version__ = "0.1.0"

__all__ = [
    "ALIGNMENTS",
    "BOTTOM_RIGHT",
    "TOP_LEFT",
    "AttentionInputError",
    "Capabilities",
    "Implementation",
    "implementation",
    "register",
    "registered",
]
