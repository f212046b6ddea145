"""NeuroBridge (Zhang et al., AAAI 2026): cognitive prior augmentation and a shared semantic projector.

Written from the paper and its published settings; no code of the authors' repository is used.

* **Cognitive prior augmentation**, image side: the training images are seen through four corruptions
  (Gaussian blur, pixel noise, downscaling, mosaic), declared as harness image views; the target of
  each training image is the mean of its four views' features (the images as shown are not a target).
  Brain side: each training response's channels are smoothed with probability 0.3 (a 5-sample moving
  average), drawn once.
* **Shared semantic projector**: a linear projection of each side into one 512-d space (one projection
  per side), trained with the symmetric InfoNCE at a fixed temperature where only the image side is
  L2-normalised (the paper's asymmetric normalisation).

It trains in eegbench's batched contrastive trainer: the fused targets and smoothed responses are
prepared per unit, then all units train together.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pydantic import Field

from eegbench.backbones import BackboneLayers, LayerRef
from eegbench.submissions import (Aligner, Downscale, GaussianBlur, GaussianNoise, ImageView, Method, Mosaic, Split,
                                  TrainingData)
from eegbench.training import AlignmentJob, TrainingConfig, fit_alignments, smooth_channels


class NeuroBridgeHyperparameters(TrainingConfig):
    """NeuroBridge's published intra-subject settings where eegbench's trainer has them (see ``deviations``).

    EEGProject to 1024 dimensions, linear projections of both sides to 512, only the image side
    L2-normalised, a fixed temperature of 1 / softplus(ln(1 / 0.07)) = 0.367 (what the released code
    runs at), AdamW at lr 1e-4 with weight decay 1e-4, batch 1024, 50 epochs; the epoch is chosen on
    the task's validation split. The four image views are OpenCV's Gaussian blur of kernel 15
    (sigma 2.6 pixels), noise of standard deviation 25 grey levels, downscaling to 0.1 and 5-pixel
    mosaic blocks, all at 224 pixels; brain smoothing: kernel 5 samples, probability 0.3.
    """

    encoder: str = "eegproject"
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(1024, ge=2)
    lr: float = Field(1e-4, gt=0)
    temperature: float = Field(0.3667, gt=0)
    learnable_temperature: bool = False
    normalize_brain: bool = False
    normalize_image: bool = True
    hidden_dim: int = Field(1024, ge=1)
    proj_dim: int = Field(512, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)
    select_epoch: bool = True
    blur_sigma: float = Field(2.6, gt=0)
    noise_std: float = Field(25.0, gt=0)
    downscale: float = Field(0.1, gt=0, lt=1)
    mosaic_block: float = Field(5.0, gt=1)
    smooth_kernel: int = Field(5, ge=1)
    smooth_probability: float = Field(0.3, ge=0, le=1)


class NeuroBridge(Method):
    """Linear projections of EEGProject embeddings and of mean-of-four-views image features, asymmetric InfoNCE."""

    Hyperparameters = NeuroBridgeHyperparameters

    def feature_layers(self, backbone: BackboneLayers) -> list[LayerRef]:
        return [backbone.resolve("final")]

    def image_views(self) -> list[ImageView]:
        hp = self.hp
        return [GaussianBlur(sigma=hp.blur_sigma), GaussianNoise(std=hp.noise_std), Downscale(factor=hp.downscale),
                Mosaic(block=hp.mosaic_block)]

    def fit_many(self, units: list[TrainingData]) -> list[Aligner]:
        return fit_alignments([self._job(unit) for unit in units], self.hp, description="Training NeuroBridge")

    def _job(self, unit: TrainingData) -> AlignmentJob:
        """The unit with smoothed training responses, aligned to the mean of its views' features."""
        views = [unit.views[view.key] for view in self.image_views()]
        fused = {ref.key: np.mean([view[ref.key] for view in views], axis=0) for ref in unit.layers}
        smoothed = dataclasses.replace(unit, train=self._smoothed(unit.train, unit.seed))
        if not self.hp.select_epoch:  # validation responses are trained on too: augmented like the rest
            smoothed = dataclasses.replace(smoothed, val=self._smoothed(unit.val, unit.seed + 1))
        return AlignmentJob(smoothed, unit.layers, targets=fused)

    def _smoothed(self, split: Split, seed: int) -> Split:
        responses = smooth_channels(split.responses, self.hp.smooth_kernel, self.hp.smooth_probability, seed)
        return Split(responses, split.image_index, split.subjects)
