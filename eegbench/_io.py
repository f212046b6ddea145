"""Hashing and atomic file writes: caches and results must never be half-written or stale.

A write that fails for a reason the user can fix (permissions, a read-only or full file system, a
file where a folder belongs) becomes a :class:`~eegbench._check.StorageError` that names the path
and what to do (:func:`explain_os_errors`); folders about to be written are checked before any
work starts (:func:`check_writable_folder`).
"""

from __future__ import annotations

import contextlib
import errno
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

from eegbench._check import EegbenchError, InvalidInputError, StorageError
from eegbench._progress import logger

#: OS errors that a user can fix, in words, with the remedy that does not depend on the path's role
_FIXABLE_OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied", "check its permissions"),
    errno.EPERM: ("operation not permitted", "check its permissions"),
    errno.EROFS: ("read-only file system", ""),
    errno.ENOSPC: ("no space left on device", "free some space"),
    errno.EDQUOT: ("disk quota exceeded", "free some space"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", ""),
    errno.EISDIR: ("it is a folder, not a file", ""),
    errno.ENOENT: ("no such file or folder", ""),
}


def explain_os_error(err: OSError, path: str | Path | None = None, *, action: str = "access",
                     instead: str = "") -> str | None:
    """One line on an OS error a user can fix, or None for others (an I/O error is no user's doing).

    ``path`` names the file in the message (default: the error's own, which for an atomic write is a
    temporary file); ``instead`` is the alternative that the path's role offers ("pass another
    --results-dir"), given after the remedy of the error itself ("free some space").
    """
    known = _FIXABLE_OS_ERRORS.get(err.errno) if err.errno is not None else None
    if known is None:
        return None
    problem, remedy = known
    where = path if path is not None else err.filename
    head = f"Cannot {action} {where}: {problem}." if where is not None else f"{problem.capitalize()}."
    fix = ", or ".join(part for part in (remedy, instead) if part)
    return f"{head} {fix[0].upper()}{fix[1:]}." if fix else head


@contextlib.contextmanager
def explain_os_errors(path: str | Path, *, action: str = "write", instead: str = "") -> Iterator[None]:
    """Turn an OS error a user can fix, raised in the block, into a :class:`StorageError` about ``path``.

    See :func:`explain_os_error` for ``action`` and ``instead``; other errors pass unchanged.
    """
    try:
        yield
    except OSError as err:
        message = None if isinstance(err, EegbenchError) else explain_os_error(err, path, action=action,
                                                                                instead=instead)
        if message is None:
            raise
        raise StorageError(message) from err


def check_folder_path(folder: Path, instead: str) -> Path:
    """``folder``, unless a file sits where it or one of its parents belongs (then a StorageError)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():  # False below a file (ENOTDIR): the first existing one decides
            if candidate.is_dir():
                return folder
            where = "it is a file" if candidate == folder else f"{candidate} is a file"
            raise StorageError(f"Cannot use {folder} as a folder: {where}. {instead[0].upper()}{instead[1:]}.")
    return folder


def check_writable_folder(folder: str | Path, instead: str) -> Path:
    """Create ``folder`` if needed and check that files can be written in it, before any work starts.

    A probe file is created and removed, so that a read-only, unwritable or full folder (or a file
    where the folder belongs) is reported at once as a :class:`StorageError`, not after hours of
    work; ``instead`` says what to do then ("pass another --results-dir").
    """
    folder = check_folder_path(Path(folder), instead)
    with explain_os_errors(folder, action="write to", instead=instead):
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".eegbench-write-probe-")
        os.close(fd)
        os.unlink(probe)
    return folder


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
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):  # ValueError: not JSON, or not UTF-8
            entries = {}
        # a damaged memo is forgotten, never trusted: its files are hashed again
        self.entries: dict[str, list] = entries if isinstance(entries, dict) else {}
        self.dirty = False

    def digest(self, file: Path) -> str:
        stat = file.stat()
        key = str(file.resolve())
        known = self.entries.get(key)
        if isinstance(known, list) and len(known) == 3 and known[:2] == [stat.st_size, stat.st_mtime_ns] \
                and isinstance(known[2], str):
            return known[2]
        value = sha256_file(file)
        self.entries[key] = [stat.st_size, stat.st_mtime_ns, value]
        self.dirty = True
        return value

    def save(self) -> None:
        """Write the memo; where it cannot be written, warn: the files are only hashed again next time."""
        if self.dirty:
            try:
                atomic_write_json(self.path, self.entries)
            except OSError as err:
                logger.warning("Cannot remember file digests in %s (%s); files will be hashed again next time.",
                               self.path, explain_os_error(err, self.path, action="write") or err)
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
