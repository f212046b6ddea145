"""Shared machinery of the real-data loaders: safe reading of pickled source files and the
convert-once canonical cache.

A loader hashes its source files (sha256, remembered by size and modification time in
:class:`eegbench._io.FileDigests`), derives a cache key from those digests, the variant, its options
and its converter version, and converts the sources into the canonical form
(:mod:`eegbench.data.canonical`) only when no folder with that key exists. A changed source file
therefore gets a new key and a fresh conversion; an interrupted conversion leaves nothing behind;
a converted folder whose files no longer match their recorded sha256 is converted again.

The canonical ``dataset.json`` holds no path of the user's machine: image files are recorded
relative to the data root's image folder, the data root is written as the placeholder
:data:`DATA_ROOT_PLACEHOLDER`, and the loader points :attr:`Dataset.image_root` at the current data
root on every load. The fingerprint is therefore the same on every machine that holds the same data.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eegbench._check import DataError, MissingDataError
from eegbench._io import FileDigests, hash_json
from eegbench._paths import cache_home
from eegbench._progress import progress
from eegbench.data.base import Dataset
from eegbench.data.canonical import DATA_ROOT_PLACEHOLDER, cached_canonical

# What a pickled source file may construct: numpy arrays, dtypes and scalars (numpy 1 and 2 module
# names). Builtin containers, strings and numbers need no lookup. Anything else (e.g. os.system) is
# refused, so a tampered download cannot run code.
_ALLOWED_GLOBALS = {
    (module, name)
    for core in ("numpy.core", "numpy._core")
    for module, name in ((f"{core}.multiarray", "_reconstruct"), (f"{core}.multiarray", "scalar"),
                         (f"{core}.numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are expected)")
        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = "numpy._core" + module[len("numpy.core"):]
        return super().find_class(module, name)


def read_pickled_dict(path: Path, what: str, fix: str) -> dict:
    """Read a dict saved with ``np.save(path, dict)`` or ``pickle.dump``, allowing numpy objects only.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    what : str
        What the file is, for error messages (e.g. ``"THINGS-EEG2 preprocessed EEG"``).
    fix : str
        How to get a good copy, appended to errors.
    """
    if not path.is_file():
        raise MissingDataError(f"{path} is missing ({what}). {fix}")
    try:
        with open(path, "rb") as handle:
            if handle.read(6) == b"\x93NUMPY":
                handle.seek(0)
                version = np.lib.format.read_magic(handle)
                header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)(handle)
                if header[2] != np.dtype(object):
                    raise DataError(f"{path} holds a plain {header[2]} array of shape {header[0]}; expected a "
                                    f"saved dict ({what}). {fix}")
                obj = _NumpyOnlyUnpickler(handle).load()
                if isinstance(obj, np.ndarray) and obj.shape == ():
                    obj = obj.item()
            else:
                handle.seek(0)
                obj = _NumpyOnlyUnpickler(handle).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            MemoryError, IndexError, KeyError, OSError) as err:
        raise DataError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}); expected {what}. "
                        f"{fix}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, expected a dict ({what}). {fix}")
    return obj


def require_keys(data: dict, keys: Sequence[str], path: Path, fix: str) -> None:
    """Fail naming the file and the keys it lacks."""
    missing = [k for k in keys if k not in data]
    if missing:
        raise DataError(f"{path} lacks the key(s) {missing}; expected {list(keys)}, found {sorted(map(str, data))}. "
                        f"{fix}")


def require_finite(array: np.ndarray, path: Path, key: str, fix: str,
                   where: Callable[[tuple[int, ...]], str] | None = None) -> None:
    """Fail naming the file, the key and the first bad value when ``array`` holds NaN or Inf.

    ``where`` turns the index of the first bad value into words (default: the index itself).
    """
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{path}: {key} holds NaN/Inf values (first at {where(first) if where else f'index {first}'}). "
                        f"{fix}")


def source_digests(root: Path, files: Sequence[Path]) -> dict[str, str]:
    """sha256 of each source file, keyed by its path relative to ``root`` (stat-memoised)."""
    memo = FileDigests()
    digests = {}
    with progress("Checking source files", total=len(files)) as advance:
        for file in files:
            digests[file.relative_to(root).as_posix()] = memo.digest(file)
            advance(1)
    memo.save()
    return digests


def cached_conversion(name: str, variant: str, key_material: dict, image_root: Path,
                      build: Callable[[Path], None], *, data_root: Path | None = None,
                      broken: Mapping[str, DataError] | None = None,
                      absent: Mapping[str, DataError] | None = None) -> Dataset:
    """Open the canonical folder for ``key_material``, converting with ``build(folder)`` if absent or damaged.

    Parameters
    ----------
    name, variant : str
        Dataset name and variant (they name the cache folder).
    key_material : dict
        Everything the converted arrays depend on: source digests, variant, options, converter
        version. Its hash is the cache key.
    image_root : pathlib.Path
        The current data root's image folder; becomes :attr:`Dataset.image_root`.
    build : callable
        Writes the canonical form into the folder it is given (via ``CanonicalWriter``, with
        ``data_root`` so that the errors it records for subjects it cannot convert name no path).
    data_root : pathlib.Path, optional
        The current data root: written back into those errors.
    broken, absent : mapping of str to DataError, optional
        Subjects of the published dataset that this data root cannot serve, found before converting:
        ``broken`` ones (their files are there but damaged or incomplete) are listed among the
        subjects and raise their error when asked for; ``absent`` ones are not listed and raise it too.
    """
    key = hash_json(key_material)
    folder = cache_home() / "datasets" / name / f"{variant}-{key[:16]}"
    dataset = cached_canonical(folder, build, f"Converting {name} ({variant})")
    unavailable = {label: type(error)(str(error).replace(DATA_ROOT_PLACEHOLDER, str(data_root)))
                   for label, error in dataset.unavailable.items()} if data_root else dict(dataset.unavailable)
    unavailable |= {**(absent or {}), **(broken or {})}
    subjects = tuple(sorted({*dataset.subjects, *(broken or {})}))
    return dataclasses.replace(dataset, image_root=image_root, subjects=subjects, unavailable=unavailable)


def epoch_continuous(raw, events: np.ndarray, *, tmin: float, tmax: float, sfreq: float, first_time: float,
                     path: Path, hint: str, chunk: int = 2000
                     ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray, int]:
    """Epochs of a continuous ``mne.io.Raw`` around ``events``, as the raw-data variants preprocess them.

    Each epoch spans ``tmin`` to ``tmax`` s around its event, is baseline-corrected on its pre-stimulus
    part, resampled to ``sfreq`` Hz and cropped to ``first_time``..``tmax``. Events are epoched in
    chunks so that memory stays bounded for hour-long recordings at 1000 Hz.

    Returns the ``(epochs, channels, times)`` float32 data, the event code of each epoch, the channel
    names, the time axis and the number of events dropped because their epoch leaves the recording.
    """
    import mne

    parts, codes, dropped, layout = [], [], 0, None
    for start in range(0, len(events), chunk):
        batch = events[start:start + chunk]
        try:
            epochs = mne.Epochs(raw, batch, tmin=tmin, tmax=tmax, baseline=(None, 0), preload=True,
                                reject_by_annotation=False, verbose=False)
        except (RuntimeError, ValueError) as err:
            raise DataError(f"{path}: cannot epoch the recording around its events ({err}). {hint}") from None
        dropped += len(batch) - len(epochs)
        epochs.resample(sfreq, verbose=False).crop(tmin=first_time, tmax=None, verbose=False)
        parts.append(epochs.get_data(copy=False).astype(np.float32))
        codes.append(epochs.events[:, 2])
        layout = (tuple(epochs.ch_names), np.round(epochs.times, 9))
    return np.concatenate(parts), np.concatenate(codes), layout[0], layout[1], dropped
