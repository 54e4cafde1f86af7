"""The log-sum-exp (LSE-*): an optional capability, returned by ``return_lse=True`` as ``(out, lse)``."""

from __future__ import annotations

import pytest

from attnconf.capabilities import BOTTOM_RIGHT, TOP_LEFT
from attnconf.checks import check_lse_merge
from attnconf.inputs import DenseCase


@pytest.mark.contract("LSE-1")
@pytest.mark.parametrize("mask", [None, "random", "empty_batch"])
@pytest.mark.parametrize("causal", [None, TOP_LEFT, BOTTOM_RIGHT])
def test_lse(dense, mask, causal):
    dense(DenseCase(seqlen_q=27, seqlen_k=43, heads_q=4, heads_kv=2, mask=mask, causal=causal, lse=True))


@pytest.mark.contract("LSE-1")
@pytest.mark.parametrize("scale", [None, 0.3])
def test_lse_large_logits_and_scale(dense, scale):
    dense(DenseCase(seqlen_q=33, seqlen_k=57, magnitude=4.0, scale=scale, lse=True))


@pytest.mark.contract("LSE-2")
@pytest.mark.parametrize("split", [1, 17, 40])
@pytest.mark.parametrize("mask", [None, "prefix"])
def test_merge_by_lse(impl, device, generator, record_comparison, require, split, mask):
    # prefix masks leave some rows with no visible key in the second block, which must merge to nothing
    case = require(DenseCase(seqlen_q=23, seqlen_k=41, heads_q=4, heads_kv=2, mask=mask, lse=True))
    check_lse_merge(impl, case, split, device, generator, record_comparison)


@pytest.mark.contract("LSE-2")
@pytest.mark.parametrize("split", [9, 30])
@pytest.mark.parametrize("feature", ["sink", "softcap"])
def test_merge_by_lse_with_score_features(impl, device, generator, record_comparison, require, split, feature):
    # the sink belongs to the first block only: a sink left out of the lse weights that block wrongly
    options = dict(sink=True, mask="prefix") if feature == "sink" else dict(softcap=5.0, magnitude=3.0)
    case = require(DenseCase(seqlen_q=23, seqlen_k=41, heads_q=4, heads_kv=4, lse=True, **options))
    check_lse_merge(impl, case, split, device, generator, record_comparison)
