"""Feature extraction in one pass over an image set, and a content-addressed feature cache.

A cache entry is keyed by a hash of everything that can change the numbers: the backbone (class,
weights tag and file hash, preprocessing), the image set (relative file names and the sha256 of
every file), the layer and its pooling, the stored dtype and the feature format version. A changed
input therefore never hits a stale entry. Entries are float16 ``.npy`` arrays with a JSON sidecar,
written atomically.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eegbench._io import FileDigests, atomic_save_npy, atomic_write_json, hash_json
from eegbench._paths import cache_home
from eegbench._progress import logger, progress
from eegbench.backbones.base import Backbone, LayerRef

FEATURE_FORMAT_VERSION = 1
STORED_DTYPE = "float16"


def image_manifest(image_root: Path, files: Sequence[str]) -> str:
    """Hash of an image set: its relative file names, in order, and each file's sha256."""
    memo = FileDigests()
    missing = [f for f in files if not (image_root / f).is_file()]
    if missing:
        from eegbench._check import MissingDataError

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
    """Features of one image set: float32 ``(n_images, dim)`` arrays keyed by ``LayerRef.key``."""

    arrays: dict[str, np.ndarray]
    cache_keys: dict[str, str]
    manifest: str

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]


class FeatureCache:
    """Content-addressed store of extracted features under ``<cache_home>/features``."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else cache_home() / "features"

    def key(self, backbone: Backbone, ref: LayerRef, manifest: str) -> str:
        return hash_json({
            "format": FEATURE_FORMAT_VERSION, "backbone": backbone.identity(), "layer": ref.name,
            "module": ref.module, "pooling": ref.pooling, "images": manifest, "dtype": STORED_DTYPE,
        })

    def _paths(self, backbone: Backbone, key: str) -> tuple[Path, Path]:
        folder = self.root / backbone.name
        return folder / f"{key}.npy", folder / f"{key}.json"

    def load(self, backbone: Backbone, key: str, n_images: int) -> np.ndarray | None:
        """The cached array for ``key``, or None when absent or unreadable (then it is rebuilt)."""
        array_path, meta_path = self._paths(backbone, key)
        if not (array_path.is_file() and meta_path.is_file()):
            return None
        try:
            array = np.load(array_path, allow_pickle=False)
        except (OSError, ValueError) as err:
            logger.warning("Feature cache entry %s is unreadable (%s); re-extracting.", array_path, err)
            return None
        if array.ndim != 2 or array.shape[0] != n_images or array.dtype != np.dtype(STORED_DTYPE):
            logger.warning("Feature cache entry %s has shape %s; re-extracting.", array_path, array.shape)
            return None
        return array

    def save(self, backbone: Backbone, key: str, array: np.ndarray, sidecar: dict) -> None:
        array_path, meta_path = self._paths(backbone, key)
        atomic_save_npy(array_path, array.astype(STORED_DTYPE))
        atomic_write_json(meta_path, {**sidecar, "key": key, "shape": list(array.shape), "dtype": STORED_DTYPE})

    def entries(self) -> list[dict]:
        """Sidecars of every cached entry, each with its size in bytes."""
        out = []
        for meta_path in sorted(self.root.glob("*/*.json")):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            array_path = meta_path.with_suffix(".npy")
            meta["bytes"] = array_path.stat().st_size if array_path.exists() else 0
            out.append(meta)
        return out


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[Path], transform) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as image:
            return self.transform(image.convert("RGB"))


def extract_features(backbone: Backbone, paths: Sequence[Path], refs: Sequence[LayerRef], *,
                     batch_size: int = 64, num_workers: int | None = None,
                     description: str = "Extracting features") -> dict[str, np.ndarray]:
    """Extract every layer of ``refs`` for the images at ``paths`` in one pass.

    Images are decoded with PIL in ``num_workers`` background processes (default: none on CPU,
    where the model needs the cores, up to 8 on CUDA). On CUDA the forward pass runs under bf16
    autocast. Returns float32 arrays of shape ``(n_images, dim)`` keyed by ``ref.key``.
    """
    device = next(backbone.model.parameters()).device
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    loader = torch.utils.data.DataLoader(
        _ImageFiles(paths, backbone.preprocessing.transform()), batch_size=batch_size,
        num_workers=num_workers, pin_memory=device.type == "cuda",
        persistent_workers=False, prefetch_factor=4 if num_workers else None,
    )
    chunks: dict[str, list[torch.Tensor]] = {ref.key: [] for ref in refs}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else _null()
    with progress(f"{description} ({backbone.name})", total=len(paths)) as advance:
        for batch in loader:
            with autocast:
                outputs = backbone.forward_layers(batch.to(device, non_blocking=True), refs)
            for key, value in outputs.items():
                chunks[key].append(value.float().cpu())
            advance(len(batch))
    return {key: torch.cat(parts).numpy() for key, parts in chunks.items()}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def get_features(backbone: Backbone, image_root: Path, files: Sequence[str], refs: Sequence[LayerRef], *,
                 cache: FeatureCache | None = None, batch_size: int = 64,
                 num_workers: int | None = None) -> FeatureSet:
    """Features of ``refs`` for an image set, from the cache where possible.

    Missing layers are extracted together in one pass and cached. Returned arrays are float32
    ``(n_images, dim)`` holding exactly the cached float16 values, so a first run and a cached run
    give identical numbers.
    """
    cache = cache or FeatureCache()
    manifest = image_manifest(image_root, files)
    unique = list({ref.key: ref for ref in refs}.values())
    keys = {ref.key: cache.key(backbone, ref, manifest) for ref in unique}
    out: dict[str, np.ndarray] = {}
    missing = []
    for ref in unique:
        array = cache.load(backbone, keys[ref.key], len(files))
        if array is None:
            missing.append(ref)
        else:
            out[ref.key] = array
    if missing:
        start = time.perf_counter()
        fresh = extract_features(backbone, [image_root / f for f in files], missing,
                                 batch_size=batch_size, num_workers=num_workers)
        seconds = time.perf_counter() - start
        for ref in missing:
            sidecar = {"backbone": backbone.identity(), "layer": ref.to_dict(), "images": manifest,
                       "n_images": len(files), "format": FEATURE_FORMAT_VERSION,
                       "extraction_seconds": round(seconds, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            cache.save(backbone, keys[ref.key], fresh[ref.key], sidecar)
            out[ref.key] = fresh[ref.key].astype(STORED_DTYPE)
    return FeatureSet({ref.key: out[ref.key].astype(np.float32) for ref in unique}, keys, manifest)
