"""``eegbench sweep``: many configurations over one results store, on this machine or on Slurm.

A sweep is a list of **grids**; each grid is the product of its tasks x methods x backbones x
layers x hyperparameter values, run on the given subjects and seeds. Planning resolves the result
file of every unit (task, method, backbone, layer setting, hyperparameters, subject, seed) without
loading weights or training anything, skips the finished units, and packs the others into
**jobs**: one job per feature group (dataset, image size and backbone), so that each backbone's
features are extracted once, in one pass over the images, before the job's configurations run one
after the other, each fitting its units in batches (``batch_units``).

Jobs run in this process (executor ``local``) or as one Slurm job array through submitit
(executor ``slurm``). Every unit is claimed in the results store before it is computed (see
:mod:`eegbench.results`): concurrent sweeps and re-submissions never compute a unit twice, a
killed job's units are re-run by the next submission, and a unit that raises is recorded with its
traceback and retried up to ``max_attempts`` times without stopping the sweep.

A sweep file (``sweeps/*.yaml``)::

    name: my-sweep
    results_dir: results          # relative to the working directory
    device: auto
    max_attempts: 3
    executor: slurm
    slurm: {partition: gpu, gpus_per_job: 1, time_limit: 240, max_concurrent: 16}
    grids:
      - tasks: [things-eeg-intra]
        methods: [final, shallow]
        backbones: [vit_h, efficientnet_lite0]
        seeds: [0, 1, 2]
      - tasks: [things-eeg-intra]
        methods: [shallow]
        layers: [0.25, 0.5, 0.75]  # only methods that take a layer are swept over layers
        hp: {lr: [1.0e-4, 3.0e-4]} # every hyperparameter lists the values to sweep
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import shlex
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eegbench._check import InvalidInputError, MissingDataError, check_seeds, describe_validation_error
from eegbench._io import hash_json, read_yaml_mapping
from eegbench._paths import DEFAULT_RESULTS_DIR
from eegbench._progress import logger, progress
from eegbench.backbones import DEFAULT_BACKBONE
from eegbench.registry import Registry
from eegbench.records import UnitKey
from eegbench.results import ResultStore, UnitStatus, Worker

if TYPE_CHECKING:  # the resolver (and torch with it) is imported where a sweep plans or runs
    from eegbench.data import Dataset
    from eegbench.estimates import Estimate, Workload
    from eegbench.plan import DatasetCache, ResolvedRun
    from eegbench.tasks import TaskDataset

#: sweep folders (job files, logs) live inside the results folder, which every job can reach
SWEEPS_FOLDER = ".sweeps"
UNIT_STATES = ("done", "running", "failed", "todo")


# --- the sweep file -------------------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Grid(BaseModel):
    """One grid of a sweep: the product of its lists, on its subjects and seeds."""

    model_config = _STRICT

    tasks: list[str] = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    backbones: list[str] = Field(default_factory=lambda: [DEFAULT_BACKBONE], min_length=1)
    #: layer requests for methods that take one (``None``: the method's default)
    layers: list[str | None] = Field(default_factory=lambda: [None], min_length=1)
    subjects: list[int | str] | None = None
    seeds: list[int] | None = None
    #: hyperparameter -> the values to sweep (a list, even for a single value)
    hp: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("seeds")
    @classmethod
    def _valid_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        return check_seeds(seeds)

    @field_validator("subjects")
    @classmethod
    def _valid_subjects(cls, subjects: list[int | str] | None) -> list[int | str] | None:
        from eegbench.data.base import check_subjects  # the data package is heavy to import

        return check_subjects(subjects)

    @field_validator("layers", mode="before")
    @classmethod
    def _layers_as_text(cls, layers: Any) -> Any:
        # YAML reads `0.5` and `3` as numbers; layer requests are text like on the command line
        if isinstance(layers, list):
            return [layer if layer is None else str(layer) for layer in layers]
        return layers


class SlurmOptions(BaseModel):
    """Resources of each Slurm job of a sweep (one array task per job)."""

    model_config = _STRICT

    partition: str | None = None
    gpus_per_job: int = Field(1, ge=0)
    cpus_per_job: int | None = Field(None, ge=1)
    mem_gb: float | None = Field(None, gt=0)
    #: wall-clock limit of one job, in minutes
    time_limit: int = Field(240, ge=1)
    #: array tasks running at once
    max_concurrent: int = Field(32, ge=1)
    account: str | None = None
    #: further ``#SBATCH`` options, e.g. ``{qos: high, constraint: a100}``
    sbatch: dict[str, str] = Field(default_factory=dict)
    #: shell lines run before each job (``module load ...``)
    setup: list[str] = Field(default_factory=list)


class ComputeRate(BaseModel):
    """The rate a dry run's GPU hours assume: a GPU's dense bf16 peak and the fraction of it each pass reaches.

    Feature extraction and training both run under bf16 autocast on a GPU. The defaults are
    nominal, not measured: an H100 SXM's dense bf16 peak (989.4 TFLOP/s, NVIDIA's data sheet), 40 %
    of it for extraction (the target of ``benchmarks/test_bench_extraction.py``) and 10 % for
    training, whose matrices are small (a 1024-response batch through a few linear layers). Measure
    yours with ``benchmarks/`` and set ``estimate: {gpu: ..., peak_tflops: ..., extraction_utilisation:
    ..., training_utilisation: ...}`` in the sweep file.
    """

    model_config = _STRICT

    gpu: str = "H100 SXM"
    peak_tflops: float = Field(989.4, gt=0)
    extraction_utilisation: float = Field(0.4, gt=0, le=1)
    training_utilisation: float = Field(0.1, gt=0, le=1)

    def gpu_hours(self, estimate: Estimate) -> float:
        """GPU hours of an estimate's extraction and training FLOPs at this rate."""
        peak = self.peak_tflops * 1e12
        seconds = estimate.extraction_flops / (peak * self.extraction_utilisation) + \
            estimate.training_flops / (peak * self.training_utilisation)
        return seconds / 3600

    def describe(self) -> str:
        return (f"{self.gpu}, dense bf16 peak {self.peak_tflops:g} TFLOP/s, reaching "
                f"{self.extraction_utilisation:.0%} of it in extraction and {self.training_utilisation:.0%} in "
                "training (nominal; the sweep file's `estimate:` sets them)")


