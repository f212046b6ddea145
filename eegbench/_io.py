"""Hashing and atomic file writes: caches and results must never be half-written or stale."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from eegbench._check import InvalidInputError


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the same content always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"Cannot serialise {type(obj).__name__} to JSON")


def hash_json(obj: Any, length: int = 64) -> str:
    """sha256 hex digest of the canonical JSON form of ``obj`` (truncated to ``length``)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def sha256_file(path: str | Path, chunk_size: int = 1 << 22) -> str:
    """sha256 hex digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old or the new file, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """Atomically ``np.save`` an array (no pickle)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(final: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final`` that is renamed to ``final`` on success.

    A crash leaves no half-built ``final`` behind (the temporary folder is removed), so a cache
    entry either exists completely or not at all. If another process finished ``final`` first,
    its copy wins and ours is discarded. With ``replace=True`` (rebuilding a damaged entry), an
    existing ``final`` is moved aside and deleted once ours is in place instead.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    aside: Path | None = None
    try:
        yield tmp
        if replace and final.exists():
            # A folder cannot be renamed over a non-empty one: move the old one aside first, so
            # that ``final`` is missing only between two renames and is never seen half-deleted.
            aside = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
            os.replace(final, aside / final.name)
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        for leftover in (tmp, aside):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


class FileDigests:
    """sha256 of files, remembered by (path, size, mtime) so unchanged files are not re-read.

    The memo lives in ``<cache_home>/file-digests.json``; a file whose size or modification time
    changed is hashed again, so a stale digest is never returned.
    """

    def __init__(self, path: Path | None = None) -> None:
        from eegbench._paths import cache_home

        self.path = path or cache_home() / "file-digests.json"
        try:
            self.entries: dict[str, list] = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            self.entries = {}
        self.dirty = False

    def digest(self, file: Path) -> str:
        stat = file.stat()
        key = str(file.resolve())
        known = self.entries.get(key)
        if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
            return known[2]
        value = sha256_file(file)
        self.entries[key] = [stat.st_size, stat.st_mtime_ns, value]
        self.dirty = True
        return value

    def save(self) -> None:
        if self.dirty:
            atomic_write_json(self.path, self.entries)
            self.dirty = False


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (first on line {seen[key]}); keep one",
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """Parse YAML like ``yaml.safe_load``, but a duplicate mapping key is an error (``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_problem(error: yaml.YAMLError, *, located: bool = True) -> str:
    """A YAML error in one line: what, and where (line and column, when known and ``located``)."""
    problem = " ".join(str(getattr(error, "problem", None) or error).split())
    mark = getattr(error, "problem_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None and located else problem


def read_yaml_mapping(path: Path, kind: str, expected: str) -> dict[str, Any]:
    """The mapping in a user's YAML file; a missing file, bad YAML, a duplicate key or another type is a clear error.

    ``kind`` names the file in messages ("Task file"); ``expected`` says what it must hold.
    """
    if not path.is_file():
        raise InvalidInputError(f"{kind} {path} does not exist.")
    try:
        raw = load_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise InvalidInputError(f"{kind} {path} is not valid YAML ({yaml_problem(err)}).") from err
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"{kind} {path} cannot be read: {err}.") from err
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{kind} {path} must hold {expected}, got {type(raw).__name__}.")
    return raw
