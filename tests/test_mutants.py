"""The conformance suite catches every mutant of tests/mutants/catalogue.py and fails no correct implementation.

``test_every_mutant_is_caught`` and ``test_no_false_positives`` share one kill-matrix run (the CPU conformance
suite in subprocesses, about a minute on two cores): if a change to the suite lets a mutant through, or makes a
contract fail a correct implementation, they fail and name it.
"""

from __future__ import annotations

import pytest

import attnconf
from tests.mutants import kill_matrix
from tests.mutants.catalogue import CONTROLS, MUTANTS


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> kill_matrix.KillMatrix:
    result, _, _ = kill_matrix.run(tmp_path_factory.mktemp("kill-matrix"))
    return result


def test_every_mutant_is_caught(matrix):
    assert list(matrix.mutants) == [m.name for m in MUTANTS]
    assert not matrix.not_run, f"implementations whose every test was skipped: {matrix.not_run}"
    survivors = {m: matrix.mutants[m] for m in matrix.survivors}
    assert not survivors, f"mutants that no contract caught: {survivors}"


def test_no_false_positives(matrix):
    failures = [f"{r['impl']} / {r['contract']}: {r['nodeid']}: {r['reason']}" for r in matrix.false_positives]
    assert not failures, "correct implementations failed:\n" + "\n".join(failures)
    assert not matrix.conflicts


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
