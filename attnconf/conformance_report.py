"""The conformance matrix (implementation × contract) written at the end of a conformance run.

Each test result is one record: implementation, contract, outcome, skip or xfail reason, and the measured error
ratios (see ``tolerance.py``). Cells aggregate records: FAIL if any test failed, else XFAIL if any was an expected
failure, else PASS if any passed, else SKIP (with the reasons). JSON keeps every record, for ``attnconf.report``.

Several runs (on one device, e.g. one implementation per device command) merge into one matrix:

    python -m attnconf.conformance_report merge [--impl GLOBS] TARGET_DIR OLDER.json|DIR ... NEWER.json|DIR

A test that several runs ran keeps the records of the last one given; ``--impl`` (comma-separated globs, as
pytest's ``--impl``) keeps only those implementations' records and manifests, so a run over every implementation can
feed a matrix that covers some of them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from .spec import contracts

ORDER = {"failed": 0, "xfailed": 1, "passed": 2, "skipped": 3}
LABEL = {"failed": "FAIL", "xfailed": "XFAIL", "passed": "PASS", "skipped": "SKIP"}


def aggregate(records: Iterable[dict]) -> dict[tuple[str, str], dict]:
    """(impl, contract) -> {outcome, counts, reasons, max_ratio, worst_tensor}; ratios are err/bound (pass <= 1)."""
    cells: dict[tuple[str, str], dict] = defaultdict(
        lambda: {"outcome": "skipped", "counts": defaultdict(int), "reasons": set(), "max_ratio": None,
                 "worst_tensor": None, "failures": set(), "details": []}
    )
    for rec in records:
        cell = cells[(rec["impl"], rec["contract"])]
        outcome = rec["outcome"]
        cell["counts"][outcome] += 1
        if ORDER[outcome] < ORDER[cell["outcome"]]:
            cell["outcome"] = outcome
        if rec.get("reason") and outcome in ("skipped", "xfailed", "failed"):
            cell["details"].append((outcome, rec["nodeid"], rec.get("failure"), rec["reason"]))
            if outcome == "skipped":
                cell["reasons"].add(rec["reason"])
        if outcome == "failed":
            cell["failures"].add(rec.get("failure") or "FAIL")
        for tensor, ratio in rec.get("ratios", {}).items():
            if cell["max_ratio"] is None or ratio > cell["max_ratio"]:
                cell["max_ratio"], cell["worst_tensor"] = ratio, tensor
    return cells


def cell_text(cell: dict) -> str:
    text = LABEL[cell["outcome"]]
    kinds = sorted(set(cell.get("failures", ())) - {"FAIL"})  # FAIL alone says nothing more
    if cell["outcome"] == "failed" and kinds:
        text += " " + ",".join(kinds)
    if cell["outcome"] == "passed" and cell["max_ratio"] is not None:
        text += f" {cell['max_ratio']:.2f}" + (f" {cell['worst_tensor']}" if cell["worst_tensor"] else "")
    counts = cell["counts"]
    ran = sum(n for outcome, n in counts.items() if outcome != "skipped")
    if cell["outcome"] != "skipped" and counts.get("passed", 0) != ran:
        text += f" ({counts.get('passed', 0)}/{ran})"
    return text


def unavailable(cells: dict, impl: str) -> str | None:
    """The one reason every test of ``impl`` was skipped for, if it never ran here at all."""
    reasons = set()
    for (name, _), cell in cells.items():
        if name == impl:
            if cell["outcome"] != "skipped" or len(cell["reasons"]) != 1:
                return None
            reasons |= cell["reasons"]
    return reasons.pop() if len(reasons) == 1 else None


def report_stem(meta: dict) -> str:
    """``<device slug>-torch<version>``: the matrix's file name (the benchmark storage uses the same)."""
    slug = re.sub(r"[^a-z0-9]+", "-", meta["device_name"].lower()).strip("-")
    return f"{slug}-torch{meta['torch'].split('+')[0]}"


def merge(runs: Iterable[dict], impls: Iterable[str] | None = None) -> tuple[list[dict], dict]:
    """(records, meta) of several runs' JSON contents, oldest first: a later run's records of a test replace the
    earlier ones; manifests are united; the date becomes the span of the runs' dates ("first to last"); other
    metadata is kept from the first run that has it. ``impls``: name globs; only those implementations are kept
    (all when None)."""
    patterns = None if impls is None else list(impls)
    wanted = lambda name: patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)  # noqa: E731
    by_test: dict[str, list[dict]] = {}
    meta: dict = {}
    dates: set[str] = set()
    for data in runs:
        dates.update(d for d in str(data["meta"].get("date") or "").split(" to ") if d)
        ran_here: dict[str, list[dict]] = {}
        for record in data["records"]:
            if wanted(record["impl"]):
                ran_here.setdefault(record["nodeid"], []).append(record)
        by_test.update(ran_here)
        for key, value in data["meta"].items():
            if key == "implementations":
                meta.setdefault(key, {}).update({name: m for name, m in value.items() if wanted(name)})
            elif meta.get(key) is None:
                meta[key] = value
    if dates:
        meta["date"] = " to ".join(sorted({min(dates), max(dates)}))
    return [record for records in by_test.values() for record in records], meta


