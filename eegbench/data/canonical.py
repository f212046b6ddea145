"""The canonical on-disk form of a dataset: memory-mappable arrays plus a JSON sidecar.

Layout of a canonical folder::

    dataset.json          name, variant, recording info, subjects, shapes, dtype, file hashes,
                          source description and the fingerprint (a hash of all of it)
    images.json           training and test image tables (ids, files, concepts)
    sub-01/train.npy      (n_train_images, n_reps, n_channels, n_times)
    sub-01/test.npy       (n_test_images, n_reps, n_channels, n_times)
    ...

Every loader (synthetic generator, THINGS-EEG2, THINGS-MEG) writes this form once; later loads
are near-instant memory maps. Folders are built in a temporary location and renamed into place,
so a crash never leaves a half-written dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eegbench._check import DataError, MissingDataError
from eegbench._io import atomic_save_npy, atomic_write_json, hash_json, sha256_file
from eegbench.data.base import Dataset, ImageTable, RecordingInfo

FORMAT = "eegbench-canonical"
FORMAT_VERSION = 1


class CanonicalWriter:
    """Write a canonical dataset folder one subject at a time (memory stays bounded).

    Parameters
    ----------
    root : path-like
        Folder to write into (normally a temporary folder from ``atomic_directory``).
    dtype : str
        ``"float32"`` or ``"float16"``; declared in ``dataset.json``.
    """

    def __init__(self, root: str | Path, dtype: str = "float32") -> None:
        self.root = Path(root)
        self.dtype = np.dtype(dtype)
        self.subjects: list[str] = []
        self.files: dict[str, str] = {}
        self.shapes: dict[str, dict[str, list[int]]] = {}

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
        """Write ``images.json`` and ``dataset.json``; return the dataset description."""
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
        if len(shapes) > 1:
            raise DataError(f"Subjects of {name!r} disagree on (repetitions, channels, times): {shapes}")
        meta["fingerprint"] = hash_json(meta)
        atomic_write_json(self.root / "dataset.json", meta)
        return meta


def _repetitions(shapes: dict[str, dict[str, list[int]]]) -> list[int | None]:
    first = next(iter(shapes.values()), None)
    return [first["train"][1], first["test"][1]] if first else [None, None]


def open_canonical(root: str | Path) -> Dataset:
    """Open a canonical dataset folder written by :class:`CanonicalWriter`."""
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise MissingDataError(f"{meta_path} not found: {root} is not an eegbench canonical dataset folder.")
    try:
        meta = json.loads(meta_path.read_text())
        images = json.loads((root / "images.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"Cannot read the canonical dataset in {root}: {err}. Delete the folder to rebuild it.") from err
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{meta_path} has format {meta.get('format')!r} v{meta.get('format_version')}; this eegbench "
            f"reads {FORMAT!r} v{FORMAT_VERSION}. Delete the folder to rebuild it."
        )
    image_root = Path(meta["image_root"])
    return Dataset(
        name=meta["name"],
        variant=meta["variant"],
        subjects=tuple(meta["subjects"]),
        info=RecordingInfo.from_dict(meta["info"]),
        train_images=ImageTable.from_dict(images["train"]),
        test_images=ImageTable.from_dict(images["test"]),
        image_root=image_root if image_root.is_absolute() else root / image_root,
        fingerprint=meta["fingerprint"],
        root=root,
        metadata=meta,
    )


def load_subject_arrays(dataset: Dataset, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map a subject's arrays and check them against ``dataset.json``."""
    expected = dataset.metadata["shapes"][label]
    arrays = []
    for split in ("train", "test"):
        path = dataset.root / label / f"{split}.npy"
        if not path.is_file():
            raise MissingDataError(f"{path} is missing; delete {dataset.root} to rebuild the dataset.")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as err:
            raise DataError(f"{path} is truncated or corrupt ({err}); delete {dataset.root} to rebuild it.") from err
        if list(array.shape) != expected[split] or array.dtype.name != dataset.metadata["dtype"]:
            raise DataError(
                f"{path} holds {array.dtype.name} {tuple(array.shape)}, but dataset.json declares "
                f"{dataset.metadata['dtype']} {tuple(expected[split])}; delete {dataset.root} to rebuild it."
            )
        arrays.append(array)
    return arrays[0], arrays[1]
