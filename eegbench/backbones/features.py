"""Feature extraction in one pass over an image set, and a content-addressed feature cache.

A cache entry is keyed by a hash of everything that can change the numbers: the backbone (class,
weights tag and file hash, preprocessing), the image set (relative file names and the sha256 of
every file), the layer and its pooling, the compute precision, the stored dtype and the feature
format version. A changed input therefore never hits a stale entry. Entries are float16 ``.npy``
arrays with a JSON sidecar (which also records the layer's module and output shape and the
array's sha256), written atomically. An entry whose bytes no longer match that sha256, or whose
sidecar is unreadable or describes another entry, is re-extracted, so the recorded cache key always
names the served values. A cache that cannot be written (a full disk, a read-only ``EEGBENCH_HOME``)
costs a warning, not the features just extracted.

On CUDA, images are decoded by PIL in background worker processes that prefetch batches into
pinned memory, the forward pass runs under bf16 autocast (fp16 where bf16 is unsupported), CNNs
run in channels-last memory format, and pooled outputs stay on the GPU until the end so the GPU
never waits for the host. On CPU everything runs in the main process in float32.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eegbench._check import DataError, InvalidInputError, MissingDataError, check_count, check_option
from eegbench._io import FileDigests, atomic_save_npy, atomic_write_json, explain_os_error, hash_json
from eegbench._paths import cache_home
from eegbench._progress import logger, progress
from eegbench.backbones.base import Backbone, LayerRef
from eegbench.backbones.weights import safe_name
from eegbench.devices import resolve_device
from eegbench.views import ImageView

FEATURE_FORMAT_VERSION = 2
STORED_DTYPE = "float16"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


def list_images(root: str | Path) -> list[str]:
    """Image files under ``root`` (recursively), as sorted relative POSIX paths."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise MissingDataError(f"Image folder {root} does not exist.")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MissingDataError(f"No image files ({', '.join(IMAGE_SUFFIXES)}) under {root}.")
    return files


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> bf16 on CUDA (fp16 where bf16 is unsupported), fp32 elsewhere; others are validated."""
    check_option("precision", precision, PRECISIONS)
    if device.type != "cuda":
        if precision not in ("auto", "fp32"):
            raise InvalidInputError(f"Precision {precision!r} is for CUDA devices; on {device.type} use fp32 or auto.")
        return "fp32"
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return precision


def image_manifest(image_root: Path, files: Sequence[str]) -> str:
    """Hash of an image set: its relative file names, in order, and each file's sha256."""
    memo = FileDigests()
    missing = [f for f in files if not (image_root / f).is_file()]
    if missing:
        raise MissingDataError(f"{len(missing)} image files are missing under {image_root}, e.g. {missing[0]}.")
    with progress("Hashing images", total=len(files)) as advance:
        entries = []
        for f in files:
            entries.append([f, memo.digest(image_root / f)])
            advance(1)
    memo.save()
    return hash_json(entries)


@dataclass
class FeatureSet:
    """Features of one image set: float32 ``(n_images, dim)`` arrays keyed by ``LayerRef.key``.

    ``layers`` describes each key: the resolved layer (name, module, pooling, index, relative
    depth), its per-image ``output_shape`` before pooling, the pooled ``dim``, and whether the
    array came from the cache (``cached``).
    """

    arrays: dict[str, np.ndarray]
    cache_keys: dict[str, str]
    manifest: str
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]


