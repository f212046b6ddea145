"""Scaling analyses: accuracy against the amount of data and against backbone size.

**Data scaling** trains a method on nested fractions of each subject's training images (1/16 ...
1 by default; the same seeded subsets for every method, smaller ones inside larger ones) through
the ordinary runner, scores each fitted model on test responses averaged over 1, 2, 4 ... all
repetitions, and fits accuracy against log2(amount) with a 95 % confidence band.

**Backbone scaling** reads the existing result files of a task and relates each method's accuracy
(final layer vs validation-selected layer) to the backbone's parameter count from the backbone
registry: a log-linear fit and Pearson's r of accuracy against log(parameters), with its p-value.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from eegbench._check import InvalidInputError, MissingDataError, UnknownNameError, check_count
from eegbench._io import hash_json
from eegbench._plots import finish_axes, save_png, subplots
from eegbench._progress import logger, progress
from eegbench._paths import DEFAULT_RESULTS_DIR
from eegbench.backbones import DEFAULT_BACKBONE, get_backbone_spec
from eegbench.plan import DatasetCache, check_request, resolve_task
from eegbench.protocols import nested_training_images
from eegbench.provenance import environment, now
from eegbench.records import AnalysisRecord, ResultRecord, analysis_folder
from eegbench.results import ResultStore
from eegbench.stats import LogLinearFit, loglinear_fit, mean_sd, pearson, seed_averaged
from eegbench.tasks import Task, load_task

DEFAULT_FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
#: layer kinds (:attr:`eegbench.records.ResultRecord.layer_kind`) compared by backbone scaling, and their names
LAYER_KINDS = {"final": "final", "selected": "validation-selected"}


def repetition_counts(available: int) -> list[int]:
    """1, 2, 4 ... below ``available``, then ``available`` itself."""
    counts = [2**i for i in range(int(math.log2(available)) + 1) if 2**i < available]
    return [*counts, available]


def safe_name(*parts: str) -> str:
    """A file name made of ``parts`` (characters outside ``[A-Za-z0-9._+-]`` become ``-``)."""
    return "_".join(re.sub(r"[^A-Za-z0-9._+-]", "-", part) for part in parts)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _task_info(task: Task) -> dict[str, Any]:
    return {"id": task.id, "version": task.version, "hash": task.content_hash, "metrics": list(task.metrics),
            "chance": task.chance}


def _summarise(per_subject: Mapping[str, float]) -> dict[str, Any]:
    mean, sd = mean_sd(list(per_subject.values()))
    return {"per_subject": {s: round(v, 6) for s, v in per_subject.items()}, "mean": round(mean, 6),
            "sd": round(sd, 6)}


def _fit_or_none(amounts: Sequence[float], scores: Sequence[float]) -> dict[str, Any] | None:
    """A log-linear fit as a dict, or None when there are too few distinct amounts for a band."""
    if len(amounts) < 3 or len(set(amounts)) < 2:
        return None
    return loglinear_fit(amounts, scores).to_dict()


def _accuracy_limits(ax, scores: Sequence[float]) -> None:
    """Y limits around the plotted accuracies (in %), so wide confidence bands do not flatten them."""
    low, high = 100 * min(scores), 100 * max(scores)
    pad = max(5.0, 0.25 * (high - low))
    ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad))


def _fit_sentence(fit: Mapping[str, Any] | None, what: str) -> str:
    if fit is None:
        return f"No fit: at least 3 points are needed for a fit against log2({what})."
    slope, (low, high) = fit["slope"], fit["slope_ci"]
    return (f"Log-linear fit: top-1 changes by {_pct(slope)} points per doubling of {what} "
            f"(95 % CI [{_pct(low)}, {_pct(high)}], R² = {fit['r2']:.2f}, {fit['n']} points).")


# --- data scaling ----------------------------------------------------------------------------------


@dataclass
class DataScaling:
    """A data-scaling analysis: its record, where it was written, and table and plot renderers."""

    record: AnalysisRecord
    path: Path | None = None

    @property
    def points(self) -> list[dict[str, Any]]:
        return self.record.results["points"]

    def table(self) -> str:
        """Accuracy per training amount, with the fitted top-1 and its band, as GitHub markdown."""
        metrics = self.record.task["metrics"]
        fit = self.record.results["fit"].get("top1")
        model = LogLinearFit.from_dict(fit) if fit else None
        rows = []
        for point in self.points:
            cells = [f"{_pct(point[m]['mean'])} ± {_pct(point[m]['sd'])}" for m in metrics]
            if model:
                low, high = model.band([point["n_train_images"]])
                cells.append(f"{_pct(model.predict([point['n_train_images']])[0])} [{_pct(low[0])}, {_pct(high[0])}]")
            rows.append([point["n_train_images"], f"{point['fraction']:g}", *cells])
        headers = ["Training images", "Fraction", *[f"{m.replace('top', 'Top-')} % (± SD)" for m in metrics],
                   *(["Fit top-1 % [95% band]"] if model else [])]
        return tabulate(rows, headers, tablefmt="github", disable_numparse=True)

    def repetition_table(self) -> str:
        """Accuracy per number of averaged test repetitions, at the largest training fraction."""
        metrics = self.record.task["metrics"]
        curve = self.record.results["repetitions"]
        rows = [[point["n"], *[f"{_pct(point[m]['mean'])} ± {_pct(point[m]['sd'])}" for m in metrics]]
                for point in curve]
        return tabulate(rows, ["Test repetitions", *[f"{m.replace('top', 'Top-')} % (± SD)" for m in metrics]],
                        tablefmt="github", disable_numparse=True)

    def summary(self) -> str:
        """Both fits in words."""
        return "\n".join([_fit_sentence(self.record.results["fit"].get("top1"), "training images"),
                          _fit_sentence(self.record.results["repetition_fit"].get("top1"), "test repetitions")])

    def title(self) -> str:
        config = self.record.config
        hp = "" if config["hp_tag"] == "default" else f" ({config['hp_tag']})"
        return f"{config['method']}{hp} / {config['backbone']} / layer {config['layer_setting']}"

    def plot(self, path: str | Path) -> Path:
        """Top-1 against training images and against test repetitions (log2 axes), with fits."""
        chance = self.record.task["chance"]["top1"]
        fig, axes = subplots(1, 2, figsize=(9, 3.6), dpi=100, sharey=True)
        panels = ((axes[0], self.points, "n_train_images", self.record.results["fit"].get("top1"),
                   "training images per subject"),
                  (axes[1], self.record.results["repetitions"], "n", self.record.results["repetition_fit"].get("top1"),
                   "test repetitions averaged"))
        for ax, points, key, fit, label in panels:
            amounts = np.array([p[key] for p in points], dtype=float)
            for subject in sorted(points[0]["top1"]["per_subject"]):
                ax.plot(amounts, [100 * p["top1"]["per_subject"][subject] for p in points], color="grey",
                        alpha=0.35, linewidth=0.8)
            ax.plot(amounts, [100 * p["top1"]["mean"] for p in points], "o", color="C0", label="mean over subjects")
            if fit:
                model = LogLinearFit.from_dict(fit)
                grid = np.geomspace(amounts.min(), amounts.max(), 50)
                low, high = model.band(grid)
                ax.plot(grid, 100 * model.predict(grid), color="C1", label="log-linear fit")
                ax.fill_between(grid, 100 * low, 100 * high, color="C1", alpha=0.2, label="95 % band")
            ax.axhline(100 * chance, color="black", linestyle=":", linewidth=1, label="chance")
            _accuracy_limits(ax, [chance, *(v for p in points for v in p["top1"]["per_subject"].values())])
            ax.set_xscale("log", base=2)
            ax.set_xlabel(label)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("test top-1 (%)")
        axes[0].legend(fontsize=7)
        fig.suptitle(self.title(), fontsize=9)
        return save_png(fig, path)


def data_scaling(task: str | Task, method: str, backbone: str = DEFAULT_BACKBONE, layer: str | None = None, *,
                 fractions: Sequence[float] | None = None, repetitions: Sequence[int] | None = None,
                 subjects: Sequence[str | int] | None = None, seeds: Sequence[int] | None = None,
                 hyperparameters: Mapping[str, Any] | None = None, device: str = "auto",
                 results_dir: str | Path = DEFAULT_RESULTS_DIR, overwrite: str = "missing",
                 data_root: str | Path | None = None, weights: str | Path | None = None) -> DataScaling:
    """Train ``method`` on nested fractions of the training images and fit accuracy against amount.

    Parameters
    ----------
    task, method, backbone, layer
        As for :func:`eegbench.runner.run`.
    fractions : sequence of float, optional
        Fractions of each subject's training images, in (0, 1]; default 1/16, 1/8, 1/4, 1/2, 1.
        At least 3 are needed for the fit's confidence band.
    repetitions : sequence of int, optional
        Numbers of test repetitions to average; default 1, 2, 4 ... and all recorded ones.
    subjects, seeds, hyperparameters, device, overwrite, data_root, weights
        As for :func:`eegbench.runner.run`.
    results_dir : path-like
        The results store. The unit results of each fraction go below
        ``_analyses/<task>/v<version>/data-scaling/runs/`` (never into the main tables), the
        analysis record to ``_analyses/<task>/v<version>/data-scaling/<name>.json``.

    Returns
    -------
    DataScaling
        The written record, with ``table()``, ``repetition_table()`` and ``plot(path)``.
    """
    from eegbench.runner import run

    fractions = sorted(set(DEFAULT_FRACTIONS if fractions is None else (float(f) for f in fractions)))
    if not fractions or fractions[0] <= 0 or fractions[-1] > 1:
        raise InvalidInputError(f"Training fractions must be in (0, 1], got {fractions}.")
    if repetitions is not None:
        if not repetitions:
            raise InvalidInputError("No test repetition counts given; pass counts such as 1,2,4 or leave them out.")
        for count in repetitions:
            check_count("Each number of test repetitions", count)
    task = task if isinstance(task, Task) else load_task(task)
    check_request(task, backbone, subjects=subjects, seeds=seeds, weights=weights)
    datasets = DatasetCache()  # loaded once, for this function and every run
    resolved = resolve_task(task, backbone, subjects=subjects, data_root=data_root, datasets=datasets)
    task, dataset = resolved.task, resolved.dataset
    available = dataset.load_subject(resolved.subjects[0]).test.shape[1]
    repetitions = repetition_counts(available) if repetitions is None else sorted({int(n) for n in repetitions})
    store = ResultStore(results_dir)
    runs_root = store.root / analysis_folder(task.id, task.version, "data-scaling") / "runs"
    runs = []
    with progress("Data scaling: training fractions", total=len(fractions)) as advance:
        for fraction in fractions:
            logger.info("Data scaling: training on %g of the training images.", fraction)
            runs.append(run(task, method, backbone, layer, subjects=subjects, seeds=seeds,
                            hyperparameters=hyperparameters, device=device,
                            results_dir=runs_root / f"fraction-{fraction:g}", overwrite=overwrite,
                            data_root=data_root, weights=weights, train_fraction=fraction,
                            test_repetitions=repetitions, datasets=datasets))
            advance(1)
    seed = runs[0].records[0].seed
    amounts = [int(nested_training_images(task, dataset, f, seed).sum()) for f in fractions]
    points = []
    for fraction, amount, result in zip(fractions, amounts, runs):
        point: dict[str, Any] = {"fraction": fraction, "n_train_images": amount}
        point |= {m: _summarise(seed_averaged(result.records, m)) for m in task.metrics}
        point["repetitions"] = _repetition_curve(result.records, repetitions, task.metrics)
        points.append(point)
    first = runs[0]
    results = {
        "points": points,
        "fit": {m: _fit_or_none(amounts, [p[m]["mean"] for p in points]) for m in task.metrics},
        "repetitions": points[-1]["repetitions"],
        "repetition_fit": {m: _fit_or_none(repetitions, [p[m]["mean"] for p in points[-1]["repetitions"]])
                           for m in task.metrics},
    }
    record = AnalysisRecord(
        kind="data-scaling", name=safe_name(first.method, backbone, first.layer_setting, first.hp_tag),
        created=now(), task=_task_info(task),
        config={"method": first.method, "backbone": backbone, "layer_request": layer,
                "layer_setting": first.layer_setting, "hp_tag": first.hp_tag,
                "hyperparameters": first.hyperparameters, "fractions": fractions, "repetitions": repetitions,
                "subjects": sorted({r.subject for r in first.records}),
                "seeds": sorted({r.seed for r in first.records})},
        results=results,
        inputs={"dataset_fingerprint": dataset.fingerprint, "n_train_images_total": len(dataset.train_images),
                "runs": {f"{f:g}": str(Path(r.results_dir).relative_to(store.root)) for f, r in zip(fractions, runs)},
                "config_hashes": sorted({r.config_hash for result in runs for r in result.records})},
        environment=first.records[0].environment,
    )
    return DataScaling(record, store.write_analysis(record))


def _repetition_curve(records: Sequence[ResultRecord], repetitions: Sequence[int],
                      metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Per repetition count, the subject-level summary of the scores recorded by the runner."""
    curve = []
    for n in repetitions:
        missing = [r.subject for r in records if n not in r.test_repetitions]
        if missing:
            raise MissingDataError(f"Result files of {missing} hold no scores for {n} test repetitions (they "
                                   "were computed with other repetition counts); rerun with --overwrite always.")
        point: dict[str, Any] = {"n": n}
        for metric in metrics:
            by_subject: dict[str, list[float]] = defaultdict(list)
            for record in records:
                by_subject[record.subject].append(record.test_repetitions[n][metric])
            point[metric] = _summarise({s: float(np.mean(v)) for s, v in sorted(by_subject.items())})
        curve.append(point)
    return curve


