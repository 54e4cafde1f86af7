"""The conformance matrix: aggregation of test records into cells."""

import json

from attnconf.conformance_report import aggregate, cell_text, main, markdown, merge


def _rec(impl, contract, outcome, reason="", ratios=None):
    return {"impl": impl, "contract": contract, "nodeid": "t", "outcome": outcome, "reason": reason,
            "ratios": ratios or {}}


def test_failure_dominates_and_ratios_are_kept():
    cells = aggregate([_rec("a", "MASK-1", "passed", ratios={"out": 0.5}), _rec("a", "MASK-1", "failed", "boom"),
                       _rec("a", "MASK-3", "passed", ratios={"out": 0.5, "dq": 0.75})])
    assert cells[("a", "MASK-1")]["outcome"] == "failed"
    assert cell_text(cells[("a", "MASK-1")]) == "FAIL (1/2)"
    classified = aggregate([{**_rec("a", "MASK-1", "failed", "far"), "failure": "NUMERICS"},
                            {**_rec("a", "MASK-1", "failed", "nan"), "failure": "NONFINITE"}])
    assert cell_text(classified[("a", "MASK-1")]) == "FAIL NONFINITE,NUMERICS (0/2)"
    assert cell_text(cells[("a", "MASK-3")]) == "PASS 0.75 dq"


def test_skips_only_when_nothing_ran():
    cells = aggregate([_rec("a", "GQA-1", "skipped", "capability: gqa"), _rec("a", "GQA-1", "passed")])
    assert cells[("a", "GQA-1")]["outcome"] == "passed"


def test_markdown_lists_implementations_that_never_ran_apart():
    records = [_rec("a", "DENSE-1", "passed"), _rec("gpu-only", "DENSE-1", "skipped", "needs a CUDA device"),
               _rec("gpu-only", "MASK-1", "skipped", "needs a CUDA device")]
    text = markdown(records, {"device_name": "cpu", "torch": "x", "date": "d", "seed": 0})
    assert "| contract | a |" in text
    assert "- gpu-only: needs a CUDA device" in text


def test_merge_keeps_the_last_run_of_each_test_and_unites_manifests(tmp_path):
    def run(impl, outcome, date):
        record = {"nodeid": f"conformance/test_dense.py::test_head_dim_64[{impl}]", "impl": impl,
                  "contract": "HEAD-1", "outcome": outcome, "reason": "", "ratios": {}}
        meta = {"device_name": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130", "date": date,
                "implementations": {impl: {}}}
        return {"meta": meta, "records": [record]}

    older, newer, other = run("a", "failed", "d1"), run("a", "passed", "d2"), run("b", "passed", "d2")
    records, meta = merge([older, newer, other])
    assert sorted((r["impl"], r["outcome"]) for r in records) == [("a", "passed"), ("b", "passed")]
    assert set(meta["implementations"]) == {"a", "b"} and meta["date"] == "d1 to d2"
    assert merge([older, run("a", "passed", "d1")])[1]["date"] == "d1"
    already_merged = {"meta": meta, "records": records}  # dated "d1 to d2"
    assert merge([already_merged, run("c", "passed", "d3")])[1]["date"] == "d1 to d3"
    for i, data in enumerate((older, newer)):
        (tmp_path / f"{i}.json").write_text(json.dumps(data))
    assert main(["merge", str(tmp_path / "out"), str(tmp_path / "0.json"), str(tmp_path / "1.json")]) == 0
    merged = json.loads((tmp_path / "out" / "nvidia-h100-80gb-hbm3-torch2.11.0.json").read_text())
    assert [r["outcome"] for r in merged["records"]] == ["passed"]


def test_merge_can_keep_only_some_implementations(tmp_path):
    def record(impl):
        return {"nodeid": f"conformance/test_gradients.py::test_x[{impl}]", "impl": impl, "contract": "GQA-1",
                "outcome": "passed", "reason": "", "ratios": {}}

    run = {"meta": {"device_name": "cpu", "torch": "x", "implementations": {"flex-eager": {}, "flex-compiled": {},
                                                                              "eager": {}}},
           "records": [record("flex-eager"), record("flex-compiled"), record("eager")]}
    records, meta = merge([run], impls=["flex-*"])
    assert sorted(r["impl"] for r in records) == ["flex-compiled", "flex-eager"]
    assert set(meta["implementations"]) == {"flex-compiled", "flex-eager"}
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert main(["merge", "--impl", "eager", str(tmp_path / "out"), str(tmp_path / "run.json")]) == 0
    merged = json.loads((tmp_path / "out" / "cpu-torchx.json").read_text())
    assert [r["impl"] for r in merged["records"]] == ["eager"]


def test_reasons_name_a_test_group_shared_reasons_and_keep_skips_out_of_fail_cells():
    from attnconf.conformance_report import reason_lines

    def rec(contract, test, outcome, reason, failure=None):
        return {"impl": "a", "contract": contract, "nodeid": f"conformance/test_x.py::{test}[a]", "outcome": outcome,
                "reason": reason, "ratios": {}, "failure": failure}

    records = [rec("MASK-1", "test_one", "failed", "RuntimeError: boom", "ERROR"),
               rec("MASK-1", "test_two", "failed", "RuntimeError: boom", "ERROR"),
               rec("MASK-2", "test_three", "failed", "RuntimeError: boom", "ERROR"),
               rec("MASK-1", "test_four", "skipped", "capability: gqa"),  # under a FAIL cell: not its reason
               rec("GQA-1", "test_five", "skipped", "grouped-query attention not declared")]
    lines = [line for line in reason_lines(aggregate(records), ["a"]) if line.startswith("- ")]
    assert sorted(lines) == [
        "- a (FAIL ERROR, 3 tests, e.g. MASK-1 `test_one[a]`): RuntimeError: boom",
        "- a (SKIP, GQA-1 `test_five[a]`): grouped-query attention not declared",
    ]
    assert not any("capability: gqa" in line for line in lines)