class SweepSpec(BaseModel):
    """A sweep: its grids and how to run them (the schema of ``sweeps/*.yaml``)."""

    model_config = _STRICT

    name: str = Field("sweep", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    results_dir: Path = DEFAULT_RESULTS_DIR
    device: str = "auto"
    data_root: Path | None = None
    batch_units: int | None = Field(None, ge=1)
    #: attempts per unit before it is left as failed (``--retry-failed`` resets the count)
    max_attempts: int = Field(3, ge=1)
    #: split feature groups into jobs of at most this many units (default: one job per group)
    units_per_job: int | None = Field(None, ge=1)
    executor: str = "local"
    slurm: SlurmOptions = SlurmOptions()
    #: the GPU rate the dry run's GPU hours are computed at (see :mod:`eegbench.estimates`)
    estimate: ComputeRate = ComputeRate()
    grids: list[Grid] = Field(min_length=1)

    @property
    def work_dir(self) -> Path:
        """Where job files and logs go: ``<results_dir>/.sweeps/<name>``."""
        return self.results_dir / SWEEPS_FOLDER / self.name

    def with_settings(self, **settings: Any) -> SweepSpec:
        """A validated copy with the given settings replaced (``None`` values are ignored)."""
        data = self.model_dump()
        slurm = {k: v for k, v in settings.pop("slurm", {}).items() if v is not None}
        data["slurm"] = {**data["slurm"], **slurm}
        data.update({k: v for k, v in settings.items() if v is not None})
        return _validate(data, "Sweep settings")


def _validate(data: dict, source: str) -> SweepSpec:
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as err:
        raise InvalidInputError(describe_validation_error(err, source)) from None


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file; its ``name`` defaults to the file name."""
    path = Path(path)
    raw = read_yaml_mapping(path, "Sweep file", "a mapping with a `grids` list")
    return _validate({"name": path.stem, **raw}, f"Sweep file {path}")


# --- planning -------------------------------------------------------------------------------------

@dataclass
class RunConfig:
    """One configuration of a sweep: the arguments of one :func:`eegbench.runner.run` call."""

    task: str
    method: str
    backbone: str
    layer: str | None
    hyperparameters: dict[str, Any]
    seeds: tuple[int, ...] | None

    def label(self) -> str:
        hp = " ".join(f"{k}={v}" for k, v in self.hyperparameters.items())
        return " | ".join(filter(None, [Path(self.task).stem, Path(self.method).name, self.backbone,
                                        self.layer and f"layer {self.layer}", hp]))


@dataclass
class PlannedConfig:
    """A configuration with its units' result keys and their state in the store."""

    config: RunConfig
    group: str
    keys: list[UnitKey]
    status: dict[UnitKey, UnitStatus]
    #: what each unit computes, in the sizes the estimates need
    workload: Workload


@dataclass
class JobItem:
    """Part of a job: one configuration on some of its subjects (finished units are skipped)."""

    config: RunConfig
    subjects: tuple[str, ...]
    keys: tuple[UnitKey, ...]


@dataclass
class JobReport:
    """What one job did."""

    job: int
    computed: int = 0
    already_done: int = 0
    failed: list[str] = field(default_factory=list)
    elsewhere: int = 0


@dataclass
class SweepJob:
    """A unit of scheduling: configurations that share one backbone's features.

    Calling it runs the job (in this process, a submitit job or a Slurm array task). It is
    checkpointable: a Slurm job that is preempted or times out is requeued and, as units are
    claimed and written one by one, continues where it stopped.
    """

    index: int
    group: str
    items: list[JobItem]
    results_dir: Path
    device: str
    data_root: Path | None
    batch_units: int | None
    max_attempts: int
    log: Path | None = None

    @property
    def n_units(self) -> int:
        return sum(len(item.keys) for item in self.items)

    def __call__(self, advance: Callable[[int], None] | None = None) -> JobReport:
        from eegbench.plan import DatasetCache

        worker = _submitit_worker() or Worker.here(log=str(self.log) if self.log else None)
        store = ResultStore(self.results_dir)
        report = JobReport(self.index)
        datasets = DatasetCache()  # the job's configurations share their dataset
        if any(store.status(key).state in ("todo", "failed") for item in self.items for key in item.keys):
            self._extract_features(datasets)
        for item in self.items:
            self._run_item(item, store, worker, report, datasets)
            if advance is not None:
                advance(len(item.keys))
        logger.info("Job %d: %d computed, %d already done, %d failed, %d left to other jobs.", self.index,
                    report.computed, report.already_done, len(report.failed), report.elsewhere)
        return report

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue this job as it is (submitit calls this on preemption or timeout)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)

    def _extract_features(self, datasets: DatasetCache) -> None:
        """Features of every layer the job's configurations need, in one pass, into the cache."""
        from eegbench.backbones import get_features
        from eegbench.isolation import MethodPlanner
        from eegbench.plan import resolve_run

        try:
            with MethodPlanner() as planner:
                resolved = [resolve_run(item.config.task, item.config.method, item.config.backbone, item.config.layer,
                                        item.config.hyperparameters, planner=planner, subjects=item.subjects,
                                        seeds=item.config.seeds, data_root=self.data_root, datasets=datasets,
                                        device=self.device) for item in self.items]
            refs = {ref.key: ref for configuration in resolved for ref in configuration.plan.layers}
            first = resolved[0]  # the job's configurations share dataset, image size and backbone
            for images in (first.dataset.train_images, first.dataset.test_images):
                get_features(first.model, first.dataset.image_root, images.files, list(refs.values()))
            for configuration in resolved:  # views of the training images, for the layers of their method
                for view in configuration.plan.views:
                    get_features(first.model, first.dataset.image_root, first.dataset.train_images.files,
                                 configuration.plan.layers, view=view)
        except Exception as error:  # each run below records the error for its own units
            logger.error("Job %d: extracting features failed (%s: %s).", self.index, type(error).__name__, error)

    def _run_item(self, item: JobItem, store: ResultStore, worker: Worker, report: JobReport,
                  datasets: DatasetCache) -> None:
        """Run one configuration, retrying its failed units until they succeed or reach the limit."""
        from eegbench.runner import run

        config = item.config
        report.already_done += sum(store.exists(key) for key in item.keys)
        for _ in range(self.max_attempts):
            try:
                result = run(config.task, config.method, config.backbone, config.layer,
                             subjects=list(item.subjects), seeds=config.seeds,
                             hyperparameters=config.hyperparameters, device=self.device,
                             results_dir=self.results_dir, data_root=self.data_root, batch_units=self.batch_units,
                             on_error="record", max_attempts=self.max_attempts, wait=False, worker=worker,
                             datasets=datasets)
                failed, elsewhere = result.failed, result.elsewhere
                report.computed += result.computed
            except Exception as error:  # the configuration itself failed: backbone, data, method import...
                logger.error("%s failed before its units ran: %s: %s", config.label(), type(error).__name__, error)
                failed = [key for key in item.keys if not store.exists(key)
                          and store.status(key).state != "running"]
                for key in failed:
                    store.record_failure(key, error, worker)
                elsewhere = []
            retry = [key for key in failed if (failure := store.failure(key)) and failure.attempts < self.max_attempts]
            if not retry:
                break
            logger.info("Retrying %d failed units of %s.", len(retry), config.label())
        report.failed += [str(store.failure_path(key)) for key in failed if not store.exists(key)]
        report.elsewhere += len(elsewhere)

    def commands(self) -> list[str]:
        """The job's work as equivalent ``eegbench run`` command lines."""
        lines = []
        for item in self.items:
            config = item.config
            args = ["eegbench", "run", "--task", config.task, "--method", config.method,
                    "--backbone", config.backbone]
            if config.layer is not None:
                args += ["--layer", config.layer]
            args += ["--subjects", ",".join(item.subjects)]
            if config.seeds is not None:
                args += ["--seeds", ",".join(map(str, config.seeds))]
            for name, value in config.hyperparameters.items():
                args += ["--hp", f"{name}={json.dumps(value)}"]
            args += ["--device", self.device, "--results-dir", str(self.results_dir)]
            if self.data_root is not None:
                args += ["--data-root", str(self.data_root)]
            if self.batch_units is not None:
                args += ["--batch-units", str(self.batch_units)]
            lines.append(shlex.join(args))
        return lines


