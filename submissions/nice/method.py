"""NICE (Song et al., ICLR 2024): a TSConv brain encoder aligned to the final CLIP embedding.

Written from the paper and its published settings; no code of the authors' repository is used.
"""

from __future__ import annotations

from pydantic import Field

from eegbench.backbones import BackboneLayers, LayerRef
from eegbench.submissions import Aligner, Method, TrainingData
from eegbench.training import AlignmentJob, TrainingConfig, fit_alignments


class NiceHyperparameters(TrainingConfig):
    """NICE's published settings where eegbench's trainer has them (see ``deviations`` in submission.yaml).

    TSConv (temporal then spatial convolution, 40 filters) feeding a residual projection to 768
    dimensions, dropout 0.5, a fixed temperature of 0.07, batch 1000, learning rate 2e-4 without
    weight decay, 200 epochs; the epoch is chosen on the task's validation split, as NICE chose it
    on held-out training samples.
    """

    encoder: str = "tsconv"
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(1000, ge=2)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    temperature: float = Field(0.07, gt=0)
    learnable_temperature: bool = False
    hidden_dim: int = Field(768, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    select_epoch: bool = True


class Nice(Method):
    """TSConv + projection + symmetric InfoNCE against the backbone's final embedding."""

    Hyperparameters = NiceHyperparameters

    def feature_layers(self, backbone: BackboneLayers) -> list[LayerRef]:
        return [backbone.resolve("final")]

    def fit_many(self, units: list[TrainingData]) -> list[Aligner]:
        return fit_alignments([AlignmentJob(unit, unit.layers) for unit in units], self.hp,
                              description="Training NICE")
