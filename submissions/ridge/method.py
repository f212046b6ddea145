"""Ridge regression from brain responses to image features, with validation-selected alpha."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from eegbench.backbones import BackboneLayers, LayerRef, even_layers
from eegbench.submissions import (
    Aligner,
    AlignerReport,
    LayerUse,
    Method,
    Split,
    TrainingData,
    ValidationPoint,
    score_on_validation,
)


class RidgeHyperparameters(BaseModel):
    """The alpha grid and, for ``--layer auto``, how many layers to probe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alphas: list[float] = Field(default_factory=lambda: [10.0**e for e in range(0, 7)], min_length=1)
    probe_layers: int = Field(10, ge=2)


def _centre_rows(z: np.ndarray) -> np.ndarray:
    """Subtract each row's mean: cosine similarity of centred rows is Pearson correlation."""
    return z - z.mean(axis=1, keepdims=True)


@dataclass
class RidgeAligner(Aligner):
    """Predicts standardised features of ``layer`` from flattened responses."""

    layer: LayerRef
    weights: np.ndarray  # (n_inputs, n_kept_dims)
    x_mean: np.ndarray
    y_mean: np.ndarray
    y_scale: np.ndarray
    kept: np.ndarray  # feature dimensions that vary in the training images
    alpha: float
    selection: AlignerReport

    def embed_brain(self, responses: np.ndarray) -> np.ndarray:
        x = responses.reshape(len(responses), -1).astype(np.float64) - self.x_mean
        return _centre_rows(x @ self.weights)

    def embed_images(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        y = features[self.layer.key][:, self.kept].astype(np.float64)
        return _centre_rows((y - self.y_mean) / self.y_scale)

    def report(self) -> AlignerReport:
        return self.selection.model_copy(update={"layers": [LayerUse.of(self.layer)],
                                                 "n_parameters": int(self.weights.size)})


class _RidgePath:
    """Ridge solutions for many alphas from one eigendecomposition (primal or dual form)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, device: torch.device) -> None:
        self.x = torch.as_tensor(x, dtype=torch.float64, device=device)
        y_t = torch.as_tensor(y, dtype=torch.float64, device=device)
        n, p = self.x.shape
        self.primal = p <= n
        gram = self.x.T @ self.x if self.primal else self.x @ self.x.T
        self.eigvals, self.eigvecs = torch.linalg.eigh(gram)
        self.eigvals = self.eigvals.clamp_min(0)
        self.projected = self.eigvecs.T @ (self.x.T @ y_t if self.primal else y_t)

    def weights(self, alpha: float) -> np.ndarray:
        scaled = self.eigvecs @ (self.projected / (self.eigvals + alpha)[:, None])
        return (scaled if self.primal else self.x.T @ scaled).cpu().numpy()


class RidgeRegression(Method):
    """Closed-form ridge to one layer's standardised features; alpha (and layer) chosen on validation."""

    Hyperparameters = RidgeHyperparameters
    accepts_layer = True

    def feature_layers(self, backbone: BackboneLayers) -> list[LayerRef]:
        if self.layer is None:
            return [backbone.resolve("final")]
        if self.layer == "auto":
            probed = [backbone.resolve(i) for i in even_layers(backbone.layers, self.hp.probe_layers)]
            return [*probed, backbone.resolve("final")]
        return [backbone.resolve(self.layer)]

    def fit(self, data: TrainingData) -> Aligner:
        candidates = []
        for layer in data.layers:
            for alpha, aligner in self._path(data, data.train, layer, self.hp.alphas):
                candidates.append((score_on_validation(aligner, data), -alpha, layer, alpha))
        # best validation score; ties go to the stronger regularisation
        score, _, layer, alpha = max(candidates, key=lambda c: (c[0], c[1]))
        curve = [ValidationPoint(params={"layer": c[2].name, "alpha": c[3]}, score=round(c[0], 6)) for c in candidates]
        ((_, aligner),) = self._path(data, data.all(), layer, [alpha])
        selected = {"alpha": alpha} | ({"layer": layer.name} if len(data.layers) > 1 else {})
        aligner.selection = AlignerReport(validation_curve=curve, validation_metric=data.validation_metric,
                                          selected=selected)
        return aligner

    @staticmethod
    def _path(data: TrainingData, split: Split, layer: LayerRef, alphas: Sequence[float]):
        """Ridge aligners for each alpha, fit on ``split``."""
        x = split.responses.reshape(len(split), -1).astype(np.float64)
        features = data.features[layer.key].astype(np.float64)
        y = features[split.image_index]
        scale = y.std(0)
        kept = np.flatnonzero(scale > 1e-3 * np.median(scale))  # drop dead dimensions before z-scoring
        x_mean, y_mean, y_scale = x.mean(0), y[:, kept].mean(0), scale[kept]
        path = _RidgePath(x - x_mean, (y[:, kept] - y_mean) / y_scale, data.device)
        return [(alpha, RidgeAligner(layer, path.weights(alpha), x_mean, y_mean, y_scale, kept, alpha, AlignerReport()))
                for alpha in alphas]
