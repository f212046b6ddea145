"""Retrieval scoring and feature extraction throughput."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench_sizes import record_rate, rounds
from eegbench.backbones import extract_features, load_backbone
from eegbench.metrics import retrieve


def test_retrieval(benchmark, sizes):
    """Scoring one unit: rank the gallery for every test trial (tie-aware)."""
    benchmark.group = "evaluation"
    rng = np.random.default_rng(0)
    brain = rng.standard_normal((sizes.n_gallery, 512), dtype=np.float32)
    images = rng.standard_normal((sizes.n_gallery, 512), dtype=np.float32)
    benchmark.pedantic(retrieve, args=(brain, images), rounds=max(rounds(), 5), iterations=1)
    record_rate(benchmark, sizes.n_gallery, "trials")


@pytest.fixture(scope="module")
def image_files(tmp_path_factory, sizes):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(sizes.n_images):
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def test_feature_extraction(benchmark, sizes, device, image_files):
    """Decode, preprocess and run the packaged backbone, all layers in one pass."""
    benchmark.group = "evaluation"
    backbone = load_backbone("efficientnet_lite0", device=str(device))
    refs = [backbone.resolve(layer.name) for layer in backbone.layers] + [backbone.resolve("final")]
    benchmark.pedantic(extract_features, args=(backbone, image_files, refs), rounds=rounds(), iterations=1)
    record_rate(benchmark, len(image_files), "images")
