"""Test-time calibration (transductive track): Shallow Alignment, then whitening and CSLS over the test batch.

The model is the Shallow Alignment recipe (contrastive training to one intermediate layer) fitted by
:func:`eegbench.training.fit_alignments`. At test time, :meth:`CalibratedAligner.embed_test_batch`
receives the whole batch and applies SATTC's geometric expert:

1. **whitening** (``whitening``): the brain embeddings (``brain``), or both the brain and the gallery
   embeddings (``both``), are centred and ZCA-whitened with the mean and covariance of their own
   test batch (the covariance shrunk towards a multiple of the identity, Ledoit-Wolf by default, as
   a batch may hold fewer rows than dimensions); ``none`` leaves them as they are, and ``auto``
   (the default) picks among the three on the validation split, scored as a transductive batch;
2. **CSLS** (cross-domain similarity local scaling): ``CSLS(b, i) = 2 cos(b, i) - r_B(i) - r_I(b)``,
   where ``r_B(i)`` is the mean cosine of image ``i`` to its ``k`` nearest brain rows and ``r_I(b)``
   that of brain row ``b`` to its ``k`` nearest images; it demotes "hub" images near many responses.

The harness ranks each response's gallery by the cosine of the two returned embedding sets, so the
CSLS ordering is expressed through them (:func:`csls_embeddings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
from pydantic import Field

from eegbench.backbones import BackboneLayers, LayerRef
from eegbench.metrics import metric, retrieve
from eegbench.submissions import Aligner, AlignerReport, Method, TrainingData, ValidationPoint
from eegbench.training import AlignmentJob, TrainingConfig, fit_alignments


class CalibrationHyperparameters(TrainingConfig):
    """Training hyperparameters plus the aligned layer's depth and the test-time calibration's settings."""

    #: relative depth (0 first layer, 1 last) of the aligned layer when ``--layer`` is not given
    depth: float = Field(0.6, ge=0, le=1)
    #: neighbours of CSLS's local scaling
    csls_k: int = Field(10, ge=1)
    #: whitening covariance shrinkage ``s`` in ``(1 - s) C + s mean(eig C) I``; None: Ledoit-Wolf's estimate
    #: from the batch itself (a batch of 200 rows in 128 dimensions needs strong shrinkage)
    shrinkage: float | None = Field(None, gt=0, le=1)
    #: which test-batch embeddings are whitened; ``auto`` chooses on the validation split
    whitening: Literal["auto", "none", "brain", "both"] = "auto"


class TestTimeCalibration(Method):
    """Shallow Alignment to one fixed layer, calibrated on each test batch (transductive tasks only)."""

    Hyperparameters = CalibrationHyperparameters
    accepts_layer = True

    def feature_layers(self, backbone: BackboneLayers) -> list[LayerRef]:
        return [backbone.resolve(self.hp.depth if self.layer is None else self.layer)]

    def fit_many(self, units: list[TrainingData]) -> list[Aligner]:
        whitening = [self.hp.whitening] * len(units)
        curves: list[list[ValidationPoint]] = [[] for _ in units]
        if self.hp.whitening == "auto":  # train on the training concepts, calibrate the validation batch
            probes = fit_alignments([AlignmentJob(unit, unit.layers) for unit in units], self.hp,
                                    use_validation=False, description="Training tta (for the whitening)")
            for i, (unit, probe) in enumerate(zip(units, probes)):
                curves[i] = [ValidationPoint(params={"whitening": mode}, score=round(_validation_score(
                    self._calibrated(probe, mode), unit), 6)) for mode in WHITENING]
                whitening[i] = max(curves[i], key=lambda point: point.score).params["whitening"]  # ties: first
        aligners = fit_alignments([AlignmentJob(unit, unit.layers) for unit in units], self.hp,
                                  description="Training tta")
        calibrated = [self._calibrated(aligner, mode) for aligner, mode in zip(aligners, whitening)]
        for aligner, curve, unit in zip(calibrated, curves, units):
            if curve:
                aligner.selection = {"validation_curve": curve, "validation_metric": unit.validation_metric,
                                     "selected": {"whitening": aligner.whitening}}
        return calibrated

    def _calibrated(self, model: Aligner, whitening: str) -> CalibratedAligner:
        return CalibratedAligner(model, self.hp.csls_k, self.hp.shrinkage, whitening)


#: the whitening choices ``auto`` selects among, in the order ties are broken
WHITENING = ("none", "brain", "both")


def _validation_score(aligner: Aligner, unit: TrainingData) -> float:
    """The task's validation metric (higher is better) of ``aligner`` scoring the validation split as one batch."""
    gallery, targets = np.unique(unit.val.image_index, return_inverse=True)
    features = {key: array[gallery] for key, array in unit.features.items()}
    brain, images = aligner.embed_test_batch(unit.val.responses, features, str(unit.val.subjects[0]))
    return metric(unit.validation_metric).selection_score(retrieve(brain, images, targets))