class FeatureCache:
    """Content-addressed store of extracted features under ``<cache_home>/features``."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else cache_home() / "features"

    def key(self, backbone: Backbone, ref: LayerRef, manifest: str, precision: str = "fp32",
            view: ImageView | None = None) -> str:
        """The content hash identifying the features of ``ref`` for the image set ``manifest`` (seen
        through ``view``, when given: see :mod:`eegbench.views`)."""
        content = {
            "format": FEATURE_FORMAT_VERSION, "backbone": backbone.identity(), "layer": ref.name,
            "module": ref.module, "pooling": ref.pooling, "images": manifest, "dtype": STORED_DTYPE,
            "precision": precision,
        }
        return hash_json(content | ({"view": view.model_dump(mode="json")} if view is not None else {}))

    def _paths(self, backbone: Backbone, key: str) -> tuple[Path, Path]:
        folder = self.root / safe_name(backbone.name)
        return folder / f"{key}.npy", folder / f"{key}.json"

    def sidecar(self, backbone: Backbone, key: str) -> dict[str, Any]:
        """The JSON sidecar of entry ``key`` (call after :meth:`load` succeeded)."""
        meta_path = self._paths(backbone, key)[1]
        meta = _read_sidecar(meta_path)
        if meta is None:
            raise MissingDataError(f"Feature cache sidecar {meta_path} is missing or unreadable.")
        return meta

    def load(self, backbone: Backbone, key: str, n_images: int) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The cached array for ``key`` and its sidecar, or None when absent or damaged (then it is rebuilt).

        An entry is damaged when its sidecar is unreadable, when the array's sha256 differs from
        the one its sidecar recorded (digests are memoised by size and modification time, so an
        unchanged file is hashed once), or when the array does not parse or has the wrong shape.
        Damage is reported as one warning.
        """
        array_path, meta_path = self._paths(backbone, key)
        if not (array_path.is_file() and meta_path.is_file()):
            return None
        try:
            return _read_entry(array_path, meta_path, n_images)
        except _DamagedEntry as damage:
            logger.warning("Feature cache entry %s %s; re-extracting.", array_path, damage)
            return None

    def save(self, backbone: Backbone, key: str, array: np.ndarray, sidecar: dict) -> None:
        """Store ``array`` (as float16) with ``sidecar``, which also records the file's sha256.

        Where the cache cannot be written (a full disk, no permission), warn and go on: the entry
        (never served without its sidecar) is extracted again next time.
        """
        array_path, meta_path = self._paths(backbone, key)
        try:
            atomic_save_npy(array_path, array.astype(STORED_DTYPE))
            digests = FileDigests()  # also remembers the digest, so the next load only stats the file
            digest = digests.digest(array_path)
            digests.save()
            atomic_write_json(meta_path, {**sidecar, "key": key, "shape": list(array.shape), "dtype": STORED_DTYPE,
                                          "sha256": digest})
        except OSError as err:
            problem = explain_os_error(err, array_path.parent, action="cache features in",
                                       instead="set EEGBENCH_HOME to another folder")
            if problem is None:
                raise
            logger.warning("%s The features are kept for this run and extracted again next time.", problem)

    def entries(self) -> list[dict]:
        """Sidecars of every cached entry, each with its size in ``bytes`` and whether it is ``current``.

        Entries written by an older feature format are never read again (their keys differ);
        they are listed so that their space can be reclaimed. Unreadable sidecars are skipped
        with a warning (their entries are re-extracted when next needed).
        """
        out = []
        for meta_path in sorted(self.root.glob("*/*.json")):
            meta = _read_sidecar(meta_path)
            if meta is None:
                logger.warning("Feature cache sidecar %s is unreadable; skipped.", meta_path)
                continue
            array_path = meta_path.with_suffix(".npy")
            meta["bytes"] = array_path.stat().st_size if array_path.exists() else 0
            meta["current"] = meta.get("format") == FEATURE_FORMAT_VERSION
            out.append(meta)
        return out


#: What a sidecar of any format holds, and what one of the current format holds (``features ls``
#: shows these fields). Current entries also record the array's ``sha256``, checked on load (entries
#: written before it was recorded are re-extracted once).
_SIDECAR_FIELDS = {"key": str, "format": int, "backbone": dict}
_CURRENT_FIELDS = {**_SIDECAR_FIELDS, "layer": dict, "images": str, "n_images": int, "precision": str,
                   "created": str}


class _DamagedEntry(Exception):
    """A feature cache entry that must not be served; the message says why."""


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar at ``path``, or None when it is not a JSON object with the fields of a sidecar."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):  # ValueError: bad JSON or bytes that are not UTF-8
        return None
    if not isinstance(meta, dict):
        return None
    fields = _CURRENT_FIELDS if meta.get("format") == FEATURE_FORMAT_VERSION else _SIDECAR_FIELDS
    return meta if all(isinstance(meta.get(f), t) for f, t in fields.items()) else None


