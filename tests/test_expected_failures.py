"""Expected-failure lists: parsing, matching, and strictness in a real run."""

import pytest

from attnconf.expected_failures import find_reason, parse


def test_parse_and_match():
    entries = parse("# comment\nMASK-3 # rows with no key give NaN\n*test_large_logits*float16* # overflow\n")
    assert find_reason(entries, "x::test_fully_masked[impl]", {"MASK-3"}) == ("MASK-3", "rows with no key give NaN")
    assert find_reason(entries, "c/t.py::test_large_logits[impl-5.0-torch.float16]", {"STAB-1"})[0].startswith("*")
    assert find_reason(entries, "c/t.py::test_other[impl]", {"DENSE-1"}) is None


def test_exact_node_ids_with_brackets_match():
    entries = parse("conformance/t.py::test_x[impl-a] # reason\n")
    assert find_reason(entries, "conformance/t.py::test_x[impl-a]", set())


def test_reason_is_required():
    with pytest.raises(ValueError, match="reason"):
        parse("MASK-3\n")
