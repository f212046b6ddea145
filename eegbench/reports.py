"""What a fitted method reports about itself: :class:`AlignerReport`, part of the submission API.

A method's :meth:`eegbench.submissions.Aligner.report` returns one; the harness stores it in every
result record and the leaderboard reads it by field (which layers, with which mixing weights, what
was selected on validation and how each candidate scored), never by method name or key
conventions. Anything else a method wants to keep goes to :attr:`AlignerReport.details`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: a parameter value on a validation curve or among the selected ones
ParameterValue = str | int | float | bool | None


class RecordedLayer(BaseModel):
    """A resolved backbone layer as records store it (:meth:`eegbench.backbones.LayerRef.to_dict`)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    module: str
    pooling: str
    index: int | None  # 1-based; None for the final embedding
    n_layers: int
    relative_depth: float | None = None
    default_pooling: bool = True

    @property
    def is_final(self) -> bool:
        """Whether this is the backbone's final embedding rather than an intermediate layer."""
        return self.index is None

    @property
    def label(self) -> str:
        """The name with its relative depth, e.g. ``blocks.3 (0.57)``."""
        return self.name + (f" ({self.relative_depth:.2f})" if self.relative_depth is not None else "")


class LayerUse(BaseModel):
    """A layer a fitted aligner uses, with its learned mixing weight when it combines several."""

    model_config = ConfigDict(extra="forbid")

    layer: RecordedLayer
    weight: float | None = None

    @classmethod
    def of(cls, ref: Any, weight: float | None = None) -> LayerUse:
        """The use of a resolved layer (an :class:`eegbench.backbones.LayerRef`)."""
        return cls(layer=RecordedLayer(**ref.to_dict()), weight=weight)


class ValidationPoint(BaseModel):
    """One candidate tried during a selection and its score on the validation split."""

    model_config = ConfigDict(extra="forbid")

    #: what was tried, e.g. ``{"layer": "blocks.3"}`` or ``{"layer": "final", "alpha": 100.0}``
    params: dict[str, ParameterValue]
    score: float


class AlignerReport(BaseModel):
    """What a fitted aligner used, chose and measured.

    Attributes
    ----------
    layers : list of LayerUse
        The backbone layer(s) the aligner embeds images from. Methods that combine several layers
        give each its weight. The harness fills this in when it is left empty and the method was
        given exactly one layer.
    validation_metric : str, optional
        The metric of :attr:`validation_curve` (the task's validation metric).
    validation_curve : list of ValidationPoint
        Every candidate tried on the validation split (layers, regularisation strengths...).
    selected : dict
        The parameters finally chosen on validation, e.g. ``{"layer": "blocks.3"}``.
    selected_epoch : int, optional
        The training epoch kept, when epochs were selected on validation.
    validation_by_epoch : list of float
        Validation score after each epoch, when epochs were selected.
    n_parameters : int, optional
        Trainable parameters of the fitted aligner.
    details : dict
        Anything else worth keeping (JSON values).
    """

    model_config = ConfigDict(extra="forbid")

    layers: list[LayerUse] = Field(default_factory=list)
    validation_metric: str | None = None
    validation_curve: list[ValidationPoint] = Field(default_factory=list)
    selected: dict[str, ParameterValue] = Field(default_factory=dict)
    selected_epoch: int | None = None
    validation_by_epoch: list[float] = Field(default_factory=list)
    n_parameters: int | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def combines_layers(self) -> bool:
        """Whether the aligner mixes several layers (as opposed to using one)."""
        return len(self.layers) > 1

    def best_score_by_layer(self) -> dict[str, float]:
        """The best validation score of each layer on the curve (over any other parameters tried)."""
        best: dict[str, float] = {}
        for point in self.validation_curve:
            layer = point.params.get("layer")
            if isinstance(layer, str):
                best[layer] = max(best.get(layer, point.score), point.score)
        return best