def _read_entry(array_path: Path, meta_path: Path, n_images: int) -> tuple[np.ndarray, dict[str, Any]]:
    """A cache entry's array and sidecar, the array checked against the sidecar's sha256 and ``n_images``."""
    meta = _read_sidecar(meta_path)
    if meta is None:
        raise _DamagedEntry(f"has an unreadable sidecar ({meta_path.name})")
    if meta["key"] != array_path.stem:
        raise _DamagedEntry(f"has the sidecar of another entry ({meta['key']})")
    if not isinstance(meta.get("sha256"), str):
        raise _DamagedEntry("has no sha256 in its sidecar (written before eegbench recorded one)")
    digests = FileDigests()
    try:
        if digests.digest(array_path) != meta["sha256"]:
            raise _DamagedEntry("does not match the sha256 in its sidecar: its bytes changed after it was written")
    finally:
        digests.save()
    try:
        array = np.load(array_path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise _DamagedEntry(f"is unreadable ({err})") from None
    if array.ndim != 2 or array.shape[0] != n_images or array.dtype != np.dtype(STORED_DTYPE):
        raise _DamagedEntry(f"holds {array.dtype} {array.shape}, expected {STORED_DTYPE} ({n_images}, dim)")
    return array, meta


class _ImageFiles(torch.utils.data.Dataset):
    """Preprocessed images with, for each, why it could not be decoded ("" when it could).

    An image that cannot be decoded comes back as a blank image and a message instead of an
    exception: raised in a decoding worker, the exception would reach the main process wrapped in
    the worker's traceback, so :func:`image_batches` raises it from the message instead.
    """

    def __init__(self, paths: Sequence[Path], transform, view: ImageView | None = None) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.view = view

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        from PIL import Image

        try:
            with Image.open(self.paths[i]) as image:
                image = image.convert("RGB")
                return self.transform(image if self.view is None else self.view.apply(image, i)), ""
        # what PIL raises for an empty, truncated, corrupt or oversized file
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
            blank = self.transform(Image.new("RGB", (256, 256)))
            return blank, (f"Image {self.paths[i]} cannot be decoded ({type(err).__name__}: {err}): the file is "
                           f"truncated or corrupt. Replace it with an intact copy (for a dataset's images, unpack "
                           f"its image archive again).")


def image_batches(backbone: Backbone, paths: Sequence[Path], *, batch_size: int = 64,
                  num_workers: int | None = None, view: ImageView | None = None) -> Iterator[torch.Tensor]:
    """Batches of decoded, preprocessed images for ``backbone`` (seen through ``view``, when given), in file order.

    ``num_workers`` background processes decode with PIL and prefetch 4 batches each (default:
    none on CPU, where the model needs the cores; on CUDA one per core but one, up to 16, with
    pinned memory). An image that cannot be decoded raises a :class:`DataError` naming its file.
    """
    check_count("batch_size", batch_size)
    check_count("num_workers", num_workers, 0)
    cuda = backbone.device.type == "cuda"
    if num_workers is None:
        num_workers = min(16, max(1, (os.cpu_count() or 2) - 1)) if cuda else 0
    loader = torch.utils.data.DataLoader(
        _ImageFiles(paths, backbone.preprocessing.transform(), view), batch_size=batch_size, num_workers=num_workers,
        pin_memory=cuda, persistent_workers=False, prefetch_factor=4 if num_workers else None,
    )
    return _decoded(loader)


def _decoded(loader: torch.utils.data.DataLoader) -> Iterator[torch.Tensor]:
    """The image batches of ``loader``, raising the first image's problem (see :class:`_ImageFiles`)."""
    for images, problems in loader:
        problem = next((p for p in problems if p), None)
        if problem:
            raise DataError(problem)
        yield images


@contextlib.contextmanager
def compute_settings(backbone: Backbone, precision: str) -> Iterator[torch.memory_format]:
    """Autocast, cuDNN autotuning and channels-last for ``backbone``; yields the input memory format."""
    device = backbone.device
    precision = resolve_precision(precision, device)
    if device.type != "cuda":
        yield torch.contiguous_format
        return
    memory_format = torch.channels_last if backbone.channels_last else torch.contiguous_format
    backbone.model.to(memory_format=memory_format)
    autotune = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest convolution once
    try:
        with torch.autocast("cuda", dtype=_AUTOCAST_DTYPES[precision]) if precision != "fp32" else contextlib.nullcontext():
            yield memory_format
    finally:
        torch.backends.cudnn.benchmark = autotune


@dataclass
class Extraction:
    """Output of :func:`extract_features`: float32 ``(n_images, dim)`` arrays and per-image layer shapes."""

    arrays: dict[str, np.ndarray]
    output_shapes: dict[str, tuple[int, ...]]
    precision: str
    seconds: float


def extract_features(backbone: Backbone, paths: Sequence[Path], refs: Sequence[LayerRef], *,
                     batch_size: int = 64, num_workers: int | None = None, precision: str = "auto",
                     description: str = "Extracting features", view: ImageView | None = None) -> Extraction:
    """Extract every layer of ``refs`` for the images at ``paths`` in one pass.

    Parameters
    ----------
    backbone : Backbone
        A loaded backbone; it runs on the device it is on.
    paths : sequence of Path
        Image files, in the order of the output rows.
    refs : sequence of LayerRef
        Resolved layers (``backbone.resolve``).
    batch_size : int
        Images per forward pass.
    num_workers : int, optional
        Decoding processes (see :func:`image_batches`).
    precision : {"auto", "fp32", "bf16", "fp16"}
        Compute precision; ``"auto"`` is bf16 autocast on CUDA and fp32 on CPU.
    description : str
        Progress bar label.
    view : ImageView, optional
        Extract the features of this view of the images (:mod:`eegbench.views`) instead of the images.
    """
    start = time.perf_counter()
    device = backbone.device
    used = resolve_precision(precision, device)
    loader = image_batches(backbone, paths, batch_size=batch_size, num_workers=num_workers, view=view)
    chunks: dict[str, list[torch.Tensor]] = {ref.key: [] for ref in refs}
    shapes: dict[str, tuple[int, ...]] = {}
    with compute_settings(backbone, used) as memory_format, \
            progress(f"{description} ({backbone.name})", total=len(paths)) as advance:
        for batch in loader:
            images = batch.to(device, non_blocking=True, memory_format=memory_format)
            outputs = backbone.forward_layers(images, refs, None if shapes else shapes)
            for key, value in outputs.items():
                chunks[key].append(value)  # stays on the device: no synchronisation per batch
            advance(len(batch))
    arrays = {key: torch.cat(parts).cpu().numpy() for key, parts in chunks.items()}
    return Extraction(arrays, shapes, used, time.perf_counter() - start)


def get_features(backbone: Backbone, image_root: Path, files: Sequence[str], refs: Sequence[LayerRef], *,
                 cache: FeatureCache | None = None, batch_size: int = 64, num_workers: int | None = None,
                 precision: str = "auto", view: ImageView | None = None) -> FeatureSet:
    """Features of ``refs`` for an image set (or for a ``view`` of it), from the cache where possible.

    Missing layers are extracted together in one pass and cached. Returned arrays are float32
    ``(n_images, dim)`` holding exactly the cached float16 values, so a first run and a cached run
    give identical numbers. ``precision`` is the compute precision (see :func:`extract_features`).
    """
    cache = cache or FeatureCache()
    manifest = image_manifest(image_root, files)
    used = resolve_precision(precision, backbone.device)
    unique = list({ref.key: ref for ref in refs}.values())
    keys = {ref.key: cache.key(backbone, ref, manifest, used, view) for ref in unique}
    out: dict[str, np.ndarray] = {}
    layers: dict[str, dict[str, Any]] = {}
    missing = []
    for ref in unique:
        entry = cache.load(backbone, keys[ref.key], len(files))
        if entry is None:
            missing.append(ref)
        else:
            out[ref.key] = entry[0]
            layers[ref.key] = {**entry[1]["layer"], "cached": True}
    if missing:
        fresh = extract_features(backbone, [image_root / f for f in files], missing, batch_size=batch_size,
                                 num_workers=num_workers, precision=used, view=view,
                                 description="Extracting features" if view is None else f"Extracting {view.key}")
        for ref in missing:
            layer = {**ref.to_dict(), "output_shape": list(fresh.output_shapes[ref.key]),
                     "dim": int(fresh.arrays[ref.key].shape[1])}
            sidecar = {"backbone": backbone.identity(), "layer": layer, "images": manifest, "n_images": len(files),
                       "format": FEATURE_FORMAT_VERSION, "precision": used, "device": str(backbone.device),
                       "extraction_seconds": round(fresh.seconds, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            if view is not None:
                sidecar["view"] = view.model_dump(mode="json")
            cache.save(backbone, keys[ref.key], fresh.arrays[ref.key], sidecar)
            out[ref.key] = fresh.arrays[ref.key].astype(STORED_DTYPE)
            layers[ref.key] = {**layer, "cached": False}
    return FeatureSet({ref.key: out[ref.key].astype(np.float32) for ref in unique}, keys, manifest,
                      {ref.key: layers[ref.key] for ref in unique})


@dataclass(frozen=True)
class ImageSet:
    """Images whose features are extracted together: ``files`` relative to ``root``, in row order."""

    name: str
    root: Path
    files: tuple[str, ...]


def folder_image_set(images: str | Path) -> ImageSet:
    """Every image under the folder ``images`` (searched recursively), as one image set named after the folder.

    The image sets of a dataset (its training and test images) are made by
    :func:`eegbench.data.images.dataset_image_sets`: datasets sit above backbones, so this module
    knows nothing of them.
    """
    root = Path(images).expanduser()
    return ImageSet(root.name or str(root), root, tuple(list_images(root)))


def check_extraction_options(backbone: str, layers: Sequence[str | int | float], *, pooling: str | None = None,
                             weights: str | Path | None = None, image_size: int | None = None, batch_size: int = 64,
                             num_workers: int | None = None, precision: str = "auto") -> None:
    """The checks of :func:`extract_image_sets`'s options that need no weights and no image: run them first.

    Layers and pooling are resolved on the backbone's architecture alone (meta device).
    """
    from eegbench.backbones.registry import load_backbone

    check_count("batch_size", batch_size)
    check_count("num_workers", num_workers, 0)
    check_option("precision", precision, PRECISIONS)
    if weights is not None and not Path(weights).is_file():
        raise InvalidInputError(f"Weights file {weights} does not exist (or is not a file).")
    load_backbone(backbone, pretrained=False, device="meta").at_size(image_size).resolve_layers(layers, pooling)


def extract_image_sets(backbone: str, layers: Sequence[str | int | float], sets: Sequence[ImageSet], *,
                       pooling: str | None = None, weights: str | Path | None = None, device: str = "auto",
                       image_size: int | None = None, batch_size: int = 64, num_workers: int | None = None,
                       precision: str = "auto", cache: FeatureCache | None = None) -> dict[str, FeatureSet]:
    """Load ``backbone`` and bring the features of ``layers`` for every image set into the cache.

    Parameters
    ----------
    backbone : str
        Backbone name (see :func:`~eegbench.backbones.load_backbone`).
    layers : sequence
        Layer requests (see :meth:`Backbone.resolve_layers`, which also takes ``"all"`` and ``"sweep"``).
    sets : sequence of ImageSet
        Image sets (see :func:`folder_image_set` and :func:`eegbench.data.images.image_sets`); each
        is extracted in one pass over its images.
    pooling : str, optional
        Pooling of the intermediate layers, instead of each layer's default.
    weights : path-like, optional
        A local weights file.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    image_size : int, optional
        Feed CNNs ``image_size``-pixel images without cropping, as tasks with small images do.
    batch_size, num_workers, precision
        See :func:`extract_features`.
    cache : FeatureCache, optional
        Where features are stored (default: ``<cache_home>/features``).

    Returns
    -------
    dict
        The :class:`FeatureSet` of each image set, by its name.
    """
    from eegbench.backbones.registry import load_backbone

    check_extraction_options(backbone, layers, pooling=pooling, weights=weights, image_size=image_size,
                             batch_size=batch_size, num_workers=num_workers, precision=precision)
    model = load_backbone(backbone, weights=weights, device=str(resolve_device(device))).at_size(image_size)
    refs = model.resolve_layers(layers, pooling)
    return {image_set.name: get_features(model, image_set.root, image_set.files, refs, cache=cache,
                                         batch_size=batch_size, num_workers=num_workers, precision=precision)
            for image_set in sets}
