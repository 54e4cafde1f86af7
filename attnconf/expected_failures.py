"""Expected failures: known, documented deviations of one implementation, kept apart from the suite.

As in array-api-tests, each implementation may carry a list of test ids it is known to fail, with the reason.
An entry is a contract ID (``MASK-3``), a pytest node id, or a glob over node ids (``*test_fully_masked*``), followed
by ``#`` and the reason. Built-in implementations keep theirs in ``impls/expected_failures/<name>.txt``; others
pass ``expected_failures={pattern: reason}`` when they register. Entries are strict xfails (a deviation that gets
fixed shows up as XPASS(strict) until its entry is removed), except on hypothesis properties and where the reason
starts with ``numeric:`` (an error at the edge of the bound, which another CPU's kernels may keep inside it).
Name one exact case: a kernel limit (a shortest key length, a block multiple) is a capability, not an entry.
"""

from __future__ import annotations

import fnmatch

import importlib.resources

from .registry import Implementation


def parse(text: str, origin: str = "<text>") -> dict[str, str]:
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, sep, reason = line.partition("#")
        if not sep or not reason.strip():
            raise ValueError(f"{origin}:{number}: every expected failure needs a reason after '#': {line!r}")
        entries[pattern.strip()] = reason.strip()
    return entries


def for_implementation(impl: Implementation) -> dict[str, str]:
    path = importlib.resources.files("attnconf.impls") / "expected_failures" / f"{impl.name}.txt"  # package data
    entries = parse(path.read_text(), str(path)) if path.is_file() else {}
    entries.update(impl.expected_failures)
    return entries


NUMERIC_EDGE = "numeric:"


def is_numeric_edge(reason: str) -> bool:
    return reason.strip().lower().startswith(NUMERIC_EDGE)


def matches(pattern: str, nodeid: str, contracts: set[str]) -> bool:
    return pattern in contracts or pattern == nodeid or fnmatch.fnmatchcase(nodeid, pattern)


def find_reason(entries: dict[str, str], nodeid: str, contracts: set[str]) -> tuple[str, str] | None:
    for pattern, reason in entries.items():
        if matches(pattern, nodeid, contracts):
            return pattern, reason
    return None
