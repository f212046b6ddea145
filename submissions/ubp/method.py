"""UBP (Wu et al., CVPR 2025): an uncertainty-aware foveated blur prior for EEG-image alignment.

The brain sees less detail than a vision backbone, so UBP aligns brain responses to features of
foveated-blurred images, and chooses each training sample's blur level from its uncertainty: a
sample whose response matches its image better than its batch gets less blur next epoch, one that
matches worse gets more. Written from the paper and its published settings; no code of the
authors' repository is used.

This method trains one unit at a time (:meth:`Ubp.fit`): every sample's target features change
from one epoch to the next, which eegbench's batched contrastive trainer does not do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from eegbench.backbones import BackboneLayers, LayerRef
from eegbench.encoders import count_parameters, encoders
from eegbench.submissions import (Aligner, AlignerReport, GaussianBlur, ImageView, LayerUse, Method, TrainingData,
                                  score_on_validation)
from eegbench.training import info_nce

#: blur levels, in the order of :meth:`Ubp.image_views`: kernels r0 - c, r0 and r0 + c
LOW, MEDIUM, HIGH = 0, 1, 2
LEVELS = ("low", "medium", "high")


class UbpHyperparameters(BaseModel):
    """UBP's published settings (see ``deviations`` in submission.yaml).

    ``r0`` and ``c`` are OpenCV kernel sizes (odd) in pixels of a 224-pixel image: the blur levels
    use kernels ``r0 - c``, ``r0`` and ``r0 + c``; ``fovea`` is how fast the share of the sharp image
    falls from the centre. The encoder's width is the image feature width, so there is no
    ``hidden_dim``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(1024, ge=2)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    dropout: float = Field(0.3, ge=0, lt=1)
    r0: int = Field(51, ge=5, le=201)
    c: int = Field(6, ge=2)
    fovea: float = Field(3.0, gt=0, le=100)
    initial_logit_scale: float = Field(math.log(1 / 0.07))  # the scale is its softplus
    ema_weight: float = Field(0.3, gt=0, le=1)  # weight of the new diagonal logit in each sample's average
    interval_z: float = Field(1.96, gt=0)  # half-width of the batch's interval, in standard deviations

    @field_validator("r0")
    @classmethod
    def _odd_kernel(cls, r0: int) -> int:
        if r0 % 2 == 0:
            raise ValueError(f"r0 is a Gaussian kernel size and must be odd, got {r0}")
        return r0

    @field_validator("c")
    @classmethod
    def _even_change(cls, c: int, info) -> int:
        if c % 2:
            raise ValueError(f"c must be even, so that the kernel sizes r0 - c and r0 + c stay odd, got {c}")
        if "r0" in info.data and info.data["r0"] - c < 3:
            raise ValueError(f"r0 - c must be a kernel of at least 3 pixels, got {info.data['r0']} - {c}")
        return c


def kernel_sigma(kernel: int) -> float:
    """The Gaussian standard deviation OpenCV derives from a kernel size when given sigma 0 (UBP's blur)."""
    return round(0.3 * ((kernel - 1) / 2 - 1) + 0.8, 6)


def blur_labels(current: torch.Tensor, averages: torch.Tensor, z: float = 1.96) -> torch.Tensor:
    """Each sample's blur level for the next epoch from its uncertainty, as UBP decides it per batch.

    ``current`` holds the batch's diagonal training logits, ``averages`` their per-sample moving
    averages. A current logit above the batch's interval ``mean +/- z * std`` of the averages
    (std with one degree of freedom) is a confident match: :data:`LOW` blur; below it, :data:`HIGH`
    blur; inside it, :data:`MEDIUM`.
    """
    mean, spread = averages.mean(), z * averages.std(correction=1)
    labels = torch.full_like(current, MEDIUM, dtype=torch.int64)
    labels[current > mean + spread] = LOW
    labels[current < mean - spread] = HIGH
    return labels


def _build_encoder(shape: tuple[int, int, int], dropout: float, seed: int, device: torch.device) -> nn.Module:
    """EEGProject from ``(channels, times)`` to the image feature width, initialised from ``seed``."""
    n_channels, n_times, width = shape
    return encoders.get("eegproject").build(
        1, n_channels, n_times, width, dropout, [torch.Generator().manual_seed(seed)],
        [torch.Generator(device=device).manual_seed(seed + 1)]).to(device)