def _submitit_worker() -> Worker | None:
    """This process as a submitit job (its job id and log file), if it is one."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    import submitit

    from eegbench._progress import setup_logging

    setup_logging()  # the job's process logs to its stderr file
    environment = submitit.JobEnvironment()
    return Worker.here(job=environment.job_id, log=str(environment.paths.stderr))


@dataclass
class SweepPlan:
    """The configurations of a sweep, the state of their units, and the jobs left to run."""

    spec: SweepSpec
    configs: list[PlannedConfig]
    jobs: list[SweepJob]
    #: datasets planned from their declaration, with no data on disk (``plan_sweep(declared=True)``)
    declared: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """Units per state: done, running (live claim), failed (attempts left or not), todo."""
        counts = Counter(status.state for config in self.configs for status in config.status.values())
        return {state: counts.get(state, 0) for state in UNIT_STATES}

    @property
    def n_units(self) -> int:
        return sum(len(config.keys) for config in self.configs)

    def estimates(self) -> list[Estimate]:
        """Per job: its GPU compute, feature-cache disk and peak GPU memory (see :mod:`eegbench.estimates`)."""
        from eegbench.estimates import estimate_job

        workloads = {config.config.label(): config.workload for config in self.configs}
        return [estimate_job([(workloads[item.config.label()], len(item.keys)) for item in job.items])
                for job in self.jobs]

    def estimate_report(self) -> str:
        """The dry run's estimates: one row per job, the totals and the rate they assume."""
        from tabulate import tabulate

        from eegbench.estimates import Estimate, human_bytes

        rate = self.spec.estimate
        estimates = self.estimates()
        rows = [[job.index, job.group, job.n_units, f"{estimate.extraction_flops / 1e15:.3g}",
                 f"{estimate.training_flops / 1e15:.3g}", f"{rate.gpu_hours(estimate):.3g}",
                 human_bytes(estimate.cache_bytes), human_bytes(estimate.peak_memory_bytes)]
                for job, estimate in zip(self.jobs, estimates)]
        total = sum(estimates, Estimate())
        table = tabulate(rows, ["job", "features", "units", "extraction PFLOP", "training PFLOP", "GPU hours",
                                "feature cache", "peak GPU memory"], tablefmt="github")
        declared = f"\nPlanned without data for {', '.join(self.declared)}: the datasets' declared subjects, " \
                   "image counts and recording layout." if self.declared else ""
        return (f"Estimates of the {len(self.jobs)} jobs to run, at {rate.describe()}:\n{table}\n"
                f"Total: {rate.gpu_hours(total):.4g} GPU hours, {human_bytes(total.cache_bytes)} of feature cache, "
                f"peak GPU memory {human_bytes(total.peak_memory_bytes)} (the largest job).{declared}")

    def summary_line(self) -> str:
        counts = self.counts()
        corrupt = len(self.corrupt())
        note = f" ({corrupt} of the units not done had a corrupt result file)" if corrupt else ""
        return (f"Sweep {self.spec.name!r}: {len(self.configs)} configurations, {self.n_units} units: "
                f"{counts['done']} done, {counts['running']} running, {counts['failed']} failed, "
                f"{counts['todo']} to do{note}; {sum(job.n_units for job in self.jobs)} units in "
                f"{len(self.jobs)} jobs.")

    def table(self) -> str:
        """One row per configuration: its job(s), and its units per state."""
        from tabulate import tabulate

        job_of: dict[UnitKey, list[str]] = {}
        for job in self.jobs:
            for item in job.items:
                for key in item.keys:
                    job_of.setdefault(key, []).append(str(job.index))
        rows = []
        for planned in self.configs:
            counts = Counter(status.state for status in planned.status.values())
            jobs = sorted({j for key in planned.keys for j in job_of.get(key, [])}, key=int)
            rows.append([planned.config.label(), planned.keys[0].layer_setting, planned.keys[0].hp_tag,
                         len(planned.keys), *(counts.get(state, 0) for state in UNIT_STATES),
                         ",".join(jobs) or "-"])
        headers = ["configuration", "layer setting", "hp tag", "units", *UNIT_STATES, "jobs"]
        return tabulate(rows, headers, tablefmt="github", disable_numparse=True)

    def remaining(self) -> int:
        """Units the next submission would run (to do, and failed with attempts left)."""
        return sum(len(item.keys) for job in self.jobs for item in job.items)

    def details(self) -> str:
        """Tables of the failed units (attempts, last error, log) and the running ones (who, since when)."""
        from tabulate import tabulate

        store = ResultStore(self.spec.results_dir)
        blocks = []
        failed = self.failures()
        if failed:
            rows = []
            for key, status in failed:
                last = status.failure.last
                left = "no (use --retry-failed)" if status.failure.attempts >= self.spec.max_attempts else "yes"
                rows.append([_unit_label(key), status.failure.attempts, left, _shorten(last["error"]),
                             last.get("log") or "-", store.failure_path(key)])
            blocks.append("Failed units:\n" + tabulate(rows, ["unit", "attempts", "retried", "last error", "log",
                                                                 "traceback"], tablefmt="github"))
        running = self.running()
        if running:
            rows = [[_unit_label(key), status.claim.worker.describe() if status.claim.worker else "?",
                     status.claim.claimed or "-", f"{time.time() - status.claim.heartbeat:.0f} s ago",
                     (status.claim.worker.log if status.claim.worker else None) or "-"] for key, status in running]
            blocks.append("Running units:\n" + tabulate(rows, ["unit", "worker", "claimed", "heartbeat", "log"],
                                                          tablefmt="github"))
        corrupt = self.corrupt()
        if corrupt:
            rows = [[_unit_label(key), status.state, status.corrupt] for key, status in corrupt]
            blocks.append("Units whose result file was corrupt (moved aside; they are computed again):\n" +
                          tabulate(rows, ["unit", "state", "corrupt file"], tablefmt="github"))
        return "\n\n".join(blocks)

    def failures(self) -> list[tuple[UnitKey, UnitStatus]]:
        return [(key, status) for config in self.configs for key, status in config.status.items()
                if status.state == "failed"]

    def running(self) -> list[tuple[UnitKey, UnitStatus]]:
        return [(key, status) for config in self.configs for key, status in config.status.items()
                if status.state == "running"]

    def corrupt(self) -> list[tuple[UnitKey, UnitStatus]]:
        """Units not done whose result file was corrupt (see :meth:`ResultStore.exists`)."""
        return [(key, status) for config in self.configs for key, status in config.status.items()
                if status.corrupt is not None]


