"""SPEC.md and the contract tests describe the same contracts."""

import re
from pathlib import Path

from attnconf.spec import SPEC_PATH, contracts

CONFORMANCE = Path(__file__).resolve().parent.parent / "conformance"
MARKER = re.compile(r"""contract\(\s*["']([A-Z]+-\d+)["']\s*\)""")


def _ids_in_tests() -> set[str]:
    return {m for path in CONFORMANCE.glob("test_*.py") for m in MARKER.findall(path.read_text())}


def test_every_contract_has_a_test():
    untested = set(contracts()) - _ids_in_tests()
    assert not untested, f"contracts in {SPEC_PATH.name} without a test: {sorted(untested)}"


def test_every_tested_contract_is_in_the_spec():
    unknown = _ids_in_tests() - set(contracts())
    assert not unknown, f"tests carry contract IDs missing from {SPEC_PATH.name}: {sorted(unknown)}"


def test_spec_has_the_core_contracts():
    ids = contracts()
    for expected in ("MASK-3", "CAUSAL-2", "CAUSAL-3", "VARLEN-1", "GRAD-1", "VALID-5", "DET-1"):
        assert expected in ids
    assert all(title for title in ids.values())
