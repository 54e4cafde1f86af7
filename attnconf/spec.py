"""The contract IDs, read from the human-readable spec so the two can never disagree."""

from __future__ import annotations

import functools
import importlib.resources
import re

SPEC_PATH = importlib.resources.files("attnconf.conformance") / "SPEC.md"  # package data of the conformance suite
_HEADING = re.compile(r"^###\s+([A-Z]+-\d+)\s+[—-]+\s+(.+?)\s*$")


@functools.lru_cache(maxsize=None)
def contracts() -> dict[str, str]:
    """Contract ID -> one-line title, in spec order."""
    found = {}
    for line in SPEC_PATH.read_text().splitlines():
        m = _HEADING.match(line)
        if m:
            found[m.group(1)] = m.group(2)
    return found