def _unit_label(key: UnitKey) -> str:
    return f"{key.task} | {key.method} | {key.backbone} | {key.layer_setting} | {key.hp_tag} | {key.subject} seed {key.seed}"


def _shorten(text: str, width: int = 80) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[:width - 1] + "…"


def plan_sweep(spec: SweepSpec, *, retry_failed: bool = False, declared: bool = False) -> SweepPlan:
    """Resolve every unit of a sweep, read its state in the store, and pack the rest into jobs.

    Units that are done, running in a live process, or failed ``max_attempts`` times (unless
    ``retry_failed``) are left out of the jobs. Nothing is trained and no weights are loaded:
    layers are resolved on a backbone built without weights on PyTorch's ``meta`` device. With
    ``declared``, a real dataset that is not on disk is planned from its declaration (subjects, image
    counts, recording layout: :meth:`~eegbench.data.DatasetSpec.declared_dataset`), as a dry run does.
    """
    from eegbench.isolation import MethodPlanner
    from eegbench.plan import resolve_run
    from eegbench.submissions import load_submission
    from eegbench.tasks import load_task

    store = ResultStore(spec.results_dir)
    datasets = _PlanningDatasets(declared)
    task_named, submission_named = functools.cache(load_task), functools.cache(load_submission)
    configs: dict[UnitKey, PlannedConfig] = {}
    seen: set[UnitKey] = set()
    with progress("Planning", total=sum(_grid_size(grid) for grid in spec.grids)) as advance, \
            MethodPlanner() as planner:
        for number, grid in enumerate(spec.grids, 1):
            for task_name, method_name, backbone, layer, hp in itertools.product(
                    grid.tasks, grid.methods, grid.backbones, grid.layers, _hp_product(grid.hp)):
                advance(1)
                try:
                    resolved = resolve_run(task_named(task_name), submission_named(method_name),
                                           backbone, layer, hp, planner=planner, subjects=grid.subjects,
                                           seeds=grid.seeds, data_root=spec.data_root, datasets=datasets)
                except InvalidInputError as error:
                    raise type(error)(f"Grid {number}: {error}") from None
                keys = [key for key in resolved.keys.values() if key not in seen]  # the same unit from another grid
                if not keys:
                    continue
                seen.update(keys)
                # swept layers apply to methods that take one (the resolved layer is None for the others)
                config = RunConfig(_stable_path(task_name), _stable_path(method_name), backbone, resolved.layer, hp,
                                   tuple(grid.seeds) if grid.seeds is not None else None)
                task = resolved.task
                data = " + ".join(f"{d.name}{'/' + d.variant if d.variant else ''} {hash_json(d.options)[:6]}"
                                  for d in task.datasets)
                group = f"{data} @{task.features.image_size or 'native'}px | {backbone}"
                configs[keys[0]] = PlannedConfig(config, group, keys, {key: store.status(key) for key in keys},
                                                 _workload(resolved))
    planned = list(configs.values())
    return SweepPlan(spec, planned, _pack_jobs(spec, planned, retry_failed), tuple(sorted(datasets.declared)))


