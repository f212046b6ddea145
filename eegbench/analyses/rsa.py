"""Time-resolved representational similarity analysis (RSA) between backbone layers and EEG/MEG.

For each backbone layer, the model RDM is the correlation distance between the layer's features
of every pair of test images. For each subject and time point, the brain RDM is the correlation
distance between the channel patterns of the test responses (averaged over repetitions and
z-scored per channel and time with the subject's training statistics, as the task says). Model
and brain RDMs are compared by Spearman correlation and averaged over subjects.

* **Noise ceiling**: per subject and time point, the repetitions are split into random halves
  (``n_splits`` times); the Spearman correlation of the two halves' RDMs, stepped up by the
  Spearman-Brown formula, is the reliability of the full-data RDM, and its square root the highest
  correlation a noise-free model could reach (:func:`eegbench.stats.split_half_noise_ceiling`).
* **Permutation test**: image labels of the model RDMs are permuted; the maximum statistic over
  all (layer, time) cells controls the family-wise error
  (:func:`eegbench.stats.rsa_permutation_test`).

RDMs and their comparison use rsatoolbox (the ``analyses`` extra: ``pip install
"eegbench[analyses]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from eegbench._check import InvalidInputError, check_count
from eegbench._plots import finish_axes, save_png, subplots
from eegbench._progress import logger, progress
from eegbench._paths import DEFAULT_RESULTS_DIR
from eegbench.backbones import DEFAULT_BACKBONE, LayerRef, get_features
from eegbench.plan import backbone_layout, check_request, resolve_task
from eegbench.protocols import Normalizer, ResponsePipeline
from eegbench.provenance import environment, now
from eegbench.records import AnalysisRecord
from eegbench.results import ResultStore
from eegbench.stats import paired_spearman, rsa_permutation_test, split_half_noise_ceiling
from eegbench.tasks import Task, load_task


def _rsatoolbox():
    """Import rsatoolbox's RDM and data modules, or say how to install them."""
    try:
        import rsatoolbox.data
        import rsatoolbox.rdm
    except ImportError:
        raise InvalidInputError('RSA needs rsatoolbox; install it with `pip install "eegbench[analyses]"` '
                                "(or `pip install rsatoolbox`).") from None
    return rsatoolbox


def model_rdms(features: Sequence[np.ndarray]) -> np.ndarray:
    """Condensed correlation-distance RDMs ``(n_layers, n_pairs)`` of per-layer ``(n_items, dim)`` features."""
    rsa_tb = _rsatoolbox()
    rdms = [rsa_tb.rdm.calc_rdm(rsa_tb.data.Dataset(np.asarray(f, dtype=np.float64)), method="correlation")
            for f in features]
    return np.concatenate([r.get_vectors() for r in rdms])