# --- backbone scaling ------------------------------------------------------------------------------


@dataclass
class BackboneScaling:
    """A backbone-scaling analysis: its record, where it was written, and renderers."""

    record: AnalysisRecord
    path: Path | None = None
    series: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.series = self.record.results["series"]

    def table(self) -> str:
        """One row per (method, layer kind, backbone), with the series' fit, r and p."""
        rows = []
        for series in self.series:
            r, p = series["pearson_r"], series["pearson_p"]
            fit = series["fit"]
            stats = [f"{_pct(fit['slope'])}" if fit else "-", "-" if r is None else f"{r:.2f}",
                     "-" if p is None else f"{p:.3g}"]
            for point in series["points"]:
                rows.append([series["method"], series["layer"], point["backbone"], f"{point['params_millions']:g}",
                             f"{_pct(point['mean'])} ± {_pct(point['sd'])}", point["n_subjects"], *stats])
        return tabulate(rows, ["Method", "Layer", "Backbone", "Params (M)", "Top-1 % (± SD)", "Subjects",
                               "Slope (points / doubling)", "Pearson r", "p"], tablefmt="github",
                        disable_numparse=True)

    def summary(self) -> str:
        lines = []
        for series in self.series:
            if series["pearson_r"] is None:
                lines.append(f"{series['method']} ({series['layer']}): {len(series['points'])} backbones; at least 3 "
                             "are needed for a fit and a correlation.")
            else:
                lines.append(f"{series['method']} ({series['layer']}): Pearson r = {series['pearson_r']:.2f} "
                             f"(p = {series['pearson_p']:.3g}) between top-1 and log(parameters) over "
                             f"{len(series['points'])} backbones.")
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """Top-1 against parameters (log axis), one line per (method, layer kind), with fits."""
        fig, ax = subplots(figsize=(6, 4), dpi=100)
        for i, series in enumerate(self.series):
            params = np.array([p["params_millions"] for p in series["points"]])
            color = f"C{i % 10}"
            ax.plot(params, [100 * p["mean"] for p in series["points"]], "o", color=color,
                    label=f"{series['method']}: {series['layer']}")
            if series["fit"]:
                model = LogLinearFit.from_dict(series["fit"])
                grid = np.geomspace(params.min(), params.max(), 50)
                low, high = model.band(grid)
                ax.plot(grid, 100 * model.predict(grid), color=color, linewidth=1)
                ax.fill_between(grid, 100 * low, 100 * high, color=color, alpha=0.15)
        _accuracy_limits(ax, [p["mean"] for series in self.series for p in series["points"]])
        ax.set_xscale("log")
        finish_axes(ax, "vision backbone parameters (millions, log scale)")
        return save_png(fig, path)


