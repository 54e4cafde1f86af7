"""A pytest plugin for the kill-matrix runs: each named implementation runs only the tests of the contracts given.

``ATTNCONF_KILL_SELECTION`` names a JSON file ``{implementation: [contract IDs]}``; a test of a named implementation
none of whose contracts is listed is deselected. Implementations not named run everything. The quick kill matrix
(``kill_matrix.run(..., recorded=...)``) uses it to re-check, for each mutant, the contracts that the last full run
recorded as catching it. Loaded with ``-p tests.mutants.selection``; without the variable it does nothing.
"""

from __future__ import annotations

import json
import os

import pytest

VARIABLE = "ATTNCONF_KILL_SELECTION"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = os.environ.get(VARIABLE)
    if not path:
        return
    with open(path) as f:
        wanted = {name: set(ids) for name, ids in json.load(f).items()}
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        impl = callspec.params.get("impl") if callspec else None
        name = getattr(impl, "name", None)
        contracts = {m.args[0] for m in item.iter_markers("contract") if m.args}
        (drop if name in wanted and not contracts & wanted[name] else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
