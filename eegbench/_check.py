"""Errors and small validators shared by the whole package.

Every error caused by what a user passed (a name, a file, an option) derives from
:class:`EegbenchError`; the CLI prints its message without a traceback and exits with code 2.
Messages say what was expected and how to fix it.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


class EegbenchError(Exception):
    """Base class of errors caused by user input or data; safe to show without a traceback."""


class InvalidInputError(EegbenchError, ValueError):
    """An option, name or file content is not what eegbench expects."""


class StorageError(InvalidInputError):
    """A file or folder eegbench must write cannot be: no permission, a read-only or full file system,
    or a file where a folder belongs. The message names the path and what to do instead."""


class UnknownNameError(InvalidInputError):
    """A task, method, backbone, layer, dataset... name that is not registered."""


class DataError(EegbenchError):
    """A data file is missing, truncated, corrupt or disagrees with its metadata."""


class MissingDataError(DataError, FileNotFoundError):
    """Required data (a file, a subject, model weights) is not on disk."""


class SubmissionError(EegbenchError):
    """A submission's code failed: it raised, exited, died or ran out of time.

    The message starts with the method's own error and ends with which method failed, in which of
    its calls when that is known, doing what (``RuntimeError: boom [method 'x', in fit() while
    fitting 2 unit(s)]``); ``details`` holds the worker's traceback when there is one.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class TransductiveMethodError(InvalidInputError):
    """A method's embeddings of a row depend on the other rows embedded with it."""


def suggest(name: str, valid: Iterable[str]) -> str:
    """Return a " Did you mean 'x'?" hint for a misspelt ``name``, or an empty string."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def unknown_name(kind: str, name: object, valid: Iterable[str], hint: str = "") -> UnknownNameError:
    """Build the error for an unknown ``kind`` name, listing the valid names."""
    valid = sorted(valid, key=str)
    listing = ", ".join(map(str, valid)) if valid else "(none)"
    message = f"Unknown {kind} {name!r}.{suggest(str(name), map(str, valid))} Valid {kind}s: {listing}."
    return UnknownNameError(message + (f" {hint}" if hint else ""))


def check_option(parameter: str, value: T, allowed: Iterable[T]) -> T:
    """Return ``value`` if it is one of ``allowed``, else raise an error that lists them."""
    allowed = list(allowed)
    if value not in allowed:
        listing = ", ".join(repr(a) for a in allowed)
        raise InvalidInputError(
            f"Invalid value {value!r} for {parameter}.{suggest(str(value), map(str, allowed))} "
            f"Allowed values: {listing}."
        )
    return value


def check_count(name: str, value: int | None, minimum: int = 1) -> int | None:
    """``value`` unless it is not an integer of at least ``minimum`` (None passes: "the default")."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInputError(f"{name} must be an integer of at least {minimum}, got {value!r}.")
    if value < minimum:
        raise InvalidInputError(f"{name} must be at least {minimum}, got {value}.")
    return value


def check_positive(name: str, value: float | None, *, zero: bool = False, unit: str = "") -> float | None:
    """``value`` unless it is not a finite number above 0 (or at least 0 with ``zero``); None passes.

    ``unit`` ends the phrase in messages: "timeout must be a positive number of seconds".
    """
    if value is None:
        return None
    kind = "non-negative" if zero else "positive"
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or value < 0 or (value == 0 and not zero)):
        raise InvalidInputError(f"{name} must be a {kind} number{f' of {unit}' if unit else ''}, got {value!r}.")
    return value


def check_unique(values: Iterable[T], what: str = "entries") -> None:
    """Fail if any of ``values`` appears more than once (a repeated subject or seed would run twice)."""
    seen: set = set()
    repeated = list(dict.fromkeys(v for v in values if v in seen or seen.add(v)))
    if repeated:
        raise InvalidInputError(f"{what} must not repeat; given more than once: "
                                f"{', '.join(map(str, repeated))}.")


def check_seeds(seeds: Sequence[int] | None) -> list[int] | None:
    """Requested seeds as a list: non-empty, non-negative integers, none repeated (None: the task's)."""
    if seeds is None:
        return None
    seeds = list(seeds)
    if not seeds:
        raise InvalidInputError("No seeds given; pass seeds such as 0,1, or leave them out for the task's seeds.")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0]
    if bad:
        raise InvalidInputError(f"Seeds must be non-negative integers, got {', '.join(map(repr, bad))}.")
    check_unique(seeds, "Seeds")
    return [int(s) for s in seeds]


def describe_validation_error(error, source: str) -> str:
    """A pydantic ``ValidationError`` as one line: where it came from, then each problem, ``; ``-separated."""
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown field")
        elif item["type"] == "missing":
            problems.append(f"{where}: required field is missing")
        else:
            message = item["msg"].removeprefix("Value error, ").rstrip(".")  # pydantic's prefix for a ValueError
            problems.append(f"{where}: {message} (got {item.get('input')!r})")
    return f"{source} is invalid: " + "; ".join(problems) + "."
