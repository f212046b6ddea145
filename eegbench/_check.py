"""Errors and small validators shared by the whole package.

Every error caused by what a user passed (a name, a file, an option) derives from
:class:`EegbenchError`; the CLI prints its message without a traceback and exits with code 2.
Messages say what was expected and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


class EegbenchError(Exception):
    """Base class of errors caused by user input or data; safe to show without a traceback."""


class InvalidInputError(EegbenchError, ValueError):
    """An option, name or file content is not what eegbench expects."""


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


def describe_validation_error(error, source: str) -> str:
    """One line per problem of a pydantic ``ValidationError``, prefixed by where it came from."""
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown field")
        elif item["type"] == "missing":
            lines.append(f"  {where}: required field is missing")
        else:
            lines.append(f"  {where}: {item['msg']} (got {item.get('input')!r})")
    return f"{source} is invalid:\n" + "\n".join(lines)