class _PlanningDatasets:
    """The datasets of a plan: loaded, or (``declared``) as declared when a real dataset is not on disk."""

    def __init__(self, declared: bool) -> None:
        from eegbench.plan import DatasetCache

        self._cache = DatasetCache()
        self._declared = declared
        self.declared: set[str] = set()

    def load(self, spec: TaskDataset, data_root: str | Path | None = None) -> Dataset:
        from eegbench.data import get_dataset_spec

        try:
            return self._cache.load(spec, data_root)
        except MissingDataError:
            if not self._declared or data_root is not None:
                raise
        self.declared.add(spec.name)
        return get_dataset_spec(spec.name).declared_dataset(options=spec.options, variant=spec.variant)


def _workload(resolved: ResolvedRun) -> Workload:
    """The sizes of what each unit of a resolved configuration computes."""
    from eegbench.estimates import Workload, training_config

    task, info = resolved.task, resolved.dataset.info
    n_channels = info.n_channels if task.channels == "all" else len(task.channels)
    train_subjects = max((len(unit.train_subjects) for unit in resolved.units), default=1)
    layers = tuple(resolved.plan.layers)
    probes = resolved.plan.accepts_layer and resolved.layer is None and len(layers) > 1
    n_train = len(resolved.dataset.train_images)
    units_per_fit = len(resolved.units) // max(1, len({unit.fit_key for unit in resolved.units}))
    return Workload(resolved.backbone, task.features.image_size, layers, n_train + len(resolved.dataset.test_images),
                    n_channels, len(info.time_indices(*task.time_window)), n_train * train_subjects,
                    training_config(resolved.plan.hyperparameters), len(layers) + 1 if probes else 1,
                    n_train, tuple(view.key for view in resolved.plan.views), max(1, units_per_fit))


