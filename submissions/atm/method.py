"""ATM-S (Li et al., NeurIPS 2024): a channel-token transformer before TSConv, aligned to the final embedding.

Written from the paper and its published settings; no code of the authors' repository is used.
"""

from __future__ import annotations

from pydantic import Field

from eegbench.backbones import BackboneLayers, LayerRef
from eegbench.submissions import Aligner, Method, TrainingData
from eegbench.training import AlignmentJob, TrainingConfig, fit_alignments


class AtmHyperparameters(TrainingConfig):
    """ATM-S's published settings where eegbench's trainer has them (see ``deviations`` in submission.yaml).

    The ATM encoder (one transformer layer over channel tokens, then TSConv and a residual
    projection to 1024 dimensions), AdamW at lr 3e-4, batch 64, 40 epochs, a learnable
    temperature starting at 0.07, dropout 0.5; the epoch is chosen on the task's validation split.
    """

    encoder: str = "atm"
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(3e-4, gt=0)
    temperature: float = Field(0.07, gt=0)
    learnable_temperature: bool = True
    hidden_dim: int = Field(1024, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    select_epoch: bool = True


class Atm(Method):
    """ATM encoder + projection + symmetric InfoNCE against the backbone's final embedding."""

    Hyperparameters = AtmHyperparameters

    def feature_layers(self, backbone: BackboneLayers) -> list[LayerRef]:
        return [backbone.resolve("final")]

    def fit_many(self, units: list[TrainingData]) -> list[Aligner]:
        return fit_alignments([AlignmentJob(unit, unit.layers) for unit in units], self.hp,
                              description="Training ATM-S")
