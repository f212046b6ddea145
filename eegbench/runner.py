"""``eegbench.run``: one (task, method, backbone, layer) configuration, end to end.

brain data -> backbone features -> method fit (training data only) -> harness-owned retrieval
on the test gallery -> one result file per unit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eegbench._check import InvalidInputError, StorageError, SubmissionError, check_count, check_option
from eegbench._io import hash_json
from eegbench._progress import logger, progress
from eegbench._paths import DEFAULT_RESULTS_DIR
from eegbench.backbones import FeatureSet, LayerRef, get_backbone_spec, get_features
from eegbench.data import Dataset
from eegbench.devices import resolve_device
from eegbench.isolation import FittedAligner, SubmissionSession
from eegbench.metrics import RetrievalResult, cosine_similarity
from eegbench.plan import DatasetCache, ResolvedRun, check_request, resolve_run, run_target
from eegbench.protocols import (
    ResponseCache,
    ResponsePipeline,
    Unit,
    test_responses,
    test_trials,
    training_data,
)
from eegbench.provenance import environment, now
from eegbench.scoring import HiddenScorer, metric_scores
from eegbench.records import (
    BackboneInfo,
    DatasetInfo,
    Environment,
    MethodInfo,
    ModeScores,
    PerTrial,
    ResultRecord,
    Similarity,
    TaskInfo,
    Timing,
    UnitKey,
)
from eegbench.reports import AlignerReport, LayerUse, RecordedLayer
from eegbench.results import ResultStore, UnitClaims, Worker, check_overwrite
from eegbench.stats import mean_sd, seed_averaged
from eegbench.submissions import Submission, load_submission
from eegbench.tasks import Task, load_task
from eegbench.views import ImageView

DEFAULT_TASK = "synthetic-intra"
DEFAULT_METHOD = "shallow"
#: rough ceiling on training responses held in memory at once, used to batch units
_UNIT_BATCH_BYTES = 4 * 1024**3
ON_ERROR_MODES = ("raise", "record")
_WAIT_POLL_SECONDS = 10.0


@dataclass
class RunResult:
    """The records of one run (computed now or found on disk) and their summary."""

    task: Task
    method: str
    backbone: str
    layer_setting: str
    hp_tag: str
    hyperparameters: dict[str, Any]
    records: list[ResultRecord]
    computed: int
    skipped: int
    results_dir: Path
    stale: list[Path] = field(default_factory=list)
    #: units without a result because they raised (now or in earlier attempts)
    failed: list[UnitKey] = field(default_factory=list)
    #: units left to other live processes computing them (only when not waiting for them)
    elsewhere: list[UnitKey] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object: aggregate and per-subject scores, chance, configuration."""
        metrics = {}
        for metric in self.task.metrics:
            per_subject = seed_averaged(self.records, metric)
            mean, sd = mean_sd(list(per_subject.values()))
            metrics[metric] = {"mean": round(mean, 6), "sd_subjects": round(sd, 6)}
        per_subject = []
        for subject in sorted({r.subject for r in self.records}):
            mine = [r for r in self.records if r.subject == subject]
            entry = {"subject": subject, "seeds": sorted(r.seed for r in mine)}
            entry |= {m: round(float(np.mean([r.scores[m] for r in mine])), 6) for m in self.task.metrics}
            layers = sorted({r.report.layers[0].layer.name for r in mine if len(r.report.layers) == 1})
            if layers:
                entry["layers"] = layers
            per_subject.append(entry)
        return {
            "task": self.task.id, "task_version": self.task.version, "method": self.method,
            "backbone": self.backbone, "layer": self.layer_setting, "hp_tag": self.hp_tag,
            "hyperparameters": self.hyperparameters, "metrics": metrics,
            "chance": {m: self.task.chance[m] for m in self.task.metrics},
            "n_units": len(self.records), "computed": self.computed, "skipped": self.skipped,
            "failed": len(self.failed), "elsewhere": len(self.elsewhere),
            "per_subject": per_subject, "results_dir": str(self.results_dir),
            "record_dirs": sorted({str(self.results_dir / r.key.relative_path().parent) for r in self.records}),
        }