def _grid_size(grid: Grid) -> int:
    return len(grid.tasks) * len(grid.methods) * len(grid.backbones) * len(grid.layers) * len(_hp_product(grid.hp))


def _hp_product(hp: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(hp)
    return [dict(zip(names, values)) for values in itertools.product(*(hp[name] for name in names))]


def _stable_path(name: str) -> str:
    """A task file or submission folder as an absolute path (jobs may start elsewhere); ids as they are."""
    path = Path(name)
    return str(path.resolve()) if ("/" in name or name.endswith((".yaml", ".yml"))) and path.exists() else name


def _pack_jobs(spec: SweepSpec, configs: list[PlannedConfig], retry_failed: bool) -> list[SweepJob]:
    """One job per feature group holding its units to compute (split by ``units_per_job``)."""
    results_dir = spec.results_dir.resolve()
    data_root = spec.data_root.resolve() if spec.data_root else None
    groups: dict[str, list[JobItem]] = {}
    for planned in configs:
        keys = tuple(key for key in planned.keys if _runnable(planned.status[key], spec.max_attempts, retry_failed))
        if keys:
            subjects = tuple(dict.fromkeys(key.subject for key in keys))
            groups.setdefault(planned.group, []).append(JobItem(planned.config, subjects, keys))
    jobs = []
    for group, items in groups.items():
        for chunk in _chunks(items, spec.units_per_job):
            jobs.append(SweepJob(len(jobs), group, chunk, results_dir, spec.device, data_root, spec.batch_units,
                                 spec.max_attempts))
    return jobs


def _runnable(status: UnitStatus, max_attempts: int, retry_failed: bool) -> bool:
    if status.state == "todo":
        return True
    return status.state == "failed" and (retry_failed or status.failure.attempts < max_attempts)


def _chunks(items: list[JobItem], size: int | None) -> list[list[JobItem]]:
    """Items packed into chunks of at most ``size`` units, splitting items by subject where needed."""
    if size is None:
        return [items]
    chunks: list[list[JobItem]] = [[]]
    for item in items:
        for subject in item.subjects:
            part = JobItem(item.config, (subject,), tuple(key for key in item.keys if key.subject == subject))
            if chunks[-1] and sum(len(i.keys) for i in chunks[-1]) + len(part.keys) > size:
                chunks.append([])
            chunk = chunks[-1]
            if chunk and chunk[-1].config is part.config:  # one runner call per configuration and job
                chunk[-1] = JobItem(part.config, chunk[-1].subjects + part.subjects, chunk[-1].keys + part.keys)
            else:
                chunk.append(part)
    return chunks


# --- executors ------------------------------------------------------------------------------------

@dataclass
class SweepRun:
    """Outcome of :func:`run_sweep`: the plan, and the job reports (local) or submitted jobs."""

    plan: SweepPlan
    reports: list[JobReport] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)