class CalibratedAligner(Aligner):
    """A fitted aligner whose test batches are whitened and ranked by CSLS; alone, a row embeds as before."""

    def __init__(self, model: Aligner, csls_k: int, shrinkage: float | None, whitening: str) -> None:
        self.model = model
        self.csls_k = csls_k
        self.shrinkage = shrinkage
        self.whitening = whitening
        #: what was selected on validation (AlignerReport fields), added to the model's report
        self.selection: dict = {}

    def embed_brain(self, responses: np.ndarray) -> np.ndarray:
        return self.model.embed_brain(responses)

    def embed_images(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.model.embed_images(features)

    def embed_test_batch(self, responses: np.ndarray, features: Mapping[str, np.ndarray],
                         subject: str) -> tuple[np.ndarray, np.ndarray]:
        brain = self.model.embed_brain_of(responses, subject)
        images = self.model.embed_images(features)
        if self.whitening in ("brain", "both"):
            brain = whiten(brain, self.shrinkage)
        if self.whitening == "both":
            images = whiten(images, self.shrinkage)
        return csls_embeddings(brain, images, self.csls_k)

    def alternatives(self) -> dict[str, Aligner]:
        """The same model uncalibrated (its inductive embeddings), and the model's own variants calibrated."""
        calibrated = {name: CalibratedAligner(model, self.csls_k, self.shrinkage, self.whitening)
                      for name, model in self.model.alternatives().items()}
        return {"uncalibrated": self.model, **calibrated}

    def report(self) -> AlignerReport:
        report = self.model.report()
        calibration = {"test_time": "whitening + CSLS", "whitening": self.whitening, "csls_k": self.csls_k,
                       "shrinkage": "ledoit-wolf" if self.shrinkage is None else self.shrinkage}
        return report.model_copy(update={**self.selection, "details": report.details | calibration})


def whiten(embeddings: np.ndarray, shrinkage: float | None = None) -> np.ndarray:
    """ZCA-whiten the rows with their own mean and shrunk covariance: the batch's statistics, no labels.

    ``shrinkage`` None takes Ledoit and Wolf's (2004) estimate of the best shrinkage from the rows.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    x = x - x.mean(axis=0)
    covariance = x.T @ x / len(x)
    scale = max(np.trace(covariance) / len(covariance), 1e-12)
    if shrinkage is None:
        shrinkage = ledoit_wolf_shrinkage(x, covariance, scale)
    eigenvalues, vectors = np.linalg.eigh(covariance)
    shrunk = (1.0 - shrinkage) * np.clip(eigenvalues, 0.0, None) + shrinkage * scale
    return x @ (vectors / np.sqrt(shrunk)) @ vectors.T


def ledoit_wolf_shrinkage(centred: np.ndarray, covariance: np.ndarray, scale: float) -> float:
    """Ledoit-Wolf shrinkage of ``covariance`` (of the ``centred`` rows) towards ``scale`` times the identity."""
    n = len(centred)
    spread = float(((centred ** 2).sum(axis=1) ** 2).sum() / n ** 2 - (covariance ** 2).sum() / n)
    distance = float(((covariance - scale * np.eye(len(covariance))) ** 2).sum())
    return 1.0 if distance <= 0 else float(np.clip(spread / distance, 0.0, 1.0))


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def csls_embeddings(brain: np.ndarray, images: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brain and image rows whose cosine similarity ranks each brain row's gallery as CSLS does.

    Per brain row ``b``, ``r_I(b)`` is a constant, so the CSLS ordering is that of
    ``2 cos(b, i) - r_B(i)``. With unit rows ``b̂`` and ``î``, the rows

    * brain: ``[b̂, 1, 0]`` (norm ``sqrt(2)`` for every row),
    * image: ``[2 î, -r_B(i), p_i]``, with ``p_i = sqrt(M² - 4 - r_B(i)²)`` and ``M² = max_i (4 + r_B(i)²)``,
      so that every image row has the same norm ``M``,

    have the dot product ``2 cos(b, i) - r_B(i)`` and the cosine ``(2 cos(b, i) - r_B(i)) / (sqrt(2) M)``:
    a positive constant times CSLS's score up to the per-row constant, hence CSLS's ranking.
    """
    b, v = _unit(brain), _unit(images)
    cosine = b @ v.T
    neighbours = min(k, len(b))
    hubness = np.sort(cosine, axis=0)[-neighbours:].mean(axis=0)  # r_B(i): image i's k nearest responses
    image_rows = np.hstack([2.0 * v, -hubness[:, None]])
    norms = (image_rows ** 2).sum(axis=1)
    padding = np.sqrt(np.clip(norms.max() - norms, 0.0, None))
    brain_rows = np.hstack([b, np.ones((len(b), 1)), np.zeros((len(b), 1))])
    return brain_rows, np.hstack([image_rows, padding[:, None]])