def run(task: str | Task = DEFAULT_TASK, method: str | Submission = DEFAULT_METHOD, backbone: str | None = None,
        layer: str | None = None, *, subjects: Sequence[str | int] | None = None,
        seeds: Sequence[int] | None = None, hyperparameters: Mapping[str, Any] | None = None,
        device: str = "auto", results_dir: str | Path = DEFAULT_RESULTS_DIR, overwrite: str = "missing",
        data_root: str | Path | None = None, weights: str | Path | None = None,
        batch_units: int | None = None, on_error: str = "raise", max_attempts: int | None = None,
        wait: bool = True, worker: Worker | None = None,
        train_fraction: float = 1.0, test_repetitions: Sequence[int] | None = None,
        isolation: str = "process", timeout: float | None = None, epochs: int | None = None,
        datasets: DatasetCache | None = None) -> RunResult:
    """Run a method on a task and write one result file per (subject, seed) unit.

    Parameters
    ----------
    task : str or Task
        Task id, task file path, or a :class:`Task`.
    method : str or Submission
        Submission id (``"final"``, ``"shallow"``...), a submission folder, or a loaded submission.
    backbone : str, optional
        Registered backbone name; default: the task's target backbone (``target`` in its file), else
        ``efficientnet_lite0`` (embedded, works offline).
    layer : str, optional
        Layer for methods that take one (``"blocks.3"``, ``"7"``, ``"0.5"``, ``"0.6667:mean_all"``, ``"auto"``);
        default: the task's target layer, else the method's own default.
    subjects, seeds : sequences, optional
        Restrict the task's subjects and seeds.
    hyperparameters : mapping, optional
        Overrides of the method's hyperparameters (after the task file's ``training`` section).
    epochs : int, optional
        Shorthand for ``hyperparameters={"epochs": epochs}`` (methods that train for epochs).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    results_dir : path-like
        Root of the result files.
    overwrite : {"missing", "always", "never"}
        ``missing``: compute units without a result file and keep existing ones; ``always``:
        recompute every unit; ``never``: fail if any requested unit already has a result file.
    data_root : path-like, optional
        Where a real dataset lives (not needed for the synthetic tasks).
    weights : path-like, optional
        Local weights file for the backbone.
    batch_units : int, optional
        How many units to fit together: results are identical either way, but an interrupted run
        loses the batch in flight. Default: 1 on CPU; on GPU as many as fit in about 4 GB.
    on_error : {"raise", "record"}
        A unit that raises always gets a failure record (with its traceback) in the results
        folder; ``raise`` then stops, ``record`` goes on with the other units and lists the failed
        ones in :attr:`RunResult.failed`. A failing batch is retried one unit at a time first.
    max_attempts : int, optional
        Skip units that already failed this many times (default: always try).
    wait : bool
        Units being computed by another live process (see :class:`eegbench.results.UnitClaims`)
        are never computed twice: with ``wait`` this call waits for them (and takes them over
        if that process dies); without, it leaves them and lists them in
        :attr:`RunResult.elsewhere`.
    worker : Worker, optional
        How this process describes itself in claims and failure records (job id, log file).
    train_fraction : float
        For data-scaling analyses: train on this nested fraction of each subject's training images
        (:func:`eegbench.protocols.nested_training_images`). Write such runs to their own
        ``results_dir``: their records are not comparable with full-data ones.
    test_repetitions : sequence of int, optional
        Also score each fitted model on test responses averaged over the first ``n`` repetitions,
        for each ``n``; the scores go to ``report["test_repetitions"]`` of each record.
    isolation : {"process", "sandbox"}
        How the method's code is kept apart from the harness (see :mod:`eegbench.isolation`):
        ``process`` runs it in worker processes that see training data only; ``sandbox`` also
        takes away their network and every file they do not need (Linux with bubblewrap).
    timeout : float, optional
        Seconds one unit may take to fit (and one embedding call to run) before the method is
        stopped and the unit recorded as failed. Default: the task's ``limits.unit_seconds``.
    datasets : DatasetCache, optional
        Datasets already loaded, shared with other runs (of an analysis, a check or a sweep job).
    """
    started = time.perf_counter()
    overwrite = check_overwrite(overwrite)
    check_option("on_error", on_error, ON_ERROR_MODES)
    task = task if isinstance(task, Task) else load_task(task)
    backbone, layer = run_target(task, backbone, layer)
    check_request(task, backbone, subjects=subjects, seeds=seeds, weights=weights)
    check_count("epochs", epochs)
    check_count("batch_units", batch_units)
    submission = method if isinstance(method, Submission) else load_submission(method)
    overrides = dict(hyperparameters or {}) | ({"epochs": epochs} if epochs is not None else {})
    device_t = resolve_device(device)
    store = ResultStore(results_dir)
    with SubmissionSession(submission, isolation=isolation, device=str(device_t),
                           timeout=timeout if timeout is not None else task.limits.unit_seconds) as session:
        resolved = resolve_run(task, submission, backbone, layer, overrides, planner=session, subjects=subjects,
                               seeds=seeds, data_root=data_root, datasets=datasets, device=str(device_t),
                               weights=weights, train_fraction=train_fraction)
        repetitions = _check_repetitions(test_repetitions, resolved.dataset, resolved.subjects[0])
        plan, units, keys = resolved.plan, resolved.units, resolved.keys
        existing = [u for u in units if store.exists(keys[u])]
        if overwrite == "never" and existing:
            raise InvalidInputError(
                f"{len(existing)} requested units already have result files (e.g. {store.path(keys[existing[0]])}); "
                "use --overwrite missing to keep them or --overwrite always to recompute them."
            )
        todo = list(units) if overwrite == "always" else [u for u in units if u not in existing]
        exhausted = []
        if max_attempts is not None:
            exhausted = [u for u in todo if (failure := store.failure(keys[u])) and failure.attempts >= max_attempts]
            todo = [u for u in todo if u not in exhausted]
        logger.info("Task %s v%d | method %s | backbone %s | layer %s | %d units (%d to compute) | isolation %s",
                    task.id, task.version, submission.id, backbone, plan.layer_setting, len(units), len(todo),
                    session.isolation)

        context = _RunContext(resolved, session, device_t, store, worker or Worker.here(), test_repetitions=repetitions)
        failed, busy = [], []
        if todo:
            store.check_writable()  # before any unit is computed, not when the first one is written
            with UnitClaims(store, context.worker) as claims:
                failed, busy = context.compute(todo, claims, batch_units, recompute=overwrite == "always",
                                               on_error=on_error)
                while busy and wait:
                    logger.info("Waiting for %d units computed by other processes: %s", len(busy),
                                store.describe_claims([keys[u] for u in busy]))
                    time.sleep(min(store.heartbeat_seconds, _WAIT_POLL_SECONDS))
                    more_failed, busy = context.compute(busy, claims, batch_units, recompute=False,
                                                        on_error=on_error)
                    failed += more_failed
    records = [store.read(store.path(keys[u])) for u in units if store.exists(keys[u])]
    stale = [store.path(keys[u]) for u in existing if u not in todo
             and store.read(store.path(keys[u])).config_hash != context.config_hash()]
    if stale:
        logger.warning("%d existing result files were computed with a different configuration (code, data "
                       "or hyperparameters) and were kept; use --overwrite always to recompute them.", len(stale))
    if exhausted:
        logger.warning("%d units were skipped: they failed %d times already (see %s).", len(exhausted),
                       max_attempts, store.failure_path(keys[exhausted[0]]))
    logger.info("Done in %.1f s.", time.perf_counter() - started)
    return RunResult(task, submission.id, backbone, plan.layer_setting, resolved.hp_tag, plan.hyperparameters,
                     records, context.computed, len(records) - context.computed, Path(results_dir), stale,
                     [keys[u] for u in [*exhausted, *failed]], [keys[u] for u in busy])


