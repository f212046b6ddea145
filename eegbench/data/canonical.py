"""The canonical on-disk form of a dataset: memory-mappable arrays plus a JSON sidecar.

Layout of a canonical folder::

    dataset.json          name, variant, recording info, subjects, shapes, dtype, file hashes,
                          source description and the fingerprint (a hash of all of it)
    images.json           training and test image tables (ids, files, concepts)
    sub-01/train.npy      (n_train_images, n_reps, n_channels, n_times)
    sub-01/test.npy       (n_test_images, n_reps, n_channels, n_times)
    ...

Every loader (synthetic generator, THINGS-EEG2, THINGS-MEG) writes this form once, through
:func:`cached_canonical`; later loads are near-instant memory maps. Folders are built in a
temporary location and renamed into place, so a crash never leaves a half-written dataset.

Bytes are served only as ``dataset.json`` recorded them: every open checks the fingerprint and the
sha256 of each array (memoised by size and modification time), and so does every subject load. A
cached folder that fails is rebuilt from its source with a warning, so a result's dataset
fingerprint always describes the bytes it was computed from.

A subject whose source files are damaged is left out of the folder, and ``dataset.json`` records
why (``unavailable``), so that it does not keep the other subjects from loading; asking for it
raises that error (:meth:`Dataset.resolve_subject`). Its source bytes are part of the cache key, so
repairing them gives a new folder.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from eegbench._check import DataError, MissingDataError
from eegbench._io import FileDigests, atomic_directory, atomic_save_npy, atomic_write_json, hash_json, sha256_file
from eegbench._progress import logger
from eegbench.data.base import Dataset, ImageTable, RecordingInfo

FORMAT = "eegbench-canonical"
FORMAT_VERSION = 1
#: Written for the data root in ``dataset.json`` (image root, messages), which holds no path of the machine.
DATA_ROOT_PLACEHOLDER = "<data-root>"


class CanonicalWriter:
    """Write a canonical dataset folder one subject at a time (memory stays bounded).

    Parameters
    ----------
    root : path-like
        Folder to write into (normally a temporary folder from ``atomic_directory``).
    dtype : str
        ``"float32"`` or ``"float16"``; declared in ``dataset.json``.
    data_root : path-like, optional
        The source's data root, written as :data:`DATA_ROOT_PLACEHOLDER` in the recorded errors of
        subjects that cannot be converted (see :meth:`subject`).
    """

    def __init__(self, root: str | Path, dtype: str = "float32", data_root: str | Path | None = None) -> None:
        self.root = Path(root)
        self.dtype = np.dtype(dtype)
        self.data_root = data_root
        self.subjects: list[str] = []
        self.files: dict[str, str] = {}
        self.shapes: dict[str, dict[str, list[int]]] = {}
        self.unavailable: dict[str, DataError] = {}

    @contextlib.contextmanager
    def subject(self, label: str) -> Iterator[None]:
        """Convert subject ``label`` inside this block; a :class:`DataError` leaves out that subject only.

        The error is recorded in ``dataset.json`` and raised whenever the subject is asked for.
        """
        try:
            yield
        except DataError as error:
            logger.warning("%s cannot be converted; the other subjects can still be used. %s", label, error)
            self.unavailable[label] = error

    def add_subject(self, label: str, train: np.ndarray, test: np.ndarray) -> None:
        """Save one subject's arrays (cast to the declared dtype) and record their hashes."""
        if not (np.isfinite(train).all() and np.isfinite(test).all()):
            raise DataError(f"Subject {label}: responses contain NaN or Inf values.")
        for split, array in (("train", train), ("test", test)):
            rel = f"{label}/{split}.npy"
            atomic_save_npy(self.root / rel, np.ascontiguousarray(array, dtype=self.dtype))
            self.files[rel] = sha256_file(self.root / rel)
        self.shapes[label] = {"train": list(train.shape), "test": list(test.shape)}
        self.subjects.append(label)

    def require_subjects(self) -> None:
        """Raise the first subject's error when no subject could be converted (there is nothing to describe)."""
        if not self.subjects:
            raise next(iter(self.unavailable.values()), DataError(f"No subject was converted into {self.root}."))

    def finish(
        self,
        *,
        name: str,
        variant: str,
        info: RecordingInfo,
        train_images: ImageTable,
        test_images: ImageTable,
        image_root: str,
        source: dict,
    ) -> dict:
        """Write ``images.json`` and ``dataset.json``; return the dataset description.

        Raises the first subject's error when no subject could be converted.
        """
        self.require_subjects()
        images = {"train": train_images.to_dict(), "test": test_images.to_dict()}
        atomic_write_json(self.root / "images.json", images)
        shapes = {tuple(s["train"][1:]) for s in self.shapes.values()}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name,
            "variant": variant,
            "dtype": self.dtype.name,
            "info": info.to_dict(),
            "subjects": self.subjects,
            "shapes": self.shapes,
            "repetitions": _repetitions(self.shapes),
            "image_root": image_root,
            "images_sha256": hash_json(images),
            "files": self.files,
            "source": source,
        }
        if self.unavailable:  # only then, so that the fingerprints of complete datasets stay as they were
            root = str(self.data_root) if self.data_root else None
            meta["unavailable"] = {label: str(error).replace(root, DATA_ROOT_PLACEHOLDER) if root else str(error)
                                   for label, error in self.unavailable.items()}
        if len(shapes) > 1:
            raise DataError(f"Subjects of {name!r} disagree on (repetitions, channels, times): {shapes}")
        meta["fingerprint"] = hash_json(meta)
        atomic_write_json(self.root / "dataset.json", meta)
        return meta


