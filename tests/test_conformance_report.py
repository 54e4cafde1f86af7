"""The conformance matrix: aggregation of test records into cells."""

from attnconf.conformance_report import aggregate, cell_text, markdown


def _rec(impl, contract, outcome, reason="", ratios=None):
    return {"impl": impl, "contract": contract, "nodeid": "t", "outcome": outcome, "reason": reason,
            "ratios": ratios or {}}


def test_failure_dominates_and_ratios_are_kept():
    cells = aggregate([_rec("a", "MASK-1", "passed", ratios={"out": 0.5}), _rec("a", "MASK-1", "failed", "boom"),
                       _rec("a", "MASK-3", "passed", ratios={"out": 1.25, "dq": 0.75})])
    assert cells[("a", "MASK-1")]["outcome"] == "failed"
    assert cell_text(cells[("a", "MASK-1")]) == "FAIL (1/2)"
    assert cell_text(cells[("a", "MASK-3")]) == "PASS 1.25"


def test_skips_only_when_nothing_ran():
    cells = aggregate([_rec("a", "GQA-1", "skipped", "capability: gqa"), _rec("a", "GQA-1", "passed")])
    assert cells[("a", "GQA-1")]["outcome"] == "passed"


def test_markdown_lists_implementations_that_never_ran_apart():
    records = [_rec("a", "DENSE-1", "passed"), _rec("gpu-only", "DENSE-1", "skipped", "needs a CUDA device"),
               _rec("gpu-only", "MASK-1", "skipped", "needs a CUDA device")]
    text = markdown(records, {"device_name": "cpu", "torch": "x", "date": "d", "seed": 0})
    assert "| contract | a |" in text
    assert "- gpu-only: needs a CUDA device" in text