def _log_pace(handled: int, total: int, seconds: float) -> None:
    """After a batch: units handled so far, and the time the others take at the pace so far (the bars
    of training and scoring show each batch's own progress)."""
    left = seconds / handled * (total - handled)
    logger.info("%d of %d units handled in %s; about %s left at this pace.", handled, total, _duration(seconds),
                _duration(left))


def _duration(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``2.1 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _sentence(text: str) -> str:
    """``text`` ending with one full stop (error messages may or may not end with one)."""
    return text if text.endswith((".", "!", "?")) else text + "."


def _check_repetitions(requested: Sequence[int] | None, dataset: Dataset, subject: str) -> tuple[int, ...]:
    """Sorted, validated test repetition counts (empty when none were requested), read from an evaluated subject."""
    if not requested:
        return ()
    available = dataset.load_subject(subject).test.shape[1]
    counts = sorted({int(n) for n in requested})
    if counts[0] < 1 or counts[-1] > available:
        raise InvalidInputError(f"Test repetition counts must be in 1..{available} (this dataset records "
                                f"{available} test repetitions), got {list(requested)}.")
    return tuple(counts)


def _batches(units: list[Unit], dataset: Dataset, batch_units: int | None,
             device: torch.device) -> list[list[Unit]]:
    """Groups of units fitted together. On CPU one fit at a time (batching gains little there and an
    interruption then loses at most one fit); on GPU as many as fit in about 4 GB of responses.

    ``batch_units`` counts fits: the units that share one (:attr:`Unit.fit_key`, the evaluated
    subjects of a joint task) always go in the same batch.
    """
    if batch_units is None and device.type == "cpu":
        batch_units = 1
    if batch_units is None:
        info = dataset.info
        per_unit = len(dataset.train_images) * info.n_channels * info.n_times * 4 * len(units[0].train_subjects)
        batch_units = max(1, _UNIT_BATCH_BYTES // max(per_unit, 1))
    fits: dict[tuple, list[Unit]] = {}
    for unit in units:
        fits.setdefault(unit.fit_key, []).append(unit)
    groups = list(fits.values())
    return [[unit for group in groups[i:i + batch_units] for unit in group]
            for i in range(0, len(groups), batch_units)]


@dataclass
class _RunContext:
    resolved: ResolvedRun
    session: SubmissionSession
    device: torch.device
    store: ResultStore
    worker: Worker
    features: dict[str, FeatureSet] = field(default_factory=dict)
    responses: ResponseCache = field(default_factory=ResponseCache)  # the seeds of a subject share them
    computed: int = 0
    test_repetitions: tuple[int, ...] = ()

    @property
    def refs(self) -> list[LayerRef]:
        return self.resolved.plan.layers

    @property
    def layout(self):
        """Channels and time axis after the task's selection."""
        return ResponsePipeline(self.resolved.task, self.resolved.dataset.info).info

    def config_hash(self) -> str:
        """Everything besides subject and seed that determines a unit's numbers."""
        config = {
            "task": self.resolved.task.content_hash, "dataset": self.resolved.dataset.fingerprint,
            "code": self.resolved.submission.code_sha256, "hp": self.resolved.plan.hyperparameters,
            "backbone": self.resolved.model.identity(), "layers": [r.key for r in self.refs],
        }
        if self.resolved.plan.views:  # entered only when used, so methods without views keep their hashes
            config["views"] = [view.key for view in self.resolved.plan.views]
        # analysis options enter only when used, so ordinary runs keep their hashes
        if self.resolved.train_fraction != 1.0:
            config["train_fraction"] = self.resolved.train_fraction
        if self.test_repetitions:
            config["test_repetitions"] = list(self.test_repetitions)
        return hash_json(config)

    def compute(self, units: list[Unit], claims: UnitClaims, batch_units: int | None, *, recompute: bool,
                on_error: str) -> tuple[list[Unit], list[Unit]]:
        """Fit and evaluate the units this process can claim, batch by batch.

        Returns the units that failed and those held by another live process.
        """
        failed: list[Unit] = []
        busy: list[Unit] = []
        if not units:
            return failed, busy
        started, handled = time.perf_counter(), 0
        for batch in _batches(units, self.resolved.dataset, batch_units, self.device):
            mine = []
            for unit in batch:
                key = self.resolved.keys[unit]
                if not claims.acquire(key):
                    busy.append(unit)
                elif not recompute and self.store.exists(key):  # finished while we were busy
                    claims.release(key)
                else:
                    mine.append(unit)
            try:
                if mine:
                    failed += self._attempt(mine, on_error)
            finally:
                for unit in mine:
                    claims.release(self.resolved.keys[unit])
            handled += len(batch)
            if handled < len(units):
                _log_pace(handled, len(units), time.perf_counter() - started)
        return failed, busy

    def _attempt(self, units: list[Unit], on_error: str) -> list[Unit]:
        """Fit and evaluate; a failing batch is retried unit by unit, a failing unit is recorded."""
        written: list[Unit] = []
        try:
            self.fit_and_evaluate(units, written)
            return []
        except StorageError:  # the results folder, not the method, failed: no unit can be written
            raise
        except Exception as error:
            rest = [u for u in units if u not in written]
            if len(rest) > 1:
                logger.warning("A batch of %d units failed (%s: %s); retrying them one at a time.",
                               len(rest), type(error).__name__, error)
                return [unit for one in rest for unit in self._attempt([one], on_error)]
            key = self.resolved.keys[rest[0]]
            failure = self.store.record_failure(key, error, self.worker)
            logger.error("%s seed %d failed (attempt %d): %s: %s Traceback in %s", key.subject, key.seed,
                         failure.attempts, type(error).__name__, _sentence(str(error)), self.store.failure_path(key))
            if on_error == "raise":
                raise
            return rest

    def fit_and_evaluate(self, units: list[Unit], written: list[Unit]) -> None:
        """Fit units together, then evaluate and write each (appended to ``written`` once on disk)."""
        task, dataset = self.resolved.task, self.resolved.dataset
        if not self.features:
            self.features = self._extract_features()
        train_features = self._normalized(self.features["train"])
        views = {view.key: self._normalized(self.features[_view_set(view)]) for view in self.resolved.plan.views}
        kept = {u: self.resolved.training_images[u] for u in units}
        self.responses.retain(kept)
        fits: dict[tuple, Unit] = {}  # one fit per key (the units of a joint task share it), made for its first unit
        for unit in units:
            fits.setdefault(unit.fit_key, unit)
        prepared = {key: training_data(task, dataset, u, train_features, self.refs, self.device, kept[u],
                                       cache=self.responses, views=views) for key, u in fits.items()}
        start = time.perf_counter()
        fitted = dict(zip(prepared, self.session.fit(task.training, self.resolved.overrides, self.resolved.layer,
                                                     [data for data, _ in prepared.values()])))
        fit_seconds = time.perf_counter() - start
        with progress("Evaluating", total=len(units)) as advance:
            for unit in units:
                normalizer, aligner = prepared[unit.fit_key][1], fitted[unit.fit_key]
                eval_start = time.perf_counter()
                record = self._evaluate(unit, aligner, normalizer,
                                        {"fit_seconds_batch": round(fit_seconds, 3), "units_in_batch": len(units),
                                         "fit_seconds": round(fit_seconds / len(prepared), 3)})
                record.timing.eval_seconds = round(time.perf_counter() - eval_start, 3)
                self.store.write(record)
                self.computed += 1
                written.append(unit)
                advance(1)
        self.session.discard(list(fitted.values()))

    def _extract_features(self) -> dict[str, FeatureSet]:
        """The features of the training and test images, and of each view of the training images."""
        dataset, model = self.resolved.dataset, self.resolved.model
        train, test = dataset.train_images.files, dataset.test_images.files
        sets = {"train": get_features(model, dataset.image_root, train, self.refs),
                "test": get_features(model, dataset.image_root, test, self.refs)}
        for view in self.resolved.plan.views:
            sets[_view_set(view)] = get_features(model, dataset.image_root, train, self.refs, view=view)
        return sets

    def _normalized(self, features: FeatureSet) -> dict[str, np.ndarray]:
        arrays = features.arrays
        return {k: _l2(v) for k, v in arrays.items()} if self.resolved.task.features.normalization == "l2" else arrays

    def _gallery(self) -> dict[str, np.ndarray]:
        return self._normalized(self.features["test"])

    def _evaluate(self, unit: Unit, aligner: FittedAligner, normalizer, timing: dict[str, float]) -> ResultRecord:
        task, dataset = self.resolved.task, self.resolved.dataset
        gallery = self._gallery()
        scorer = HiddenScorer(self.session, inference=task.inference)
        single = (test_trials(task, dataset, unit, normalizer)
                  if task.repetitions.test == "single" or "single_trial" in task.scoring else None)
        # the headline: repetitions averaged, or every trial on its own
        responses, targets = single if task.repetitions.test == "single" else (
            test_responses(task, dataset, unit, normalizer), None)
        result, images = scorer.score(aligner, None, responses, gallery, subject=unit.subject, targets=targets)
        alternatives = {name: metric_scores(scorer.score(aligner, name, responses, gallery, subject=unit.subject,
                                                         targets=targets)[0], task.metrics)
                        for name in aligner.alternatives}
        repetitions = {
            n: metric_scores(scorer.score(aligner, None, test_responses(task, dataset, unit, normalizer, n),
                                          gallery, images, subject=unit.subject)[0], task.metrics)
            for n in self.test_repetitions}
        modes = {}
        if "single_trial" in task.scoring:
            trials, trial_images = single
            by_trial = scorer.score(aligner, None, trials, gallery, images, subject=unit.subject, targets=trial_images)[0]
            modes["single_trial"] = ModeScores(scores=metric_scores(by_trial, task.metrics), n_trials=len(trials),
                                               per_trial=_per_trial(by_trial, trial_images))
        similarity = None
        if "subject_aggregated" in task.scoring:  # kept so that tables can average subjects' similarities
            averaged = responses if targets is None else test_responses(task, dataset, unit, normalizer)
            brain = scorer.embed("brain", aligner, None, averaged, unit.subject)
            similarity = Similarity.of(cosine_similarity(brain, images).numpy())
        report = self._checked_report(aligner)
        return ResultRecord(
            created=now(), task=self._task_info(unit), dataset=self._dataset_info(), method=self._method_info(),
            backbone=self._backbone_info(), subject=unit.subject, train_subjects=list(unit.train_subjects),
            seed=unit.seed, report=report, scores=metric_scores(result, task.metrics),
            alternatives=alternatives, test_repetitions=repetitions, n_test_trials=len(responses),
            n_gallery=result.n_gallery, per_trial=_per_trial(result, targets), modes=modes, similarity=similarity,
            timing=Timing(**timing, eval_seconds=0.0),
            environment=Environment(**environment(self.device), isolation=self.session.isolation),
        )

    def _checked_report(self, aligner: FittedAligner) -> AlignerReport:
        """The method's report, its layers described by the harness: a method may name only layers it
        was given (the board files it by them); left empty with one layer given, it used that one."""
        report = aligner.report
        given = {ref.name: ref for ref in self.refs}
        unknown = sorted({use.layer.name for use in report.layers} - set(given))
        if unknown:
            raise SubmissionError(f"Method {self.resolved.submission.id!r}: report() names layers it was not given "
                                  f"({', '.join(map(repr, unknown))}); it was given {', '.join(map(repr, given))}.")
        if not report.layers and len(self.refs) == 1:
            return report.model_copy(update={"layers": [LayerUse.of(self.refs[0])]})
        return report.model_copy(update={"layers": [LayerUse.of(given[use.layer.name], use.weight)
                                                    for use in report.layers]})

    def _task_info(self, unit: Unit) -> TaskInfo:
        task = self.resolved.task
        info = TaskInfo(id=task.id, version=task.version, hash=task.content_hash, protocol=task.protocol,
                        metrics=list(task.metrics), chance=task.chance, description=task.description,
                        repetitions=task.repetitions.model_dump(), normalization=task.normalization,
                        time_window=task.time_window, main_score=task.main_score,
                        reference_method=task.reference_method, baseline=task.baseline, inference=task.inference,
                        inference_target=task.inference_target, scoring=list(task.scoring))
        if self.resolved.train_fraction != 1.0:
            kept = self.resolved.training_images[unit]
            info = info.model_copy(update={"train_fraction": self.resolved.train_fraction,
                                           "n_train_images": int(kept.sum())})
        return info

    def _dataset_info(self) -> DatasetInfo:
        dataset = self.resolved.dataset
        return DatasetInfo(name=dataset.name, variant=dataset.variant, fingerprint=dataset.fingerprint,
                           channels=list(self.layout.ch_names), sfreq=self.layout.sfreq, n_times=self.layout.n_times)

    def _method_info(self) -> MethodInfo:
        return MethodInfo(id=self.resolved.submission.id, version=self.resolved.submission.meta.version,
                          code_sha256=self.resolved.submission.code_sha256, hp_tag=self.resolved.hp_tag,
                          hyperparameters=self.resolved.plan.hyperparameters, config_hash=self.config_hash())

    def _backbone_info(self) -> BackboneInfo:
        model = self.resolved.model
        return BackboneInfo(name=model.name, layer_setting=self.resolved.plan.layer_setting,
                            layer_request=self.resolved.layer, identity=model.identity(),
                            layers=[RecordedLayer(**r.to_dict()) for r in self.refs], n_layers=model.n_layers,
                            params_millions=get_backbone_spec(model.name).params_millions,
                            feature_cache_keys={s: f.cache_keys for s, f in self.features.items()},
                            views=list(self.resolved.plan.views))


def _per_trial(result: RetrievalResult, targets: np.ndarray | None) -> PerTrial:
    """A retrieval's per-trial ranks as a record keeps them (with each trial's gallery index for single trials)."""
    return PerTrial(n_better=result.n_better.tolist(), n_tied=result.n_tied.tolist(),
                    target=None if targets is None else np.asarray(targets).tolist())


def _view_set(view: ImageView) -> str:
    """The name of the feature set of a view of the training images (as records list their cache keys)."""
    return f"train@{view.key}"


def _l2(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