def _repetitions(shapes: dict[str, dict[str, list[int]]]) -> list[int | None]:
    first = next(iter(shapes.values()), None)
    return [first["train"][1], first["test"][1]] if first else [None, None]


def cached_canonical(folder: Path, build: Callable[[Path], None], action: str) -> Dataset:
    """The canonical dataset cached in ``folder``: built once, checked on every open, rebuilt when damaged.

    Every loader opens its cache through this function, so all of them check the same things
    (see :func:`open_canonical`) and repair damage the same way.

    Parameters
    ----------
    folder : pathlib.Path
        The cache folder (its name carries the cache key).
    build : callable
        Writes the canonical form from the source (via :class:`CanonicalWriter`) into the folder
        it is given, a temporary folder that is renamed to ``folder`` when ``build`` returns.
    action : str
        What building does, for the log (e.g. ``"Generating the synthetic dataset"``).
    """
    if not folder.exists():
        logger.info("%s once into the canonical form in %s.", action, folder)
        with atomic_directory(folder) as tmp:
            build(tmp)

    def rebuild() -> None:
        with atomic_directory(folder, replace=True) as tmp:
            build(tmp)

    return open_canonical(folder, rebuild=rebuild)


def open_canonical(root: str | Path, rebuild: Callable[[], None] | None = None) -> Dataset:
    """Open a canonical dataset folder written by :class:`CanonicalWriter`, after checking it.

    ``dataset.json`` must parse, have this format version and match its fingerprint;
    ``images.json`` must match the hash recorded for it; and every array must have the declared
    shape and dtype and the sha256 recorded in ``dataset.json``. Digests are remembered by file
    size and modification time (:class:`eegbench._io.FileDigests`), so an unchanged file is
    hashed once, not on every open.

    Parameters
    ----------
    root : path-like
        The folder.
    rebuild : callable, optional
        Rewrites the folder from its source. A folder that fails the check is then rebuilt
        (with one warning) instead of refused, and so is a subject whose arrays change later
        (see :func:`load_subject_arrays`). Without it, a failed check raises :class:`DataError`.
    """
    root = Path(root)
    meta, images = _repaired(root, rebuild, lambda: _checked_folder(root))
    image_root = Path(meta["image_root"])
    unavailable = {label: DataError(message) for label, message in meta.get("unavailable", {}).items()}
    return Dataset(
        name=meta["name"],
        variant=meta["variant"],
        subjects=tuple(sorted([*meta["subjects"], *unavailable])) if unavailable else tuple(meta["subjects"]),
        info=RecordingInfo.from_dict(meta["info"]),
        train_images=ImageTable.from_dict(images["train"]),
        test_images=ImageTable.from_dict(images["test"]),
        image_root=image_root if image_root.is_absolute() else root / image_root,
        fingerprint=meta["fingerprint"],
        root=root,
        read_arrays=load_subject_arrays,
        metadata=meta,
        rebuild=rebuild,
        unavailable=unavailable,
    )


