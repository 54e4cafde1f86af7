"""Failure classes: what the matrix says a failed test saw."""

import pytest
from hypothesis.errors import FlakyFailure

from attnconf.failures import NonFiniteResult, NotExact, NumericsFailure, WrongShape, classify, error_type


def test_the_checks_exceptions_carry_their_class():
    assert [classify(e("x")) for e in (NumericsFailure, NonFiniteResult, WrongShape, NotExact)] == [
        "NUMERICS", "NONFINITE", "SHAPE", "EXACT"]


def test_a_timeout_inside_a_hypothesis_property_is_a_timeout():
    try:
        pytest.fail("Timeout (>5.0s) from pytest-timeout.")
    except BaseException as exc:  # pytest's Failed is a BaseException
        timeout = exc
    wrapper = RuntimeError("wrapped")
    wrapper.__cause__ = timeout
    assert classify(timeout) == "TIMEOUT"
    assert classify(FlakyFailure("flaky", [wrapper])) == "TIMEOUT"


def test_raised_errors_crashes_and_plain_assertions():
    assert classify(RuntimeError("no kernel")) == "ERROR" and error_type(RuntimeError()) == "RuntimeError"
    assert classify(None, "worker 'gw0' crashed while running 't'") == "CRASH"
    assert classify(AssertionError("x")) == "FAIL" and error_type(AssertionError()) is None
