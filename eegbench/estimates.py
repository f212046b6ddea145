"""What a sweep's jobs will cost, to book a cluster: GPU hours, feature-cache disk and peak GPU memory.

Everything is counted on PyTorch's ``meta`` device (no weights, no data, no GPU), from definitions:

* **Extraction FLOPs** of a job: :func:`~eegbench.backbones.flops_per_image` of its backbone up to
  the deepest layer the job needs, times the dataset's training and test images (one pass per job),
  plus one pass over the training images per view a method trains against (:mod:`eegbench.views`).
* **Training FLOPs** of a unit: one optimisation step (forward and backward) of eegbench's
  contrastive trainer (:class:`~eegbench.training.AlignmentStack`, built from the method's
  :class:`~eegbench.training.TrainingConfig` hyperparameters) counted with ``FlopCounterMode``, times
  the steps of an epoch, times the epochs, times the fits (a method that probes ``n`` layers one by
  one fits ``n`` models and refits the best; the units of a joint task share one fit). Methods with an
  encoder of their own are counted with
  the shared trainer at their hyperparameters: an estimate of the same order, not their exact cost.
* **GPU hours** = extraction FLOPs / (peak x extraction utilisation) + training FLOPs / (peak x
  training utilisation), at the rate of the sweep file's ``estimate`` section
  (:class:`eegbench.sweep.ComputeRate`; both passes run under bf16 autocast on a GPU).
* **Feature-cache disk** per (backbone, layer): images x pooled feature width x bytes of the stored
  dtype (:data:`~eegbench.backbones.features.STORED_DTYPE`).
* **Peak GPU memory** of a job: the larger of extraction (fp32 weights, plus a batch of
  :data:`EXTRACTION_BATCH` images times the largest tensor of one image's forward pass, times
  :data:`ACTIVATION_HEADROOM` for the tensors alive with it) and training (fp32 weights, gradients and
  two AdamW moments of the trainer, plus its device-resident training arrays).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import ValidationError
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from eegbench.backbones import load_backbone
from eegbench.backbones.base import LayerRef
from eegbench.backbones.features import STORED_DTYPE
from eegbench.training import AlignmentStack, TrainingConfig

#: images per extraction batch (the default of :func:`eegbench.backbones.extract_features`)
EXTRACTION_BATCH = 64
#: live activations during extraction, as a multiple of the largest single tensor of the forward pass
ACTIVATION_HEADROOM = 4
#: bytes per trainer parameter: fp32 weight, gradient and AdamW's two moments
TRAINER_BYTES_PER_PARAM = 16
FP32_BYTES = 4


@dataclass(frozen=True)
class Workload:
    """What one configuration computes, in the sizes the estimates need."""

    backbone: str
    image_size: int | None
    layers: tuple[LayerRef, ...]
    n_images: int
    n_channels: int
    n_times: int
    #: training responses of one unit (training images x the subjects it trains on)
    train_samples: int
    training: TrainingConfig
    #: models fitted per unit
    fits: int
    #: training images, and the keys of the views of them the method trains against
    n_train_images: int = 0
    views: tuple[str, ...] = ()
    #: units that share one fit (the evaluated subjects of a joint task)
    units_per_fit: int = 1


@dataclass(frozen=True)
class Estimate:
    """Compute of a set of units: FLOPs, feature-cache bytes and peak GPU memory."""

    extraction_flops: float = 0.0
    training_flops: float = 0.0
    cache_bytes: float = 0.0
    peak_memory_bytes: float = 0.0

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(self.extraction_flops + other.extraction_flops, self.training_flops + other.training_flops,
                        self.cache_bytes + other.cache_bytes, max(self.peak_memory_bytes, other.peak_memory_bytes))


def training_config(hyperparameters: dict) -> TrainingConfig:
    """The trainer configuration of a method's hyperparameters (its encoder, when unknown to eegbench: the default)."""
    shared = {key: value for key, value in hyperparameters.items() if key in TrainingConfig.model_fields}
    try:
        return TrainingConfig(**shared)
    except ValidationError:
        return TrainingConfig(**{key: value for key, value in shared.items() if key != "encoder"})