def write(records: list[dict], meta: dict, directory: Path, stem: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    json_path.write_text(json.dumps({"meta": meta, "records": records}, indent=1, sort_keys=True) + "\n")
    md_path.write_text(markdown(records, meta))
    return json_path, md_path


def markdown(records: list[dict], meta: dict) -> str:
    cells = aggregate(records)
    everything = sorted({r["impl"] for r in records})
    not_run = {i: unavailable(cells, i) for i in everything}
    impls = [i for i in everything if not not_run[i]]
    spec = contracts()
    ids = [c for c in spec if any((i, c) in cells for i in impls)]
    lines = [
        f"# Conformance matrix: {meta.get('device_name', meta.get('device'))}",
        "",
        f"torch {meta.get('torch')}, triton {meta.get('triton')}, {meta.get('date')}, seed {meta.get('seed')}"
        + (f", flash-attn {meta['flash_attn']}" if meta.get("flash_attn") else ""),
        "",
        "Cells: PASS with the largest err/bound measured and the tensor it was measured on (a result passes at "
        "err/bound <= 1; the bound is in attnconf/tolerance.py), FAIL, XFAIL (documented expected failure) or SKIP "
        "(capability not declared; reasons below). (p/n): passed of the tests that ran, where not all passed.",
        "",
        "| contract | " + " | ".join(impls) + " |",
        "|---|" + "---|" * len(impls),
    ]
    for cid in ids:
        row = [cell_text(cells[(i, cid)]) if (i, cid) in cells else "–" for i in impls]
        lines.append(f"| {cid} {spec[cid]} | " + " | ".join(row) + " |")
    skipped_whole = [f"- {i}: {reason}" for i, reason in not_run.items() if reason]
    if skipped_whole:
        lines += ["", "## Not run here", ""] + skipped_whole
    lines += reason_lines(cells, impls)
    return "\n".join(lines) + "\n"


def reason_lines(cells: dict, impls: list[str]) -> list[str]:
    """Per implementation, the reasons behind its FAIL, XFAIL and SKIP cells, each under its own outcome and with a
    test id; one reason shared by many tests (an implementation that raises on every call) is one line."""
    grouped: dict[tuple, list[str]] = {}
    for (impl, cid), cell in sorted(cells.items()):
        if impl not in impls or cell["outcome"] == "passed":
            continue
        for outcome, nodeid, failure, reason in cell["details"]:
            if outcome != cell["outcome"]:
                continue  # a skip reason does not explain a FAIL cell
            key = (impl, outcome, failure, reason)
            grouped.setdefault(key, [])
            test = nodeid.split("::")[-1]
            if test not in grouped[key]:
                grouped[key].append(f"{cid} `{test}`")
    out = []
    for (impl, outcome, failure, reason), tests in grouped.items():
        label = LABEL[outcome] + (f" {failure}" if failure else "")
        where = tests[0] if len(tests) == 1 else f"{len(tests)} tests, e.g. {tests[0]}"
        out.append(f"- {impl} ({label}, {where}): {' '.join(reason.split())[:400]}")
    return ["", "## Reasons", ""] + out if out else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnconf.conformance_report", description="conformance matrices")
    commands = parser.add_subparsers(dest="command", required=True)
    merging = commands.add_parser("merge", help="merge runs' JSON matrices into one (later runs win per test)")
    merging.add_argument("--impl", default=None, metavar="GLOBS",
                         help="keep only these implementations (comma-separated name globs)")
    merging.add_argument("target", type=Path, help="directory the merged .json and .md are written to")
    merging.add_argument("runs", type=Path, nargs="+", help="JSON files, or directories of them, oldest first")
    args = parser.parse_args(argv)
    files = [f for path in args.runs for f in (sorted(path.glob("*.json")) if path.is_dir() else [path])]
    impls = None if args.impl is None else [p.strip() for p in args.impl.split(",") if p.strip()]
    records, meta = merge((json.loads(f.read_text()) for f in files), impls)
    if not records:
        print("no conformance records to merge")
        return 1
    json_path, md_path = write(records, meta, args.target, report_stem(meta))
    print(f"merged {len(records)} records from {len(files)} file(s) into {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
