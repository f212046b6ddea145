"""Feature extraction throughput: image decoding, the model's forward pass and both overlapped, timed apart.

Images per second of each stage show which one is the bottleneck; the forward pass is also
reported as a fraction of the GPU's dense bf16 peak, from the FLOPs of one image's pass counted
on the meta device. Sizes follow ``EEGBENCH_BENCHMARK`` (see bench_sizes.py); environment
variables choose the rest (see README.md): ``EEGBENCH_BENCH_BACKBONE`` (default
``efficientnet_lite0``), ``EEGBENCH_BENCH_LAYERS`` (``sweep``), ``EEGBENCH_BENCH_IMAGES`` (number
of generated 500 x 500 JPEGs, like THINGS images; default: the mode's ``n_images``),
``EEGBENCH_BENCH_BATCH`` (16 on CPU, 256 on CUDA), ``EEGBENCH_BENCH_WORKERS`` (decoding processes;
default as in extraction), ``EEGBENCH_BENCH_PEAK_TFLOPS`` (for GPUs not in the table). Weights are
random: their values do not change the time.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from bench_sizes import rounds
from eegbench.backbones import extract_features, flops_per_image, image_batches, load_backbone
from eegbench.backbones.features import compute_settings

CUDA = torch.cuda.is_available()
BACKBONE = os.environ.get("EEGBENCH_BENCH_BACKBONE", "efficientnet_lite0")
LAYERS = os.environ.get("EEGBENCH_BENCH_LAYERS", "sweep").split(",")
BATCH = int(os.environ.get("EEGBENCH_BENCH_BATCH", 256 if CUDA else 16))
WORKERS = int(os.environ["EEGBENCH_BENCH_WORKERS"]) if "EEGBENCH_BENCH_WORKERS" in os.environ else None

#: Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets.
BF16_PEAK_TFLOPS = {"H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4,
                    "GH200": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0}


def bf16_peak_tflops() -> float | None:
    """The current GPU's dense bf16 peak (first matching name in the table), or the override."""
    if "EEGBENCH_BENCH_PEAK_TFLOPS" in os.environ:
        return float(os.environ["EEGBENCH_BENCH_PEAK_TFLOPS"])
    if not CUDA:
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory, sizes):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (500, 500, 3), dtype=np.uint8)
    paths = []
    for i in range(int(os.environ.get("EEGBENCH_BENCH_IMAGES", sizes.n_images))):
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(np.roll(base, i, axis=1)).save(path, quality=90)  # distinct files, same decode cost
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def setup(device):
    backbone = load_backbone(BACKBONE, pretrained=False, device=str(device))
    refs = backbone.resolve_layers(LAYERS)
    return backbone, refs, flops_per_image(backbone, refs)


def _record(benchmark, images: int, gflops: float | None = None) -> None:
    best = benchmark.stats.stats.min if getattr(benchmark, "stats", None) else None
    info = benchmark.extra_info
    info.update({"backbone": BACKBONE, "layers": ",".join(LAYERS), "images": images, "batch": BATCH,
                 "device": torch.cuda.get_device_name() if CUDA else "cpu"})
    if best:
        info["images_per_s"] = round(images / best, 1)
        if gflops is not None:
            info["gflops_per_image"] = round(gflops, 2)
            info["tflops_per_s"] = round(gflops * images / best / 1e3, 4)
            peak = bf16_peak_tflops()
            if peak:
                info["fraction_of_bf16_peak"] = round(info["tflops_per_s"] / peak, 3)


def test_decode(benchmark, setup, image_paths):
    """PIL decoding and preprocessing in the worker processes, nothing else."""
    benchmark.group = "extraction"
    backbone, _, _ = setup

    def decode():
        for _ in image_batches(backbone, image_paths, batch_size=BATCH, num_workers=WORKERS):
            pass

    benchmark.pedantic(decode, rounds=rounds(), iterations=1)
    _record(benchmark, len(image_paths))


def test_forward(benchmark, setup, image_paths):
    """The forward pass on batches already on the device (autocast, channels-last as in extraction)."""
    benchmark.group = "extraction"
    backbone, refs, flops = setup
    size = backbone.preprocessing.size
    batch = torch.randn(BATCH, 3, size, size, device=backbone.device)
    n_batches = max(1, len(image_paths) // BATCH)

    def forward():
        with compute_settings(backbone, "auto") as memory_format:
            images = batch.contiguous(memory_format=memory_format)
            for _ in range(n_batches):
                backbone.forward_layers(images, refs)
        if CUDA:
            torch.cuda.synchronize()

    if CUDA:
        forward()  # warm-up: cuDNN autotuning, kernel selection
    benchmark.pedantic(forward, rounds=rounds(), iterations=1)
    _record(benchmark, n_batches * BATCH, flops / 1e9)


def test_extract(benchmark, setup, image_paths):
    """Decoding and forward overlapped, as `eegbench features extract` runs (no cache)."""
    benchmark.group = "extraction"
    backbone, refs, flops = setup
    benchmark.pedantic(extract_features, args=(backbone, image_paths, refs),
                       kwargs={"batch_size": BATCH, "num_workers": WORKERS}, rounds=rounds(), iterations=1)
    _record(benchmark, len(image_paths), flops / 1e9)
