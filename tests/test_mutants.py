"""The conformance suite catches every mutant of tests/mutants/catalogue.py and fails no correct implementation.

``test_every_mutant_is_caught`` and ``test_no_false_positives`` share one kill-matrix run (the CPU conformance
suite in subprocesses): if a change to the suite lets a mutant through, or makes a contract fail a correct
implementation, they fail and name it. By default it is the quick run (``tests/mutants/kill_matrix.py``): every
mutant against the contracts that the committed full run (reports/mutants/kill-matrix.json) recorded as catching
it, the controls against everything; ``ATTNCONF_KILL_MATRIX=full`` makes it the full run.
"""

from __future__ import annotations

import os

import pytest

import attnconf
from tests.mutants import kill_matrix
from tests.mutants.catalogue import CONTROLS, MUTANTS


@pytest.fixture(scope="module")
def recorded() -> dict[str, list[str]] | None:
    return None if os.environ.get("ATTNCONF_KILL_MATRIX") == "full" else kill_matrix.load_recorded()


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, recorded) -> kill_matrix.KillMatrix:
    result, _, _ = kill_matrix.run(tmp_path_factory.mktemp("kill-matrix"), recorded=recorded)
    return result


def test_recorded_catches_still_hold(matrix, recorded):
    if recorded is None:
        pytest.skip("the full run (ATTNCONF_KILL_MATRIX=full) records, it has nothing to re-check")
    lost = {m: sorted(set(ids) - set(matrix.catches(m))) for m, ids in recorded.items() if m in matrix.mutants}
    lost = {m: ids for m, ids in lost.items() if ids}
    beyond = {m: sorted(_ran(matrix, m) - set(ids)) for m, ids in recorded.items() if ids and m in matrix.mutants}
    assert not any(beyond.values()), f"the selection let other contracts run: {beyond}"
    assert not lost, (f"contracts that no longer catch a mutant they caught in the recorded full run: {lost} "
                      "(if intended, refresh the record: python -m tests.mutants.kill_matrix)")


def test_every_mutant_is_caught(matrix):
    assert list(matrix.mutants) == [m.name for m in MUTANTS]
    assert not matrix.not_run, f"implementations whose every test was skipped: {matrix.not_run}"
    survivors = {m: matrix.mutants[m] for m in matrix.survivors}
    assert not survivors, f"mutants that no contract caught: {survivors}"


def test_no_false_positives(matrix):
    failures = [f"{r['impl']} / {r['contract']}: {r['nodeid']}: {r['reason']}" for r in matrix.false_positives]
    assert not failures, "correct implementations failed:\n" + "\n".join(failures)
    assert not matrix.conflicts


# Contracts that judge numbers against the golden, and of those, the ones whose tests run backward when declared.
NOT_NUMERIC = {"DENSE-2", "VARLEN-2", "VALID-1", "VALID-2", "VALID-3", "VALID-4", "VALID-5", "VALID-6", "MEM-1",
               "DET-1"}
WITH_BACKWARD = {"MASK-2", "MASK-3", "VARLEN-3", "VARLEN-5", "HEAD-1", "HEAD-2", "GRAD-1", "GRAD-2", "GQA-1",
                 "DTYPE-1", "LAYOUT-1", "STAB-1", "STAB-2"}
# Bugs of input handling, in-place writes, determinism, or of one option only a dedicated test sets: one contract
# may be the only one that can see them.
ONE_CONTRACT_ENOUGH = {"mutant-mask-dtype-unchecked", "mutant-heads-not-checked", "mutant-modifies-input",
                       "mutant-not-deterministic", "mutant-varlen-cu-seqlens-unchecked", "mutant-assumes-contiguous",
                       "mutant-nothing-validated", "mutant-nothing-validated-bhsd", "mutant-nothing-validated-bsd"}


def _ran(matrix, impl):
    return {c for c in matrix.contracts if matrix.outcomes.get((impl, c), set()) - {"skipped"}}


def test_zero_results_fail_every_contract_that_judges_them(matrix):
    for name, judged in (("mutant-zero-output", _ran(matrix, "mutant-zero-output") - NOT_NUMERIC),
                         ("mutant-zero-gradients", WITH_BACKWARD)):
        passed = sorted(c for c in judged if not matrix.failed(name, c))
        assert not passed, f"{name} passes {passed}"


def test_nothing_validated_fails_every_validation_contract_in_every_layout(matrix):
    for name in ("mutant-nothing-validated", "mutant-nothing-validated-bhsd", "mutant-nothing-validated-bsd"):
        passed = [c for c in ("VALID-1", "VALID-2", "VALID-3", "VALID-4", "VALID-5") if not matrix.failed(name, c)]
        assert not passed, f"{name} passes {passed}"


def test_numeric_bugs_are_caught_by_two_contracts(matrix):
    single = {m: matrix.catches(m) for m in matrix.mutants if m not in ONE_CONTRACT_ENOUGH
              and len(matrix.catches(m)) < 2}
    assert not single, f"numeric mutants caught by fewer than two contracts: {single}"


def test_catalogue_is_well_formed():
    names = [m.name for m in MUTANTS]
    assert len(set(names)) == len(names)
    for impl in MUTANTS:
        assert impl.name.startswith("mutant-"), impl.name
        assert impl.description and "\n" not in impl.description, f"{impl.name}: one-line bug description"
    assert all(c.name.startswith("control-") for c in CONTROLS)


def test_building_the_catalogue_registers_nothing(pytestconfig):
    # only --impl-module registers them: the project's own conformance run must not judge the mutants
    if any(spec.startswith(kill_matrix.CATALOGUE) for spec in pytestconfig.getoption("--impl-module")):
        pytest.skip("this run registers the catalogue on purpose (--impl-module)")
    assert not any(name.startswith(("mutant-", "control-")) for name in attnconf.registered())


def _record(impl, contract, outcome):
    return {"impl": impl, "contract": contract, "outcome": outcome, "nodeid": f"t[{impl}]", "reason": "", "ratios": {}}


def test_a_contract_failing_a_correct_implementation_catches_nothing():
    records = [
        _record("mutant-a", "DENSE-1", "failed"),
        _record("mutant-a", "MASK-1", "failed"),
        _record("mutant-b", "DENSE-1", "failed"),
        _record("mutant-b", "MASK-1", "passed"),
        _record("mutant-c", "MASK-1", "skipped"),
        _record("good", "DENSE-1", "failed"),
        _record("good", "MASK-1", "passed"),
    ]
    matrix = kill_matrix.analyse(records, {"mutant-a": "", "mutant-b": "", "mutant-c": ""}, ["good"])
    assert matrix.first_catch("mutant-a") == "MASK-1"
    assert matrix.survivors == ["mutant-b", "mutant-c"]
    assert matrix.conflicts == {"DENSE-1": ["mutant-a", "mutant-b"]}
    assert [r["impl"] for r in matrix.false_positives] == ["good"]
    assert matrix.not_run == ["mutant-c"]
    assert not matrix.ok