def records_digest(records: Sequence[ResultRecord]) -> str:
    """A hash of the result files an analysis read: which units, their configuration and scores."""
    return hash_json(sorted([list(vars(r.key).values()), r.config_hash, r.scores] for r in records))


def _params_millions(backbone: str, recorded: float | None) -> float | None:
    """Parameter count from the backbone registry; the recorded one for backbones not registered here."""
    try:
        return get_backbone_spec(backbone).params_millions or recorded
    except UnknownNameError:
        return recorded


def backbone_scaling(results_dir: str | Path, task: str, version: int | None = None) -> BackboneScaling:
    """Relate top-1 to backbone size across the result files of ``task``, and write the record.

    Parameters
    ----------
    results_dir : path-like
        The results store to read (and to write the analysis record into).
    task : str
        Task id.
    version : int, optional
        Task version; default the latest one with results.

    Notes
    -----
    Entries with default hyperparameters are grouped by (method, layer kind): ``final`` (layer
    setting ``final``) and ``validation-selected`` (``auto``). Per backbone, top-1 is averaged over
    seeds then subjects. A series with 3 or more backbones gets a log-linear fit with a 95 %
    band and Pearson's r between top-1 and log(parameters), with scipy's two-sided p-value.
    """
    check_count("version", version)
    store = ResultStore(results_dir)
    if not store.root.is_dir():
        raise InvalidInputError(f"Results folder {store.root} does not exist; run `eegbench run` first.")
    mine = [r for r in store.records() if r.task.id == task]
    versions = sorted({r.task.version for r in mine})
    if not versions:
        raise MissingDataError(f"No result files of task {task!r} in {store.root}; run `eegbench run --task {task} "
                               "--backbone B` for several backbones first.")
    version = versions[-1] if version is None else version
    if version not in versions:
        raise InvalidInputError(f"Task {task!r} has results for versions {versions}, not {version}.")
    records = [r for r in mine if r.task.version == version]
    groups: dict[tuple[str, str], dict[str, list[ResultRecord]]] = defaultdict(lambda: defaultdict(list))
    used = []
    for record in records:
        kind = LAYER_KINDS.get(record.layer_kind)
        if kind and record.method.hp_tag == "default":
            groups[(record.method.id, kind)][record.backbone.name].append(record)
            used.append(record)
    if not groups:
        raise MissingDataError(f"Task {task!r} v{version} has no results with the final or validation-selected "
                               "layer and default hyperparameters.")
    series = []
    for (method, kind), by_backbone in sorted(groups.items()):
        points = []
        for backbone, mine in sorted(by_backbone.items()):
            params = _params_millions(backbone, mine[0].backbone.params_millions)
            if params is None:
                logger.warning("Backbone %r has no parameter count in the registry; it is left out.", backbone)
                continue
            per_subject = seed_averaged(mine, "top1")
            mean, sd = mean_sd(list(per_subject.values()))
            points.append({"backbone": backbone, "params_millions": params, "mean": round(mean, 6),
                           "sd": round(sd, 6), "n_subjects": len(per_subject)})
        points.sort(key=lambda p: (p["params_millions"], p["backbone"]))
        params = [p["params_millions"] for p in points]
        scores = [p["mean"] for p in points]
        r, p = pearson(np.log(params), scores) if len(points) >= 3 else (float("nan"), float("nan"))
        series.append({"method": method, "layer": kind, "points": points, "fit": _fit_or_none(params, scores),
                       "pearson_r": None if math.isnan(r) else round(r, 6),
                       "pearson_p": None if math.isnan(p) else round(p, 6)})
    first = records[0]
    record = AnalysisRecord(
        kind="backbone-scaling", name="all", created=now(),
        task=first.task.model_dump(include={"id", "version", "hash", "metrics", "chance"}),
        config={"metric": "top1", "layer_kinds": LAYER_KINDS, "hp_tag": "default"},
        results={"series": series},
        inputs={"n_result_files": len(records), "records_digest": records_digest(records),
                "n_used": len(used)},
        environment=environment("cpu"),
    )
    return BackboneScaling(record, store.write_analysis(record))
