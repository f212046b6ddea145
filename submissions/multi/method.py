"""Multi-layer alignment: one brain embedding matched to a learned mix of several backbone layers."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from eegbench.backbones import BackboneLayers, LayerRef
from eegbench.submissions import Aligner, Method, TrainingData
from eegbench.training import AlignmentJob, TrainingConfig, fit_alignments


class MultiHyperparameters(TrainingConfig):
    """Training hyperparameters plus which layers to mix."""

    depths: list[float] = Field(default_factory=lambda: [0.25, 0.5, 0.75], min_length=1)
    include_final: bool = True


class MultiLayerAlignment(Method):
    """EEGProject + per-layer linear heads mixed by learned softmax weights + symmetric InfoNCE.

    Nothing is selected, so the model trains on all training responses and the last epoch is
    scored (unless ``select_epoch`` is set). Each record's report lists the mixed layers with
    their learned weights.
    """

    Hyperparameters = MultiHyperparameters

    def feature_layers(self, backbone: BackboneLayers) -> list[LayerRef]:
        refs = [backbone.resolve(float(depth)) for depth in self.hp.depths]
        if self.hp.include_final:
            refs.append(backbone.resolve("final"))
        return list({ref.key: ref for ref in refs}.values())  # two depths may land on one layer

    def layer_setting(self, layers: Sequence[LayerRef]) -> str:
        return "multi:" + "+".join(ref.key for ref in layers)

    def fit_many(self, units: list[TrainingData]) -> list[Aligner]:
        return fit_alignments([AlignmentJob(unit, unit.layers) for unit in units], self.hp,
                              description="Training multi")
