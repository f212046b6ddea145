"""Shallow alignment: contrastive training against one intermediate backbone layer.

Unlike the paper, which picks the layer with the best *test* accuracy, the layer is chosen on the
task's validation split (concepts held out of training), then the chosen model is refit on all
training responses.
"""

from __future__ import annotations

from pydantic import Field

from eegbench._check import InvalidInputError
from eegbench.backbones import Backbone, LayerRef, even_layers
from eegbench.submissions import Aligner, Method, TrainingData, score_on_validation
from eegbench.training import TrainingConfig, fit_alignments


class ShallowHyperparameters(TrainingConfig):
    """Training hyperparameters plus how many layers to probe when none is fixed."""

    probe_layers: int = Field(10, ge=2)


class ShallowAlignment(Method):
    """Align to a fixed intermediate layer, or to the best of ~10 probed layers (by validation)."""

    Hyperparameters = ShallowHyperparameters
    accepts_layer = True

    def feature_layers(self, backbone: Backbone) -> list[LayerRef]:
        if self.layer in (None, "auto"):
            return [backbone.resolve(i) for i in even_layers(backbone.layers, self.hp.probe_layers)]
        ref = backbone.resolve(self.layer)
        if ref.is_final:
            raise InvalidInputError("Method 'shallow' aligns to an intermediate layer; use --method final "
                                    "for the final embedding.")
        return [ref]

    def fit(self, data: TrainingData) -> Aligner:
        return self.fit_many([data])[0]

    def fit_many(self, units: list[TrainingData]) -> list[Aligner]:
        if len(units[0].layers) == 1:  # a fixed layer: nothing to select
            fitted = fit_alignments(units, [[unit.layers] for unit in units], self.hp, description="Training shallow")
            return [aligners[0] for aligners in fitted]

        # Probe every layer on the training concepts only and score each on the validation concepts.
        probes = fit_alignments(units, [[[ref] for ref in unit.layers] for unit in units], self.hp,
                                use_validation=False, description="Probing layers")
        chosen, curves = [], []
        for unit, aligners in zip(units, probes):
            scores = [score_on_validation(a, unit) for a in aligners]
            best = max(range(len(scores)), key=scores.__getitem__)  # ties: the shallower layer
            chosen.append(best)
            curves.append([{"layer": ref.name, "index": ref.index, "relative_depth": ref.relative_depth,
                            "score": round(score, 6)} for ref, score in zip(unit.layers, scores)])
        if self.hp.select_epoch:  # the probes already hold their validation-selected epoch: keep the best
            final = [aligners[best] for aligners, best in zip(probes, chosen)]
        else:  # refit the chosen layer on all training responses
            refit = fit_alignments(units, [[[unit.layers[best]]] for unit, best in zip(units, chosen)], self.hp,
                                   description="Refitting chosen layer")
            final = [aligners[0] for aligners in refit]
        for aligner, curve, unit in zip(final, curves, units):
            aligner.details["validation_curve"] = curve
            aligner.details["validation_metric"] = unit.validation_metric
        return final
