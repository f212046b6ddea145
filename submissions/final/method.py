"""Final-layer alignment: contrastive training against the backbone's final embedding."""

from __future__ import annotations

from eegbench.backbones import BackboneLayers, LayerRef
from eegbench.submissions import Aligner, Method, TrainingData
from eegbench.training import AlignmentJob, TrainingConfig, fit_alignments


class FinalAlignment(Method):
    """EEGProject + linear projectors + symmetric InfoNCE, aligned to the final embedding.

    Nothing is selected, so the model trains on all training responses (training and validation
    concepts) for the configured number of epochs and the last epoch is scored.
    """

    Hyperparameters = TrainingConfig

    def feature_layers(self, backbone: BackboneLayers) -> list[LayerRef]:
        return [backbone.resolve("final")]

    def fit_many(self, units: list[TrainingData]) -> list[Aligner]:
        return fit_alignments([AlignmentJob(unit, unit.layers) for unit in units], self.hp,
                              description="Training final")
