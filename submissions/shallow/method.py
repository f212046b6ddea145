"""Shallow alignment: contrastive training against one intermediate backbone layer.

Unlike the paper, which picks the layer with the best *test* accuracy, the layer is chosen on the
task's validation split (concepts held out of training), then the chosen model is refit on all
training responses.
"""

from __future__ import annotations

from pydantic import Field

from eegbench.backbones import BackboneLayers, LayerRef, even_layers
from eegbench.errors import InvalidInputError
from eegbench.submissions import Aligner, Method, TrainingData, ValidationPoint, score_on_validation
from eegbench.training import AlignmentJob, TrainingConfig, fit_alignments


class ShallowHyperparameters(TrainingConfig):
    """Training hyperparameters plus how many layers to probe when none is fixed."""

    probe_layers: int = Field(10, ge=2)


class ShallowAlignment(Method):
    """Align to a fixed intermediate layer, or to the best of ~10 probed layers (by validation)."""

    Hyperparameters = ShallowHyperparameters
    accepts_layer = True

    def feature_layers(self, backbone: BackboneLayers) -> list[LayerRef]:
        if self.layer in (None, "auto"):
            return [backbone.resolve(i) for i in even_layers(backbone.layers, self.hp.probe_layers)]
        ref = backbone.resolve(self.layer)
        if ref.is_final:
            raise InvalidInputError("Method 'shallow' aligns to an intermediate layer; use --method final "
                                    "for the final embedding.")
        return [ref]

    def fit_many(self, units: list[TrainingData]) -> list[Aligner]:
        if len(units[0].layers) == 1:  # a fixed layer: nothing to select
            return fit_alignments([AlignmentJob(unit, unit.layers) for unit in units], self.hp,
                                  description="Training shallow")

        # Probe every layer on the training concepts only and score each on the validation concepts.
        probes = fit_alignments([AlignmentJob(unit, [ref]) for unit in units for ref in unit.layers], self.hp,
                                use_validation=False, description="Probing layers")
        chosen, curves, start = [], [], 0
        for unit in units:
            mine = probes[start:start + len(unit.layers)]
            start += len(unit.layers)
            scores = [score_on_validation(probe, unit) for probe in mine]
            best = max(range(len(scores)), key=scores.__getitem__)  # ties: the shallower layer
            chosen.append((unit, unit.layers[best], mine[best]))
            curves.append([ValidationPoint(params={"layer": ref.name}, score=round(score, 6))
                           for ref, score in zip(unit.layers, scores)])
        if self.hp.select_epoch:  # the probes already hold their validation-selected epoch: keep the best
            final = [probe for _, _, probe in chosen]
        else:  # refit the chosen layer on all training responses
            final = fit_alignments([AlignmentJob(unit, [layer]) for unit, layer, _ in chosen], self.hp,
                                   description="Refitting chosen layer")
        for aligner, curve, (unit, layer, _) in zip(final, curves, chosen):
            aligner.selection = aligner.selection.model_copy(update={
                "validation_curve": curve, "validation_metric": unit.validation_metric, "selected": {"layer": layer.name}})
        return final
