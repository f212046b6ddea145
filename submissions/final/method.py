"""Final-layer alignment: contrastive training against the backbone's final embedding."""

from __future__ import annotations

from eegbench.backbones import Backbone, LayerRef
from eegbench.submissions import Aligner, Method, TrainingData
from eegbench.training import TrainingConfig, fit_alignments


class FinalAlignment(Method):
    """EEGProject + linear projectors + symmetric InfoNCE, aligned to the final embedding.

    Nothing is selected, so the model trains on all training responses (training and validation
    concepts) for the configured number of epochs and the last epoch is scored.
    """

    Hyperparameters = TrainingConfig

    def feature_layers(self, backbone: Backbone) -> list[LayerRef]:
        return [backbone.resolve("final")]

    def fit(self, data: TrainingData) -> Aligner:
        return self.fit_many([data])[0]

    def fit_many(self, units: list[TrainingData]) -> list[Aligner]:
        fitted = fit_alignments(units, [[unit.layers] for unit in units], self.hp, description="Training final")
        return [aligners[0] for aligners in fitted]
