"""One registry class for everything that is looked up by name (tasks, backbones, encoders...)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from eegbench._check import InvalidInputError, unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping with decorator registration and helpful lookup errors.

    Parameters
    ----------
    kind : str
        What the registry holds ("backbone", "encoder"...), used in error messages.
    hint : str
        Appended to unknown-name errors, e.g. how to add a new entry.
    """

    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def _add(item: T) -> T:
            if name in self._entries:
                raise InvalidInputError(f"{self.kind} {name!r} is registered twice.")
            self._entries[name] = item
            return item

        return _add(obj) if obj is not None else _add

    def get(self, name: str) -> T:
        """Return the entry called ``name`` or raise an error listing the valid names."""
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._entries, self.hint) from None

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by a shell-style wildcard ``pattern``."""
        names = sorted(self._entries)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
