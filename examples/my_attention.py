"""An implementation written outside the suite, registered without editing it.

Used three ways in the README and in tests/test_registration.py: by --impl-module, by an entry point, and as a
template for a module dropped into impls/.
"""

import torch.nn.functional as F

from attnconf import Capabilities, implementation


@implementation("my-sdpa", layout="bhsd", capabilities=Capabilities(devices={"cpu", "cuda"}, causal={"top_left"}))
def my_attention(q, k, v, causal=None, scale=None):
    """SDPA with its own top-left causal flag, in SDPA's [B, H, S, D] layout."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal is not None, scale=scale)
