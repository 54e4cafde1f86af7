"""The kill matrix: run the CPU conformance suite on every mutant and on the correct implementations, report which
contracts caught each mutant, and fail if any mutant survives or any correct implementation fails.

    python -m tests.mutants.kill_matrix            # prints the matrix, writes reports/mutants/kill-matrix.{md,json}

The suite runs in subprocesses exactly as a user runs it, with the mutants registered through ``--impl-module``
(the public path). Each run writes the conformance records (``attnconf/conformance_report.py``) to a scratch
folder; this module reads them back. A mutant counts as caught by a contract when a test of that contract fails
for it and the same contract fails for none of the correct implementations (the controls built from the same
bases, ``eager``, ``sdpa-math``, ``sdpa-flash``); any failure of a correct implementation is a false positive.

The full run records in ``kill-matrix.json`` which contracts caught each mutant. The quick run that
``tests/test_mutants.py`` makes in CI (``run(..., recorded=load_recorded())``) re-checks exactly those: each mutant
runs only the tests of its recorded contracts (``tests/mutants/selection.py``), a mutant without a record runs
everything, and the controls run everything; the built-in correct implementations are left to the conformance run
of the same CI job (a contract failing one of them fails CI there). It finds a contract that stopped catching a
mutant, or that started failing a correct base, in a fraction of the full run's time; the full run is for a new
or changed catalogue or suite, and refreshes the record.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from attnconf.spec import contracts

from . import hypothesis_profile
from . import selection as selection_plugin
from .catalogue import CONTROLS, MUTANTS

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "reports" / "mutants" / "kill-matrix.md"
RECORD = REPORT.with_suffix(".json")
CATALOGUE = "tests.mutants.catalogue"
BUILTIN_CORRECT = ("eager", "sdpa-math", "sdpa-flash")
PYTEST_OK = (0, 1)  # all passed, or some tests failed (as mutants must); anything else is a broken run


def correct_names() -> list[str]:
    return [c.name for c in CONTROLS] + list(BUILTIN_CORRECT)


def mutant_descriptions() -> dict[str, str]:
    return {m.name: m.description for m in MUTANTS}


def suite_command(report_dir: Path, impls: list[str], extra: list[str] | None = None) -> list[str]:
    """The conformance run, as a third party with an out-of-tree implementation would type it."""
    return [
        sys.executable, "-m", "pytest", "conformance", "-p", "no:cacheprovider", "-q", "--device", "cpu",
        "--impl-module", f"{CATALOGUE}:MUTANTS", "--impl-module", f"{CATALOGUE}:CONTROLS",
        "--impl", ",".join(impls), "--conformance-report", str(report_dir),
        # speed only, verdicts unchanged: no shrinking of failing examples, no tracebacks (records keep the message)
        "-p", "tests.mutants.hypothesis_profile", f"--hypothesis-profile={hypothesis_profile.PROFILE}", "--tb=no",
        # the catalogue's implementations neither crash nor hang: no worker process needed
        "--attnconf-isolation", "off",
        "-p", "tests.mutants.selection",  # inert unless the quick run names a selection
        *(extra or []),
    ]


def run_suite(work_dir: Path, *, jobs: int = 2, names: list[str] | None = None, extra: list[str] | None = None,
              env: dict | None = None) -> tuple[list[dict], dict]:
    """Run the suite on ``names`` (default: every mutant and correct implementation), ``jobs`` runs side by side.

    ``extra`` arguments go to every run (``--attnconf-seed 3``), ``env`` replaces the environment. Returns
    (records, meta) merged from the runs' JSON reports. Raises RuntimeError if a run breaks (a usage or internal
    error, or no report), with the end of its log.
    """
    names = names or [m.name for m in MUTANTS] + correct_names()
    groups = [g for g in (names[i::jobs] for i in range(jobs)) if g]  # round-robin: slow and fast ones spread
    env = dict(os.environ if env is None else env)
    # one thread per run: the tensors are small, and threads that spin while waiting for a busy core (other runs,
    # other CI jobs) cost several times the work itself
    env.setdefault("OMP_NUM_THREADS", "1")
    runs = []
    for n, group in enumerate(groups):
        report_dir = work_dir / f"run{n}"
        report_dir.mkdir(parents=True, exist_ok=True)
        log = open(report_dir / "pytest.log", "w")
        proc = subprocess.Popen(suite_command(report_dir, group, extra), cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        runs.append((proc, log, report_dir))
    records: list[dict] = []
    meta: dict = {}
    for proc, log, report_dir in runs:
        code = proc.wait()
        log.close()
        reports = sorted(report_dir.glob("*.json"))
        if code not in PYTEST_OK or not reports:
            tail = (report_dir / "pytest.log").read_text()[-4000:]
            raise RuntimeError(f"conformance run in {report_dir} exited {code} with no usable report:\n{tail}")
        data = json.loads(reports[0].read_text())
        records.extend(data["records"])
        meta = meta or data["meta"]
    return records, meta


@dataclass
class KillMatrix:
    """Outcome per (implementation, contract), and the verdicts drawn from it."""

    mutants: dict[str, str]  # name -> bug description
    correct: list[str]
    contracts: list[str]  # contract IDs that ran, in spec order
    outcomes: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (impl, contract) -> outcomes
    first_failure: dict[tuple[str, str], dict] = field(default_factory=dict)  # (impl, contract) -> failed record

    def failed(self, impl: str, contract: str) -> bool:
        return "failed" in self.outcomes.get((impl, contract), ())

    def ran(self, impl: str) -> bool:
        return any(o - {"skipped"} for (name, _), o in self.outcomes.items() if name == impl)

    @property
    def contracts_failing_correct(self) -> set[str]:
        return {c for c in self.contracts if any(self.failed(i, c) for i in self.correct)}

    def catches(self, mutant: str) -> list[str]:
        """Contracts (spec order) that fail the mutant and no correct implementation."""
        return [c for c in self.contracts if self.failed(mutant, c) and c not in self.contracts_failing_correct]

    def first_catch(self, mutant: str) -> str | None:
        caught = self.catches(mutant)
        return caught[0] if caught else None

    @property
    def survivors(self) -> list[str]:
        return [m for m in self.mutants if not self.catches(m)]

    @property
    def false_positives(self) -> list[dict]:
        """Failed records of correct implementations."""
        return [rec for (impl, _), rec in sorted(self.first_failure.items()) if impl in self.correct]

    @property
    def conflicts(self) -> dict[str, list[str]]:
        """Contracts that fail a correct implementation and would otherwise catch mutants: contract -> mutants."""
        out = {}
        for c in sorted(self.contracts_failing_correct, key=self.contracts.index):
            mutants = [m for m in self.mutants if self.failed(m, c)]
            if mutants:
                out[c] = mutants
        return out

    @property
    def not_run(self) -> list[str]:
        """Implementations for which every test was skipped (a correct one that never ran proves nothing)."""
        return [i for i in [*self.mutants, *self.correct] if not self.ran(i)]

    @property
    def ok(self) -> bool:
        return not (self.survivors or self.false_positives or self.conflicts or self.not_run)


def analyse(records: list[dict], mutants: dict[str, str], correct: list[str]) -> KillMatrix:
    spec = list(contracts())
    seen = {r["contract"] for r in records}
    matrix = KillMatrix(mutants=dict(mutants), correct=list(correct), contracts=[c for c in spec if c in seen])
    for rec in records:
        key = (rec["impl"], rec["contract"])
        matrix.outcomes.setdefault(key, set()).add(rec["outcome"])
        if rec["outcome"] == "failed":
            matrix.first_failure.setdefault(key, rec)
    return matrix


# ---- reporting -----------------------------------------------------------------------------------------------------

CAUGHT, FIRST, PASSED, NOT_RUN = "X", "**X**", ".", "–"


def _cell(matrix: KillMatrix, impl: str, contract: str) -> str:
    outcomes = matrix.outcomes.get((impl, contract), set())
    if "failed" in outcomes:
        return FIRST if matrix.first_catch(impl) == contract else CAUGHT
    return PASSED if outcomes - {"skipped"} else NOT_RUN


def _short(text: str, width: int = 140) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def summary_lines(matrix: KillMatrix) -> list[str]:
    """One line per mutant, then the verdict."""
    lines = []
    for m in matrix.mutants:
        first = matrix.first_catch(m)
        lines.append(f"{m}: {'caught by ' + first if first else 'SURVIVED'} ({len(matrix.catches(m))} contracts)")
    return lines + verdict_lines(matrix)


def verdict_lines(matrix: KillMatrix) -> list[str]:
    lines = []
    caught = len(matrix.mutants) - len(matrix.survivors)
    lines.append(f"{caught}/{len(matrix.mutants)} mutants caught; survivors: {', '.join(matrix.survivors) or 'none'}")
    lines.append(f"false positives (failures of {', '.join(matrix.correct)}): {len(matrix.false_positives)}")
    for rec in matrix.false_positives:
        lines.append(f"  {rec['impl']} / {rec['contract']}: {rec['nodeid']}: {_short(rec['reason'])}")
    for c, mutants in matrix.conflicts.items():
        lines.append(f"  {c} fails a correct implementation, so it does not count as catching {', '.join(mutants)}")
    if matrix.not_run:
        lines.append(f"never ran (every test skipped): {', '.join(matrix.not_run)}")
    lines.append("verdict: " + ("every mutant caught, no false positive" if matrix.ok else "FAILED"))
    return lines


def markdown(matrix: KillMatrix, meta: dict, *, seconds: float, jobs: int) -> str:
    cols = matrix.contracts
    lines = [
        "# Mutant kill matrix",
        "",
        f"Generated by `python -m tests.mutants.kill_matrix` on {meta.get('date', datetime.date.today())}: "
        f"device {meta.get('device_name')}, torch {meta.get('torch')}, seed {meta.get('seed')}; {jobs} conformance "
        f"run(s) side by side, {seconds:.0f} s wall time. Each run:",
        "",
        "    python " + " ".join(suite_command(Path("<scratch>"), ["<its share of the implementations>"])[1:]),
        "",
        f"(hypothesis profile `{hypothesis_profile.PROFILE}`: the `ci` profile's examples without shrinking.)",
        "",
        "Each mutant is a correct base implementation (`tests/mutants/bases.py`) with one deliberate bug "
        "(`tests/mutants/catalogue.py`), registered with `--impl-module tests.mutants.catalogue:MUTANTS`. "
        f"A mutant is caught by a contract when one of the contract's tests fails for it while every correct "
        f"implementation ({', '.join(f'`{c}`' for c in matrix.correct)}) passes that contract.",
        "",
        "## Summary",
        "",
        "| mutant | bug | first caught by | contracts catching it | first failing test |",
        "|---|---|---|---|---|",
    ]
    for m, bug in matrix.mutants.items():
        first = matrix.first_catch(m)
        if first:
            rec = matrix.first_failure[(m, first)]
            test = f"`{rec['nodeid'].split('::')[-1]}`: {_short(rec['reason'], 110)}"
        else:
            test = "**survived**"
        lines.append(f"| `{m}` | {_short(bug)} | {first or '**none**'} | {len(matrix.catches(m))} | {test} |")
    lines += [
        "",
        "## Verdict",
        "",
        *[f"- {line}" for line in verdict_lines(matrix)],
        "",
        "## Matrix",
        "",
        f"{FIRST}: first contract (spec order) that catches the mutant; {CAUGHT}: also catches it; {PASSED}: every "
        f"test that ran passed; {NOT_RUN}: not run (capability not declared).",
        "",
        "| implementation | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for impl in [*matrix.mutants, *matrix.correct]:
        lines.append(f"| `{impl}` | " + " | ".join(_cell(matrix, impl, c) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def load_recorded(path: Path = RECORD) -> dict[str, list[str]]:
    """The contracts that caught each mutant in the last full run (empty when there is no record)."""
    return json.loads(path.read_text())["catches"] if path.exists() else {}


def record(matrix: KillMatrix, meta: dict) -> str:
    return json.dumps({"date": meta.get("date"), "torch": meta.get("torch"), "seed": meta.get("seed"),
                       "catches": {m: matrix.catches(m) for m in matrix.mutants}}, indent=1) + "\n"


def run(work_dir: Path, *, jobs: int = 2, recorded: dict[str, list[str]] | None = None,
        extra: list[str] | None = None) -> tuple[KillMatrix, dict, float]:
    """Run the suite and analyse it: (matrix, run metadata, wall seconds).

    With ``recorded`` (``load_recorded()``) it is the quick run of the module docstring.
    """
    start = time.monotonic()
    env = None
    correct = correct_names()
    if recorded is not None:
        correct = [c.name for c in CONTROLS]
        selection = work_dir / "selection.json"
        selection.write_text(json.dumps({m: ids for m, ids in recorded.items() if ids}))
        env = {**os.environ, selection_plugin.VARIABLE: str(selection)}
    records, meta = run_suite(work_dir, jobs=jobs, names=[m.name for m in MUTANTS] + correct, extra=extra, env=env)
    seconds = time.monotonic() - start
    return analyse(records, mutant_descriptions(), correct), meta, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="conformance runs side by side (default 2)")
    parser.add_argument("--output", type=Path, default=REPORT, help=f"markdown report (default {REPORT})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="attnconf-mutants-") as scratch:
        matrix, meta, seconds = run(Path(scratch), jobs=max(1, args.jobs))
    text = markdown(matrix, meta, seconds=seconds, jobs=args.jobs)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(record(matrix, meta))
    print(text)
    print("\n".join(summary_lines(matrix)))
    print(f"written to {args.output} ({seconds:.0f} s)")
    return 0 if matrix.ok else 1


if __name__ == "__main__":
    sys.exit(main())