def estimate_job(workloads: Sequence[tuple[Workload, int]]) -> Estimate:
    """The estimate of one job: its configurations' workloads, each with its number of units.

    The job's configurations share one backbone and dataset: features of every layer they need are
    extracted in one pass and cached once.
    """
    first = workloads[0][0]
    refs = tuple({ref.key: ref for workload, _ in workloads for ref in workload.layers}.values())
    extraction = extraction_profile(first.backbone, first.image_size, refs)
    itemsize = np.dtype(STORED_DTYPE).itemsize
    cache = sum(first.n_images * width * itemsize for width in extraction.widths)
    width_of = {ref.key: width for ref, width in zip(refs, extraction.widths)}
    view_layers = {(view, ref.key) for workload, _ in workloads for view in workload.views for ref in workload.layers}
    cache += sum(first.n_train_images * width_of[key] * itemsize for _, key in view_layers)
    n_views = len({view for view, _ in view_layers})
    fits = [(workload, fit_widths(workload, [width_of[ref.key] for ref in workload.layers]), units)
            for workload, units in workloads]
    training = sum(math.ceil(units / workload.units_per_fit) * training_flops(workload, widths)
                   for workload, widths, units in fits)
    memory = max(extraction.peak_memory_bytes, *(training_memory(workload, widths) for workload, widths, _ in fits))
    images = first.n_images + n_views * first.n_train_images
    return Estimate(float(extraction.flops_per_image * images), float(training), float(cache), float(memory))


@dataclass(frozen=True)
class ExtractionProfile:
    """One image's pass through a backbone up to the layers of a job, measured on the meta device."""

    #: FLOPs of the pass (2 per multiply-add), as :func:`~eegbench.backbones.flops_per_image` counts them
    flops_per_image: int
    #: the pooled width of each layer, as cached
    widths: tuple[int, ...]
    #: bytes of the largest tensor any operation of the pass returns
    largest_tensor_bytes: int
    n_params: int

    @property
    def peak_memory_bytes(self) -> int:
        """fp32 weights plus a batch's activations (see the module docstring)."""
        return self.n_params * FP32_BYTES + EXTRACTION_BATCH * self.largest_tensor_bytes * ACTIVATION_HEADROOM


class _LargestTensor(TorchDispatchMode):
    """Records the size of the largest tensor any operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel() * tensor.element_size())
        return out


@functools.cache
def extraction_profile(name: str, image_size: int | None, refs: tuple[LayerRef, ...]) -> ExtractionProfile:
    """FLOPs, layer widths and largest tensor of one image's pass to ``refs``: one forward on the meta device."""
    backbone = load_backbone(name, pretrained=False, device="meta").at_size(image_size)
    size = backbone.preprocessing.size
    with FlopCounterMode(display=False) as counter, _LargestTensor() as probe:
        pooled = backbone.forward_layers(torch.empty(1, 3, size, size, device="meta"), list(refs))
    return ExtractionProfile(int(counter.get_total_flops()), tuple(int(pooled[ref.key].shape[1]) for ref in refs),
                             probe.largest, backbone.n_params)


def _trainer(workload: Workload, widths: tuple[int, ...]) -> AlignmentStack:
    with torch.device("meta"):
        return AlignmentStack(workload.training, 1, workload.n_channels, workload.n_times, [list(widths)], [0],
                              torch.device("cpu"))


def fit_widths(workload: Workload, widths: Sequence[int]) -> tuple[int, ...]:
    """The target widths of one fit, given the widths of the workload's layers: one layer at a time
    for methods that fit one model per layer (the widest, to stay on the safe side), all at once otherwise."""
    return (max(widths),) if workload.fits > 1 else tuple(widths)


def step_flops(workload: Workload, widths: tuple[int, ...], batch: int) -> int:
    """FLOPs of one optimisation step (forward and backward) of the trainer on ``batch`` responses."""
    model = _trainer(workload, widths)
    brain = torch.empty(1, batch, workload.n_channels, workload.n_times, device="meta")
    targets = [torch.empty(1, batch, width, device="meta") for width in widths]
    with FlopCounterMode(display=False) as counter:
        model.loss(brain, targets).sum().backward()
    return int(counter.get_total_flops())


def training_flops(workload: Workload, widths: tuple[int, ...]) -> int:
    """FLOPs of one unit: epochs x (full batches + the last, partial one) x fits (see the module docstring)."""
    full, rest = divmod(workload.train_samples, workload.training.batch_size)
    last = step_flops(workload, widths, rest) if rest >= 2 else 0  # the trainer skips one-sample batches
    epoch = full * step_flops(workload, widths, workload.training.batch_size) + last
    return workload.training.epochs * epoch * workload.fits


def training_memory(workload: Workload, widths: tuple[int, ...]) -> int:
    """Peak GPU bytes of training one unit: trainer state plus its device-resident training arrays."""
    n_params = sum(parameter.numel() for parameter in _trainer(workload, widths).parameters())
    arrays = workload.train_samples * (workload.n_channels * workload.n_times + sum(widths)) * FP32_BYTES
    return n_params * TRAINER_BYTES_PER_PARAM + arrays


def human_bytes(n_bytes: float) -> str:
    """``1.5 GB``-style text (powers of 1000)."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    power = min(int(math.log10(n_bytes) // 3), len(units) - 1) if n_bytes >= 1 else 0
    return f"{n_bytes / 1000 ** power:.3g} {units[power]}"
