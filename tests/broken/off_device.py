"""A correct kernel registered for CUDA only: on a CPU run every test of it skips, and the run must fail."""

import torch.nn.functional as F

from attnconf import Capabilities, Implementation
from attnconf.layouts import to_canonical


def _sdpa(q, k, v, scale=None):
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


CUDA_ONLY = Implementation("cuda-only", to_canonical(_sdpa, "bhsd"), Capabilities(devices={"cuda"}))