class UbpAligner(Aligner):
    """A trained UBP encoder: L2-normalised brain embeddings against the L2-normalised image features.

    Pickled as its encoder's shape and weights (the encoder holds dropout generators, which cannot be
    pickled), and embeds on the CPU after unpickling.
    """

    def __init__(self, encoder: nn.Module, shape: tuple[int, int, int], layer: LayerRef,
                 report: AlignerReport | None = None, alternatives: dict[str, Aligner] | None = None) -> None:
        self.encoder = encoder.eval()
        self.shape = shape
        self.layer = layer
        self._report = report or AlignerReport()
        self._alternatives = dict(alternatives or {})

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["encoder"] = {name: value.detach().cpu() for name, value in self.encoder.state_dict().items()}
        return state

    def __setstate__(self, state: dict) -> None:
        weights = state.pop("encoder")
        self.__dict__.update(state)
        self.encoder = _build_encoder(self.shape, 0.0, 0, torch.device("cpu"))
        self.encoder.load_state_dict(weights)
        self.encoder.eval()

    @torch.no_grad()
    def embed_brain(self, responses: np.ndarray) -> np.ndarray:
        device = next(self.encoder.parameters()).device
        x = torch.tensor(np.asarray(responses, dtype=np.float32), device=device)
        return F.normalize(self.encoder(x[None])[0], dim=-1).cpu().numpy()

    def embed_images(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        return F.normalize(torch.tensor(np.asarray(features[self.layer.key], dtype=np.float32)), dim=-1).numpy()

    def report(self) -> AlignerReport:
        return self._report

    def alternatives(self) -> dict[str, Aligner]:
        return self._alternatives


class Ubp(Method):
    """EEGProject + symmetric InfoNCE against per-sample, uncertainty-chosen foveated blurs of the images."""

    Hyperparameters = UbpHyperparameters

    def feature_layers(self, backbone: BackboneLayers) -> list[LayerRef]:
        return [backbone.resolve("final")]

    def kernels(self) -> tuple[int, int, int]:
        """Kernel sizes of the low, medium and high blur."""
        return self.hp.r0 - self.hp.c, self.hp.r0, self.hp.r0 + self.hp.c

    def image_views(self) -> list[ImageView]:
        return [GaussianBlur(sigma=kernel_sigma(k), fovea=self.hp.fovea) for k in self.kernels()]

    def fit(self, data: TrainingData) -> Aligner:
        hp, layer, device = self.hp, data.layers[0], data.device
        responses = torch.tensor(np.asarray(data.train.responses, dtype=np.float32), device=device)
        image_index = torch.tensor(np.asarray(data.train.image_index, dtype=np.int64), device=device)
        views = torch.stack([F.normalize(torch.tensor(np.asarray(data.views[view.key][layer.key], dtype=np.float32)),
                                         dim=-1) for view in self.image_views()]).to(device)
        n, shape = len(responses), (*responses.shape[1:], views.shape[-1])
        encoder = _build_encoder(shape, hp.dropout, data.seed, device)
        logit = nn.Parameter(torch.tensor(hp.initial_logit_scale, device=device))
        optimizer = torch.optim.AdamW([*encoder.parameters(), logit], lr=hp.lr, weight_decay=hp.weight_decay)
        order_generator = torch.Generator().manual_seed(data.seed + 2)
        labels = torch.full((n,), MEDIUM, dtype=torch.int64, device=device)  # first epoch: medium blur
        averages = torch.ones(n, device=device)
        batch = min(hp.batch_size, n)
        scores, losses, shares = [], [], []
        best_state, best_score = None, -math.inf
        for _ in range(hp.epochs):
            encoder.train()
            next_labels, total, steps = labels.clone(), 0.0, 0
            for idx in torch.randperm(n, generator=order_generator).to(device).split(batch):
                if len(idx) < 2:  # a one-sample batch has no negatives
                    continue
                brain = encoder(responses[idx][None])[0]  # not normalised in the loss, as in UBP
                images = views[labels[idx], image_index[idx]]
                scale = F.softplus(logit)
                loss = info_nce(brain, images, scale)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    diagonal = scale * (brain * images).sum(-1)
                    averages[idx] = hp.ema_weight * diagonal + (1 - hp.ema_weight) * averages[idx]
                    next_labels[idx] = blur_labels(diagonal, averages[idx], hp.interval_z)
                total, steps = total + float(loss.detach()), steps + 1
            labels = next_labels
            losses.append(total / max(steps, 1))
            shares.append([round(float((labels == level).float().mean()), 4) for level in (LOW, MEDIUM, HIGH)])
            scores.append(score_on_validation(UbpAligner(encoder, shape, layer), data))
            if scores[-1] > best_score:
                best_score = scores[-1]
                best_state = {name: value.detach().clone() for name, value in encoder.state_dict().items()}
        best = _build_encoder(shape, hp.dropout, data.seed, device)
        best.load_state_dict(best_state)
        epoch = int(np.argmax(scores)) + 1  # the first of equal scores, as kept above
        details = {"encoder": "eegproject", "blur_kernels": list(self.kernels()),
                   "blur_sigmas": [kernel_sigma(k) for k in self.kernels()],
                   "blur_shares_by_epoch": {level: [s[i] for s in shares] for i, level in enumerate(LEVELS)},
                   "final_train_loss": round(losses[-1], 6), "final_logit_scale": round(float(F.softplus(logit.detach())), 6)}
        report = AlignerReport(layers=[LayerUse.of(layer)], validation_metric=data.validation_metric,
                               selected_epoch=epoch, validation_by_epoch=[round(s, 6) for s in scores],
                               n_parameters=count_parameters(encoder, 1) + 1, details=details)
        last = UbpAligner(encoder, shape, layer, report.model_copy(update={"selected_epoch": hp.epochs}))
        return UbpAligner(best, shape, layer, report, alternatives={"last_epoch": last})