executors: Registry[Callable[[SweepPlan], SweepRun]] = Registry(
    "executor", hint="`local` runs the jobs in this process; `slurm` submits them as a job array (submitit).")


@executors.register("local")
def run_here(plan: SweepPlan) -> SweepRun:
    """Run the jobs one after the other in this process, logging to a file in the sweep folder."""
    log = plan.spec.work_dir / "logs" / f"local-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    reports = []
    try:
        with progress("Sweep", total=sum(job.n_units for job in plan.jobs)) as advance:
            for job in plan.jobs:
                job.log = log
                reports.append(job(advance))
    finally:
        logger.removeHandler(handler)
        handler.close()
    return SweepRun(plan, reports)


@executors.register("slurm")
def submit_slurm(plan: SweepPlan) -> SweepRun:
    """Submit the jobs as one Slurm job array through submitit."""
    executor = _require_submitit().AutoExecutor(folder=_submitit_folder(plan.spec), cluster="slurm")
    executor.update_parameters(**_slurm_parameters(plan.spec))
    return submit(plan, executor)


def submit(plan: SweepPlan, executor: Any) -> SweepRun:
    """Submit the jobs with any submitit executor (Slurm, or ``LocalExecutor``/``DebugExecutor`` to test)."""
    if not plan.jobs:
        return SweepRun(plan)
    jobs = executor.submit_array(plan.jobs)
    logger.info("Submitted %d jobs (%s); follow them with `eegbench sweep status`.", len(jobs),
                ", ".join(job.job_id for job in jobs))
    return SweepRun(plan, jobs=jobs)


def _require_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise InvalidInputError("The slurm executor needs submitit: pip install 'eegbench[slurm]'.") from None
    return submitit


def _submitit_folder(spec: SweepSpec) -> Path:
    return (spec.work_dir / "submitit").resolve() / "%j"


