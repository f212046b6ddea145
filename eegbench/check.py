"""``eegbench check``: validate a submission and run it on a synthetic task on CPU, beside the reference."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eegbench._check import InvalidInputError
from eegbench._paths import cache_home
from eegbench.isolation import resolve_isolation
from eegbench.plan import DatasetCache
from eegbench.runner import DEFAULT_TASK, RunResult, run
from eegbench.submissions import Submission, load_submission
from eegbench.tasks import Task, list_tasks, load_task


@dataclass
class CheckReport:
    """Outcome of :func:`check_submission`: the submission's run, the reference run, and timing."""

    submission: Submission
    result: RunResult
    #: the run of the task's reference method (None when the submission is that method)
    reference: RunResult | None
    seconds: float
    warnings: list[str]
    isolation: str = "process"

    def table(self) -> str:
        """The submission's and the reference's scores (mean ± SD over subjects), and chance."""
        from tabulate import tabulate

        task = self.result.task
        rows = []
        reference = f"{task.reference_method} (reference)"
        for name, result in ((self.submission.id, self.result), (reference, self.reference)):
            if result is None:
                continue
            summary = result.summary()
            rows.append([name, result.layer_setting,
                         *[f"{100 * summary['metrics'][m]['mean']:.1f} ± {100 * summary['metrics'][m]['sd_subjects']:.1f}"
                           for m in task.metrics]])
        chance = ["chance", "", *[f"{100 * task.chance[m]:g}" for m in task.metrics]]
        headers = ["method", "layer", *[f"{m} (%)" for m in task.metrics]]
        return tabulate([*rows, chance], headers, tablefmt="github", disable_numparse=True)


def check_task(submission: Submission) -> str:
    """The synthetic task :func:`check_submission` runs a submission on by default: ``synthetic-intra``, or
    for a submission that declares other tasks (``tasks: ["*-transductive"]``) the first synthetic task it
    supports."""
    if submission.supports(DEFAULT_TASK):
        return DEFAULT_TASK
    for name in list_tasks():
        if submission.supports(name) and load_task(name).dataset.name == "synthetic":
            return name
    raise InvalidInputError(f"Method {submission.id!r} supports no synthetic task (its tasks: "
                            f"{submission.meta.tasks}); eegbench check needs one: add a synthetic task to `tasks` "
                            "in its submission.yaml.")


def check_submission(submission: str | Path, task: str | Task | None = None, *,
                     subjects: Sequence[str | int] | None = None,
                     hyperparameters: Mapping[str, Any] | None = None,
                     results_dir: str | Path | None = None, isolation: str = "strongest") -> CheckReport:
    """Validate a submission folder and run it on a synthetic task on CPU, beside the task's reference method.

    Checks the metadata, then (in the method's worker, never in this process) its interface,
    hyperparameters and requested layers, runs it with fresh results at the strongest isolation
    level available here, runs (or reuses) the reference method (``task.reference_method``) on the
    same units, and returns both; it warns when the task's main score is not clearly above chance.
    ``task`` defaults to :func:`check_task`. Raises a clear error at the first problem, including any
    failure of the method's code.
    """
    start = time.perf_counter()
    loaded = load_submission(submission)
    task = task if isinstance(task, Task) else load_task(task or check_task(loaded))
    downloaded = [d.name for d in task.datasets if d.name != "synthetic"]
    if downloaded:
        raise InvalidInputError("eegbench check runs on a synthetic task (it needs no download); "
                                f"{task.id!r} uses {downloaded[0]!r}.")
    root = Path(results_dir) if results_dir else cache_home() / "check-results"
    common = {"subjects": subjects, "device": "cpu", "hyperparameters": hyperparameters,
              "isolation": resolve_isolation(isolation), "datasets": DatasetCache()}
    result = run(task, loaded, results_dir=root / "submission", overwrite="always", **common)
    reference = None
    if loaded.id != task.reference_method:
        reference = run(task, task.reference_method, results_dir=root / "reference", **common)
    warnings = []
    main, chance = task.main_score, task.chance[task.main_score]
    if result.summary()["metrics"][main]["mean"] <= 2 * chance:
        warnings.append(f"mean {main} is not clearly above chance ({100 * chance:g} %): check the method.")
    seconds = time.perf_counter() - start
    if seconds > 120:
        warnings.append(f"the check took {seconds:.0f} s; CI expects under 2 minutes on 2 CPU cores.")
    return CheckReport(loaded, result, reference, seconds, warnings, common["isolation"])
