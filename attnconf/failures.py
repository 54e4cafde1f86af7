"""What kind of failure a test saw: the classes the matrix reports per test and per cell.

The checks raise these ``AssertionError`` subclasses, so the class travels with the exception; ``classify`` turns
any exception a test ended with into one class:

- NUMERICS: a result out of tolerance (the worst tensor and its err/bound are in the message);
- NONFINITE: NaN or inf in a result;
- SHAPE, DTYPE, DEVICE: a result of the wrong shape, dtype or device;
- EXACT: a value that must be exactly 0, or bit-identical, is not;
- TIMEOUT: the test ran past its time limit (pytest-timeout);
- CRASH: the process running the test died (abort, segfault; pytest-xdist reports the lost worker);
- ERROR: the implementation raised (the exception type is kept);
- FAIL: any other failed assertion of a contract test.
"""

from __future__ import annotations


class ConformanceFailure(AssertionError):
    kind = "FAIL"


class NumericsFailure(ConformanceFailure):
    kind = "NUMERICS"


class NonFiniteResult(ConformanceFailure):
    kind = "NONFINITE"


class WrongShape(ConformanceFailure):
    kind = "SHAPE"


class WrongDtype(ConformanceFailure):
    kind = "DTYPE"


class WrongDevice(ConformanceFailure):
    kind = "DEVICE"


class NotExact(ConformanceFailure):
    kind = "EXACT"


def classify(exc: BaseException | None, message: str = "") -> str:
    """The class of a failure, from the exception (or, where none survived, the report's message).

    Exceptions that wrap others (hypothesis's FlakyFailure around a timeout inside a property, an exception
    group) are classified by what they wrap.
    """
    if isinstance(exc, ConformanceFailure):
        return exc.kind
    inner = [*getattr(exc, "exceptions", ()), getattr(exc, "__cause__", None), getattr(exc, "__context__", None)]
    for wrapped in (e for e in inner if e is not None and e is not exc):
        kind = classify(wrapped)
        if kind != "FAIL":
            return kind
    text = message or (str(exc) if exc is not None else "")
    if text.lstrip().startswith("Timeout") or "Timeout (>" in text:
        return "TIMEOUT"
    if "worker" in text and "crashed" in text:
        return "CRASH"
    if exc is None or isinstance(exc, AssertionError) or type(exc).__name__ == "Failed":
        return "FAIL"
    return "ERROR"


def error_type(exc: BaseException | None) -> str | None:
    """The exception type of an ERROR, as ``module.Name`` for anything outside builtins."""
    if exc is None or isinstance(exc, AssertionError):
        return None
    cls = type(exc)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