def load_subject_arrays(dataset: Dataset, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map a subject's arrays after checking them against ``dataset.json``.

    The files are checked again on every load (a stat when unchanged), so bytes that changed
    since the dataset was opened are never served under its fingerprint: a dataset that can be
    rebuilt is rebuilt, and the rebuilt arrays are served only if the fingerprint is unchanged.
    """

    def check() -> tuple[np.ndarray, np.ndarray]:
        digests = FileDigests()
        try:
            return _checked_arrays(dataset.root, dataset.metadata, label, digests)
        finally:
            digests.save()

    def rebuild_unchanged() -> None:
        dataset.rebuild()
        rebuilt = _checked_description(dataset.root)[0]["fingerprint"]
        if rebuilt != dataset.fingerprint:
            raise DataError(f"{dataset.root} was rebuilt from its source with different content (fingerprint "
                            f"{rebuilt[:12]}, opened as {dataset.fingerprint[:12]}); load the dataset again.")

    return _repaired(dataset.root, rebuild_unchanged if dataset.rebuild else None, check)


class _Damaged(Exception):
    """A canonical folder fails its check; the message names the file and what is wrong with it."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing

    def error(self, consequence: str) -> DataError:
        """The user-facing error: this damage, then ``consequence``."""
        return (MissingDataError if self.missing else DataError)(f"{self} {consequence}")


_T = TypeVar("_T")


def _repaired(root: Path, rebuild: Callable[[], None] | None, check: Callable[[], _T]) -> _T:
    """``check()``; if it finds damage, rebuild ``root`` (one warning) and check once more."""
    try:
        return check()
    except _Damaged as damage:
        if rebuild is None:
            raise damage.error(f"It cannot be rebuilt here: {root} was opened without the source it was made "
                               f"from.") from None
        logger.warning("%s Rebuilding %s from its source.", damage, root)
    try:
        rebuild()
        return check()
    except _Damaged as damage:
        raise damage.error(f"(This is after rebuilding {root} from its source.)") from None


def _checked_folder(root: Path) -> tuple[dict, dict]:
    """``dataset.json`` and ``images.json`` of ``root``, after checking them and every array."""
    meta, images = _checked_description(root)
    digests = FileDigests()
    try:
        for label in meta["subjects"]:
            _checked_arrays(root, meta, label, digests)
    finally:
        digests.save()
    return meta, images


def _checked_description(root: Path) -> tuple[dict, dict]:
    """``dataset.json`` and ``images.json``, checked against the format, the fingerprint and the images hash."""
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise _Damaged(f"{meta_path} not found: {root} is not an eegbench canonical dataset folder.", missing=True)
    try:
        meta = json.loads(meta_path.read_text())
        images = json.loads((root / "images.json").read_text())
    except (OSError, ValueError) as err:  # ValueError: bad JSON or bytes that are not UTF-8
        raise _Damaged(f"Cannot read the canonical dataset in {root}: {err}.") from None
    if not isinstance(meta, dict):
        raise _Damaged(f"{meta_path} holds a {type(meta).__name__}, not the description of a dataset.")
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise _Damaged(f"{meta_path} has format {meta.get('format')!r} v{meta.get('format_version')}; this "
                       f"eegbench reads {FORMAT!r} v{FORMAT_VERSION}.")
    # The fingerprint covers the file hashes, so checking it ties the arrays' bytes to the fingerprint.
    if meta.get("fingerprint") != hash_json({k: v for k, v in meta.items() if k != "fingerprint"}):
        raise _Damaged(f"{meta_path} does not match its fingerprint: it changed after it was written.")
    if hash_json(images) != meta["images_sha256"]:
        raise _Damaged(f"{root / 'images.json'} does not match the hash recorded in dataset.json: it changed after "
                       f"it was written.")
    return meta, images


def _checked_arrays(root: Path, meta: dict, label: str, digests: FileDigests) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map ``label``'s training and test arrays, checking shape, dtype and sha256 against ``meta``."""
    arrays = []
    for split in ("train", "test"):
        rel = f"{label}/{split}.npy"
        path = root / rel
        if not path.is_file():
            raise _Damaged(f"{path} is missing.", missing=True)
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as err:
            raise _Damaged(f"{path} is truncated or corrupt ({err}).") from None
        expected = meta["shapes"][label][split]
        if list(array.shape) != expected or array.dtype.name != meta["dtype"]:
            raise _Damaged(f"{path} holds {array.dtype.name} {tuple(array.shape)}, but dataset.json declares "
                           f"{meta['dtype']} {tuple(expected)}.")
        if digests.digest(path) != meta["files"][rel]:
            raise _Damaged(f"{path} does not match the sha256 recorded in dataset.json: its bytes changed after "
                           f"it was written.")
        arrays.append(array)
    return arrays[0], arrays[1]