def _slurm_parameters(spec: SweepSpec) -> dict[str, Any]:
    """submitit's ``AutoExecutor`` parameters for the sweep's Slurm options."""
    options = spec.slurm
    parameters: dict[str, Any] = {
        "name": f"eegbench-{spec.name}", "timeout_min": options.time_limit, "gpus_per_node": options.gpus_per_job,
        "slurm_array_parallelism": options.max_concurrent, "tasks_per_node": 1, "nodes": 1,
    }
    optional = {"slurm_partition": options.partition, "cpus_per_task": options.cpus_per_job,
                "mem_gb": options.mem_gb, "slurm_account": options.account}
    parameters |= {name: value for name, value in optional.items() if value is not None}
    if options.sbatch:
        parameters["slurm_additional_parameters"] = dict(options.sbatch)
    if options.setup:
        parameters["slurm_setup"] = list(options.setup)
    return parameters


def slurm_script(plan: SweepPlan) -> str:
    """The sbatch script that ``slurm`` submits for the plan's job array (as submitit writes it)."""
    import sys

    from submitit.slurm.slurm import _make_sbatch_string  # the generator SlurmExecutor itself uses

    options = plan.spec.slurm
    sbatch = {"job_name": f"eegbench-{plan.spec.name}", "time": options.time_limit,
              "gpus_per_node": options.gpus_per_job, "ntasks_per_node": 1, "nodes": 1,
              "array_parallelism": options.max_concurrent, "partition": options.partition,
              "cpus_per_task": options.cpus_per_job, "account": options.account,
              "mem": f"{options.mem_gb:g}GB" if options.mem_gb else None,
              "additional_parameters": dict(options.sbatch) or None, "setup": list(options.setup) or None}
    folder = _submitit_folder(plan.spec)
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=max(len(plan.jobs), 1),
                               **{k: v for k, v in sbatch.items() if v is not None})


def describe_jobs(plan: SweepPlan) -> str:
    """The dry-run text: the sbatch script (slurm) and, for every job, its work as commands."""
    blocks = []
    if plan.spec.executor == "slurm" and plan.jobs:
        _require_submitit()
        blocks.append(f"# sbatch script of the job array ({len(plan.jobs)} array tasks)\n{slurm_script(plan)}")
    for job in plan.jobs:
        head = f"# job {job.index} ({'array task ' + str(job.index) if plan.spec.executor == 'slurm' else 'local'})" \
               f": {job.n_units} units | features: {job.group}"
        blocks.append("\n".join([head, *job.commands()]))
    return "\n\n".join(blocks)


def run_sweep(spec: SweepSpec, *, executor: str | Any | None = None, dry_run: bool = False,
              retry_failed: bool = False) -> SweepRun:
    """Plan a sweep and run (``local``) or submit (``slurm``) its jobs.

    Parameters
    ----------
    spec : SweepSpec
        The sweep (see :func:`load_sweep`).
    executor : str or submitit executor, optional
        ``"local"`` or ``"slurm"`` (default: the spec's), or any submitit executor instance.
    dry_run : bool
        Only plan: nothing is run, submitted or changed.
    retry_failed : bool
        Forget the failures of units that used up their attempts, and run them again.
    """
    chosen = spec.executor if executor is None else executor
    if isinstance(chosen, str):
        executors.get(chosen)  # unknown names fail before any planning
        spec = spec.with_settings(executor=chosen)
    plan = plan_sweep(spec, retry_failed=retry_failed, declared=dry_run)
    logger.info(plan.summary_line())
    if dry_run:
        return SweepRun(plan)
    if retry_failed:
        store = ResultStore(spec.results_dir)
        for key, _ in plan.failures():
            store.clear_failure(key)
    if isinstance(chosen, str):
        return executors.get(chosen)(plan)
    return submit(plan, chosen)


def sweep_from_options(*, tasks: Sequence[str], methods: Sequence[str], backbones: Sequence[str] | None = None,
                       layers: Sequence[str] | None = None, subjects: Sequence[int | str] | None = None,
                       seeds: Sequence[int] | None = None, hp: dict[str, list[Any]] | None = None,
                       **settings: Any) -> SweepSpec:
    """A one-grid sweep from command-line options."""
    grid = {"tasks": tasks, "methods": methods, "backbones": backbones, "layers": layers, "subjects": subjects,
            "seeds": seeds, "hp": hp}
    data = {"grids": [{k: v for k, v in grid.items() if v is not None}]}
    return _validate(data, "Sweep options").with_settings(**settings)