def brain_rdms(responses: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Condensed correlation-distance RDMs ``(n_times, n_pairs)`` of ``(n_items, channels, times)``
    responses: at each time point, the distance between the items' channel patterns."""
    rsa_tb = _rsatoolbox()
    dataset = rsa_tb.data.TemporalDataset(np.asarray(responses, dtype=np.float64),
                                          time_descriptors={"time": np.asarray(times)})
    return rsa_tb.rdm.calc_rdm_movie(dataset, method="correlation").get_vectors()


def compare_spearman(model: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Spearman correlation ``(n_models, n_times)`` of every model RDM with every brain RDM."""
    rsa_tb = _rsatoolbox()
    return rsa_tb.rdm.compare(rsa_tb.rdm.RDMs(model), rsa_tb.rdm.RDMs(brain), method="spearman")


@dataclass
class RSAResult:
    """An RSA analysis: its record, where it was written, and table and plot renderers."""

    record: AnalysisRecord
    path: Path | None = None

    @property
    def layers(self) -> list[str]:
        return [layer["name"] for layer in self.record.results["layers"]]

    @property
    def times(self) -> np.ndarray:
        return np.asarray(self.record.results["times"])

    @property
    def similarity(self) -> np.ndarray:
        """Subject-averaged Spearman correlation ``(n_layers, n_times)``."""
        return np.asarray(self.record.results["similarity"])

    @property
    def peak(self) -> dict[str, Any]:
        """The (layer, time) of the highest similarity, with its p-value and noise ceiling."""
        return self.record.results["peak"]

    def table(self) -> str:
        """Per layer: peak similarity, its time, p-value and the noise ceiling there."""
        results = self.record.results
        similarity, pvalues = self.similarity, np.asarray(results["pvalues"])
        ceiling = np.asarray(results["noise_ceiling"])
        rows = []
        for i, layer in enumerate(results["layers"]):
            t = int(np.argmax(similarity[i]))
            depth = "-" if layer["relative_depth"] is None else f"{layer['relative_depth']:.2f}"
            rows.append([layer["name"] + (" (peak)" if layer["name"] == self.peak["layer"] else ""), depth,
                         f"{similarity[i, t]:.3f}", f"{1000 * self.times[t]:.0f}", f"{pvalues[i, t]:.3g}",
                         f"{ceiling[t]:.3f}"])
        return tabulate(rows, ["Layer", "Rel. depth", "Peak Spearman ρ", "at (ms)", "p (FWER)", "Noise ceiling there"],
                        tablefmt="github", disable_numparse=True)

    def summary(self) -> str:
        peak, config = self.peak, self.record.config
        return (f"Peak: layer {peak['layer']} at {1000 * peak['time']:.0f} ms, Spearman ρ = {peak['similarity']:.3f} "
                f"(p = {peak['p']:.3g}, family-wise over {len(self.layers)} layers x {len(self.times)} time points, "
                f"{config['n_permutations']} permutations); noise ceiling there {peak['noise_ceiling']:.3f}. "
                f"{len(config['subjects'])} subjects, {self.record.results['n_items']} test images.")

    def plot(self, path: str | Path) -> Path:
        """Time-by-layer heatmap of the similarity, and the peak layer's time course with the ceiling."""
        times_ms = 1000 * self.times
        similarity = self.similarity
        fig, (heat, course) = subplots(2, 1, figsize=(7, 6), dpi=100, sharex=True,
                                           gridspec_kw={"height_ratios": [3, 2]})
        step = (times_ms[1] - times_ms[0]) / 2 if len(times_ms) > 1 else 1.0
        image = heat.imshow(similarity, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest",
                            extent=(times_ms[0] - step, times_ms[-1] + step, -0.5, len(self.layers) - 0.5))
        heat.set_yticks(range(len(self.layers)), self.layers, fontsize=7)
        heat.plot(1000 * self.peak["time"], self.layers.index(self.peak["layer"]), "r+", markersize=10)
        heat.set_ylabel("backbone layer")
        # an inset colorbar keeps the two panels equally wide
        fig.colorbar(image, cax=heat.inset_axes((1.01, 0.0, 0.02, 1.0)), label="Spearman ρ")
        course.fill_between(times_ms, 0, self.record.results["noise_ceiling"], color="grey", alpha=0.25,
                            label="noise ceiling")
        for name in dict.fromkeys([self.peak["layer"], self.layers[-1]]):
            course.plot(times_ms, similarity[self.layers.index(name)], label=name)
        course.axhline(0, color="black", linewidth=0.8)
        finish_axes(course, "time after image onset (ms)", "Spearman ρ")
        return save_png(fig, path)


def rsa(task: str | Task, backbone: str = DEFAULT_BACKBONE, *, layers: Sequence[str] | None = None,
        subjects: Sequence[str | int] | None = None, n_permutations: int = 1000, n_splits: int = 10,
        seed: int = 0, device: str = "auto", results_dir: str | Path = DEFAULT_RESULTS_DIR,
        data_root: str | Path | None = None, weights: str | Path | None = None) -> RSAResult:
    """Time-resolved RSA of every backbone layer against the averaged test responses of a task.

    Parameters
    ----------
    task : str or Task
        Task id, task file, or :class:`Task` (its channels, time window and normalisation apply).
    backbone : str
        Registered backbone name.
    layers : sequence of str, optional
        Layers to compare (names, indices, depths, ``"final"``, or the shorthands ``"all"`` and
        ``"sweep"`` of :meth:`Backbone.resolve_layers`); default ``"all"``: every layer and final.
    subjects : sequence, optional
        Restrict the task's subjects.
    n_permutations : int
        Permutations of the image labels for the test.
    n_splits : int
        Random split-half partitions of the repetitions averaged for the noise ceiling.
    seed : int
        Seed of the permutations and splits.
    device, data_root, weights
        As for :func:`eegbench.runner.run` (the device computes the features).
    results_dir : path-like
        The results store; the record goes to ``_analyses/<task>/v<version>/rsa/<backbone>.json``.
    """
    from eegbench.analyses.scaling import safe_name
    from eegbench.devices import resolve_device

    _rsatoolbox()
    if n_permutations < 1 or n_splits < 1:
        raise InvalidInputError(f"n_permutations and n_splits must be at least 1, got {n_permutations} and "
                                f"{n_splits}.")
    check_count("seed", seed, 0)
    task = task if isinstance(task, Task) else load_task(task)
    check_request(task, backbone, subjects=subjects, weights=weights)
    device_t = resolve_device(device)
    refs: list[LayerRef] = backbone_layout(backbone).resolve_layers(["all"] if layers is None else list(layers))
    resolved = resolve_task(task, backbone, subjects=subjects, data_root=data_root, device=str(device_t),
                            weights=weights)
    task, dataset, model, chosen = resolved.task, resolved.dataset, resolved.model, list(resolved.subjects)
    features = get_features(model, dataset.image_root, dataset.test_images.files, refs)
    models = model_rdms([features[ref.key] for ref in refs])
    pipeline = ResponsePipeline(task, dataset.info)
    times = pipeline.info.times
    n_items = len(dataset.test_images)
    rng = np.random.default_rng([seed, 0x25A])
    brains, similarities, ceilings = [], [], []
    with progress("RSA: subjects", total=len(chosen)) as advance:
        for subject in chosen:
            data = dataset.load_subject(subject)
            normalizer = Normalizer.fit(pipeline.train(data.train)[0], task.normalization == "zscore")
            trials = normalizer(pipeline.test_trials(data.test))  # (items, repetitions, channels, times)
            if trials.shape[1] < 2:
                raise InvalidInputError(f"The split-half noise ceiling needs at least 2 test repetitions; "
                                        f"{subject} has {trials.shape[1]}.")
            brain = brain_rdms(trials.mean(1), times)
            brains.append(brain)
            similarities.append(compare_spearman(models, brain))
            halves = []
            for _ in range(n_splits):
                order = rng.permutation(trials.shape[1])
                first, second = np.array_split(order, 2)
                halves.append(paired_spearman(brain_rdms(trials[:, first].mean(1), times),
                                              brain_rdms(trials[:, second].mean(1), times)))
            ceilings.append(split_half_noise_ceiling(np.mean(halves, axis=0)))
            advance(1)
    logger.info("RSA: permutation test (%d permutations).", n_permutations)
    _, pvalues = rsa_permutation_test(models, np.stack(brains), n_items, n_permutations=n_permutations, seed=seed)
    similarity = np.mean(similarities, axis=0)
    ceiling = np.mean(ceilings, axis=0)
    best_layer, best_time = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
    results = {
        "n_items": n_items,
        "times": [round(float(t), 6) for t in times],
        "layers": [{"name": r.name, "index": r.index, "relative_depth": r.relative_depth} for r in refs],
        "similarity": np.round(similarity, 6).tolist(),
        "similarity_per_subject": {s: np.round(v, 6).tolist() for s, v in zip(chosen, similarities)},
        "pvalues": np.round(pvalues, 6).tolist(),
        "noise_ceiling": np.round(ceiling, 6).tolist(),
        "noise_ceiling_per_subject": {s: np.round(v, 6).tolist() for s, v in zip(chosen, ceilings)},
        "peak": {"layer": refs[best_layer].name, "time": round(float(times[best_time]), 6),
                 "similarity": round(float(similarity[best_layer, best_time]), 6),
                 "p": round(float(pvalues[best_layer, best_time]), 6),
                 "noise_ceiling": round(float(ceiling[best_time]), 6)},
    }
    record = AnalysisRecord(
        kind="rsa", name=safe_name(backbone), created=now(),
        task={"id": task.id, "version": task.version, "hash": task.content_hash, "metrics": list(task.metrics),
              "chance": task.chance},
        config={"backbone": backbone, "layers": [r.name for r in refs], "subjects": chosen,
                "n_permutations": n_permutations, "n_splits": n_splits, "seed": seed,
                "rdm": "correlation distance", "comparison": "spearman",
                "implementation": f"rsatoolbox {metadata.version('rsatoolbox')}"},
        results=results,
        inputs={"dataset_fingerprint": dataset.fingerprint, "backbone": model.identity(),
                "feature_cache_keys": features.cache_keys,
                "channels": list(pipeline.info.ch_names), "sfreq": pipeline.info.sfreq},
        environment=environment(device_t),
    )
    return RSAResult(record, ResultStore(results_dir).write_analysis(record))
