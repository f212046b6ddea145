"""The ``eegbench`` command line: a thin layer over the Python API.

Every command parses options, calls one API function and prints; errors caused by user input are
printed as one clear message with exit code 2 (set ``EEGBENCH_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from eegbench._check import EegbenchError, InvalidInputError
from eegbench._progress import console, setup_logging

app = typer.Typer(
    name="eegbench",
    help="An honest, reproducible benchmark for decoding seen images from EEG and MEG.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
list_app = typer.Typer(help="List registered tasks, methods, backbones or encoders.", no_args_is_help=True)
app.add_typer(list_app, name="list")

out = typer.echo  # results go to stdout; logs and progress go to stderr


def handle_errors(func):
    """Turn eegbench's input and data errors into a one-line message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except EegbenchError as err:
            if os.environ.get("EEGBENCH_DEBUG"):
                raise
            console.print(f"[bold red]Error:[/bold red] {err}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _csv(value: str | None, cast=str) -> list | None:
    if value is None:
        return None
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise InvalidInputError(f"Expected a comma-separated list of {cast.__name__}, got {value!r}.") from None


def _hyperparameters(pairs: list[str] | None, epochs: int | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--hp expects KEY=VALUE, got {pair!r}.")
        values[key.strip()] = yaml.safe_load(raw)
    if epochs is not None:
        values["epochs"] = epochs
    return values


TaskOpt = Annotated[str, typer.Option("--task", "-t", help="Task id or task YAML file.")]
MethodOpt = Annotated[str, typer.Option("--method", "-m", help="Submission id (see `eegbench list methods`).")]
BackboneOpt = Annotated[str, typer.Option("--backbone", "-b", help="Backbone name (see `eegbench list backbones`).")]
ResultsOpt = Annotated[Path, typer.Option("--results-dir", help="Root folder of result files.")]


@app.command()
@handle_errors
def run(
    task: TaskOpt = "synthetic-intra",
    method: MethodOpt = "shallow",
    backbone: BackboneOpt = "efficientnet_lite0",
    layer: Annotated[str | None, typer.Option(
        help="Layer for methods that take one: index (1..L or -1), relative depth (0.5), name, or 'auto'.")] = None,
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subjects, e.g. 1,2 (default: the task's).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds (default: the task's).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (overrides the task file).")] = None,
    hp: Annotated[list[str] | None, typer.Option("--hp", help="Hyperparameter override KEY=VALUE (repeatable).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    results_dir: ResultsOpt = Path("leaderboard/results"),
    overwrite: Annotated[str, typer.Option(help="missing: keep existing results; always: recompute; "
                                                "never: fail if any exist.")] = "missing",
    data_root: Annotated[Path | None, typer.Option(help="Folder of a real dataset (THINGS tasks).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Local weights file for the backbone.")] = None,
    batch_units: Annotated[int | None, typer.Option(
        help="Units fitted together (default: 1 on CPU, memory-bounded on GPU); results are identical.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary object on stdout.")] = False,
) -> None:
    """Run a method on a task: features, training, harness-owned retrieval, one result file per unit."""
    from eegbench.runner import run as run_api

    result = run_api(task, method, backbone, layer, subjects=_csv(subjects), seeds=_csv(seeds, int),
                     hyperparameters=_hyperparameters(hp, epochs), device=device, results_dir=results_dir,
                     overwrite=overwrite, data_root=data_root, weights=weights, batch_units=batch_units)
    summary = result.summary()
    if as_json:
        out(json.dumps(summary, indent=2))
        return
    out(_summary_table(summary))


def _summary_table(summary: dict) -> str:
    from tabulate import tabulate

    metrics = list(summary["metrics"])
    rows = [[s["subject"], *[f"{100 * s[m]:.1f}" for m in metrics], ", ".join(s.get("layers", []))]
            for s in summary["per_subject"]]
    rows.append(["mean ± SD", *[f"{100 * summary['metrics'][m]['mean']:.1f} ± "
                                f"{100 * summary['metrics'][m]['sd_subjects']:.1f}" for m in metrics], ""])
    rows.append(["chance", *[f"{100 * summary['chance'][m]:g}" for m in metrics], ""])
    head = (f"{summary['task']} v{summary['task_version']} | {summary['method']} | {summary['backbone']} | "
            f"layer {summary['layer']} | {summary['computed']} computed, {summary['skipped']} already on disk")
    table = tabulate(rows, ["subject", *[f"{m} (%)" for m in metrics], "layer"], tablefmt="github",
                     disable_numparse=True)
    return f"{head}\n\n{table}"


@app.command()
@handle_errors
def leaderboard(
    results_dir: ResultsOpt = Path("leaderboard/results"),
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the markdown pages.")] = Path("leaderboard"),
) -> None:
    """Regenerate the leaderboard markdown from result files, and print the main tables."""
    from eegbench.leaderboard import build_leaderboard, group_by_task, main_table
    from eegbench.results import ResultStore

    if not results_dir.is_dir():
        raise InvalidInputError(f"Results folder {results_dir} does not exist; run `eegbench run` first or "
                                "pass --results-dir.")
    written = build_leaderboard(results_dir, out_dir)
    for (task, version), records in group_by_task(ResultStore(results_dir).records()).items():
        chance = ", ".join(f"{k} {100 * v:g} %" for k, v in records[0].task["chance"].items())
        out(f"\n{task} (v{version}) | chance: {chance}\n")
        out(main_table(records))
    console.print(f"Wrote {len(written)} pages to {out_dir}/ (index: {written['index']}).")


@list_app.command("tasks")
@handle_errors
def list_tasks_cmd() -> None:
    """Task ids with version, protocol and dataset."""
    from tabulate import tabulate

    from eegbench.tasks import list_tasks, load_task

    rows = []
    for name in list_tasks():
        task = load_task(name)
        rows.append([task.id, task.version, task.protocol, task.dataset.name + (f" ({task.dataset.variant})"
                     if task.dataset.variant else ""), len(task.seeds)])
    out(tabulate(rows, ["task", "version", "protocol", "dataset", "seeds"], tablefmt="simple"))


@list_app.command("methods")
@handle_errors
def list_methods_cmd() -> None:
    """Submissions found in submissions/ (and $EEGBENCH_SUBMISSIONS_PATH)."""
    from tabulate import tabulate

    from eegbench.submissions import list_submissions, read_meta, _submission_folders

    folders = _submission_folders()
    rows = []
    for name in list_submissions():
        meta = read_meta(folders[name])
        rows.append([meta.id, meta.name, meta.features])
    out(tabulate(rows, ["method", "name", "features"], tablefmt="simple"))


@list_app.command("backbones")
@handle_errors
def list_backbones_cmd() -> None:
    """Registered backbones (any can be used with --backbone)."""
    from tabulate import tabulate

    from eegbench.backbones import get_backbone_spec, list_backbones

    rows = []
    for name in list_backbones():
        spec = get_backbone_spec(name)
        rows.append([name, spec.library, spec.model_id, spec.pretrained or "-",
                     f"{spec.params_millions:g}M" if spec.params_millions else "?",
                     "yes" if spec.embedded else "no"])
    out(tabulate(rows, ["backbone", "library", "model", "weights", "params", "offline"], tablefmt="simple"))


@list_app.command("encoders")
@handle_errors
def list_encoders_cmd() -> None:
    """Brain encoders selectable with --hp encoder=NAME."""
    from tabulate import tabulate

    from eegbench.encoders import encoders

    rows = [[name, encoders.get(name).description] for name in encoders.names()]
    out(tabulate(rows, ["encoder", "description"], tablefmt="simple"))


# ---------------------------------------------------------------------------------------------
# Command groups of other concepts are added below, each in its own section, as thin wrappers
# over the Python API: data (datasets), features (backbones), check (submissions), reproduce
# (results), sweep, scaling and rsa (analyses).
# ---------------------------------------------------------------------------------------------

# --- data: download, verify, info -------------------------------------------------------------


# --- features: extract, ls ---------------------------------------------------------------------


# --- check: validate a submission ----------------------------------------------------------------

@app.command()
@handle_errors
def check(
    submission: Annotated[str, typer.Argument(help="A submission folder (submissions/<id>) or id.")],
    task: TaskOpt = "synthetic-intra",
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subjects (default: the task's).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (overrides the task file).")] = None,
    hp: Annotated[list[str] | None, typer.Option("--hp", help="Hyperparameter override KEY=VALUE.")] = None,
) -> None:
    """Validate a submission and run it on the synthetic task on CPU, next to `final`."""
    from eegbench.runner import check_submission

    report = check_submission(submission, task, subjects=_csv(subjects), hyperparameters=_hyperparameters(hp, epochs))
    out(f"Submission {report.submission.id!r} ({report.submission.folder}) on {report.result.task.id}: "
        f"metadata, import and interface OK; ran in {report.seconds:.0f} s.\n")
    out(report.table())
    for warning in report.warnings:
        console.print(f"[yellow]Warning:[/yellow] {warning}", markup=True, highlight=False)
    out("\nCheck passed.")


# --- reproduce: re-run a recorded configuration --------------------------------------------------


@app.command()
@handle_errors
def reproduce(
    result: Annotated[Path, typer.Argument(help="A result file (JSON) written by `eegbench run`.")],
    task: Annotated[str | None, typer.Option(
        "--task", "-t", help="Task file of the recorded version, if the registered one has changed.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    data_root: Annotated[Path | None, typer.Option(help="Folder of a real dataset (THINGS tasks).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Local weights file for the backbone.")] = None,
    tolerance: Annotated[float, typer.Option(
        help="Largest accepted |difference| of a task metric, in points of %; exit code 1 beyond it.")] = 1.0,
) -> None:
    """Re-run exactly the configuration recorded in RESULT and report the difference in scores."""
    from eegbench.reproduce import reproduce as reproduce_api

    if not result.is_file():
        raise InvalidInputError(f"Result file {result} does not exist.")
    report = reproduce_api(result, task=task, device=device, data_root=data_root, weights=weights)
    out(report.table())
    for warning in report.warnings:
        console.print(f"[yellow]Warning:[/yellow] {warning}", markup=True, highlight=False)
    out("Every test trial got the same rank as recorded." if report.identical_trials
        else "Some test trials got a different rank than recorded.")
    if not report.within(tolerance / 100):
        console.print(f"[bold red]Not reproduced:[/bold red] a metric moved by more than {tolerance:g} points.",
                      markup=True, highlight=False)
        raise typer.Exit(1)


# --- sweep: many configurations, local or Slurm -------------------------------------------------

sweep_app = typer.Typer(help="Run grids of configurations over one results folder, here or on Slurm.",
                        no_args_is_help=True)
app.add_typer(sweep_app, name="sweep")

SweepFileArg = Annotated[Path | None, typer.Argument(
    help="A sweep YAML file (see sweeps/); or describe one grid with --tasks, --methods...")]
TasksOpt = Annotated[str | None, typer.Option("--tasks", help="Comma-separated task ids or files.")]
MethodsOpt = Annotated[str | None, typer.Option("--methods", help="Comma-separated submission ids.")]
BackbonesOpt = Annotated[str | None, typer.Option("--backbones", help="Comma-separated backbone names.")]
LayersOpt = Annotated[str | None, typer.Option(
    "--layers", help="Comma-separated layers, for methods that take one (others run once).")]
SweepSubjectsOpt = Annotated[str | None, typer.Option("--subjects", help="Comma-separated subjects.")]
SweepSeedsOpt = Annotated[str | None, typer.Option("--seeds", help="Comma-separated seeds.")]
SweepEpochsOpt = Annotated[str | None, typer.Option("--epochs", help="Comma-separated epoch counts to sweep.")]
SweepHpOpt = Annotated[list[str] | None, typer.Option(
    "--hp", help="KEY=V1,V2: values of a hyperparameter to sweep (YAML, repeatable).")]
SweepResultsOpt = Annotated[Path | None, typer.Option(
    "--results-dir", help="Root folder of result files (default: the file's, else leaderboard/results).")]
MaxAttemptsOpt = Annotated[int | None, typer.Option(help="Attempts per failing unit (default 3).")]


def _sweep_spec(sweep_file: Path | None, tasks: str | None, methods: str | None, backbones: str | None,
                layers: str | None, subjects: str | None, seeds: str | None, epochs: str | None,
                hp: list[str] | None, **settings: Any):
    """The sweep of a file, or of grid options; settings given on the command line win."""
    from eegbench.sweep import load_sweep, sweep_from_options

    grid_options = {"--tasks": tasks, "--methods": methods, "--backbones": backbones, "--layers": layers,
                    "--subjects": subjects, "--seeds": seeds, "--epochs": epochs, "--hp": hp}
    given = [name for name, value in grid_options.items() if value]
    if sweep_file is not None:
        if given:
            raise InvalidInputError(f"Pass either a sweep file or grid options, not both (got {', '.join(given)} "
                                    f"with {sweep_file}); edit the file's grids instead.")
        return load_sweep(sweep_file).with_settings(**settings)
    if not (tasks and methods):
        raise InvalidInputError("Pass a sweep file, or at least --tasks and --methods.")
    values: dict[str, list] = {}
    for pair in hp or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--hp expects KEY=V1,V2,..., got {pair!r}.")
        values[key.strip()] = yaml.safe_load(f"[{raw}]")
    if epochs is not None:
        values["epochs"] = _csv(epochs, int)
    return sweep_from_options(tasks=_csv(tasks), methods=_csv(methods), backbones=_csv(backbones),
                              layers=_csv(layers), subjects=_csv(subjects), seeds=_csv(seeds, int), hp=values,
                              **settings)


@sweep_app.command("run")
@handle_errors
def sweep_run(
    sweep_file: SweepFileArg = None,
    tasks: TasksOpt = None,
    methods: MethodsOpt = None,
    backbones: BackbonesOpt = None,
    layers: LayersOpt = None,
    subjects: SweepSubjectsOpt = None,
    seeds: SweepSeedsOpt = None,
    epochs: SweepEpochsOpt = None,
    hp: SweepHpOpt = None,
    name: Annotated[str | None, typer.Option(help="Sweep name (folder of its jobs and logs).")] = None,
    results_dir: SweepResultsOpt = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default auto).")] = None,
    data_root: Annotated[Path | None, typer.Option(help="Folder of a real dataset (THINGS tasks).")] = None,
    batch_units: Annotated[int | None, typer.Option(help="Units fitted together (default: the runner's).")] = None,
    max_attempts: MaxAttemptsOpt = None,
    units_per_job: Annotated[int | None, typer.Option(
        help="Split each backbone's units into jobs of at most N units (default: one job per backbone).")] = None,
    executor: Annotated[str | None, typer.Option(help="local (this machine) or slurm (default local).")] = None,
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    gpus_per_job: Annotated[int | None, typer.Option(help="Slurm: GPUs per job (default 1).")] = None,
    cpus_per_job: Annotated[int | None, typer.Option(help="Slurm: CPUs per job.")] = None,
    mem_gb: Annotated[float | None, typer.Option(help="Slurm: memory per job, in GB.")] = None,
    time_limit: Annotated[int | None, typer.Option(help="Slurm: time limit per job, in minutes (default 240).")] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="Slurm: array tasks running at once (default 32).")] = None,
    account: Annotated[str | None, typer.Option(help="Slurm account.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan and the job scripts; run and submit nothing.")] = False,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Run again the units that used up their attempts.")] = False,
) -> None:
    """Plan a sweep, skip finished units, and run the rest here or submit them as a Slurm job array."""
    from eegbench.sweep import describe_jobs, plan_sweep, run_sweep

    spec = _sweep_spec(sweep_file, tasks, methods, backbones, layers, subjects, seeds, epochs, hp, name=name,
                       results_dir=results_dir, device=device, data_root=data_root, batch_units=batch_units,
                       max_attempts=max_attempts, units_per_job=units_per_job, executor=executor,
                       slurm={"partition": partition, "gpus_per_job": gpus_per_job, "cpus_per_job": cpus_per_job,
                              "mem_gb": mem_gb, "time_limit": time_limit, "max_concurrent": max_concurrent,
                              "account": account})
    outcome = run_sweep(spec, dry_run=dry_run, retry_failed=retry_failed)
    if dry_run:
        out(f"{outcome.plan.summary_line()}\n\n{outcome.plan.table()}\n")
        out(describe_jobs(outcome.plan))
        return
    if outcome.jobs:
        out(f"Submitted {len(outcome.jobs)} jobs: {', '.join(job.job_id for job in outcome.jobs)}. "
            f"Logs in {spec.work_dir}/submitit/; progress: eegbench sweep status.")
        return
    final = plan_sweep(spec)
    out(f"{final.summary_line()}\n\n{final.table()}")
    details = final.details()
    if details:
        out(f"\n{details}")
    if any(report.failed for report in outcome.reports):
        raise typer.Exit(1)


@sweep_app.command("status")
@handle_errors
def sweep_status(
    sweep_file: SweepFileArg = None,
    tasks: TasksOpt = None,
    methods: MethodsOpt = None,
    backbones: BackbonesOpt = None,
    layers: LayersOpt = None,
    subjects: SweepSubjectsOpt = None,
    seeds: SweepSeedsOpt = None,
    epochs: SweepEpochsOpt = None,
    hp: SweepHpOpt = None,
    results_dir: SweepResultsOpt = None,
    max_attempts: MaxAttemptsOpt = None,
) -> None:
    """Units of a sweep that are done, running (who, log), failed (error, log) and remaining."""
    from eegbench.sweep import plan_sweep

    spec = _sweep_spec(sweep_file, tasks, methods, backbones, layers, subjects, seeds, epochs, hp,
                       results_dir=results_dir, max_attempts=max_attempts)
    plan = plan_sweep(spec)
    counts = plan.counts()
    out(f"{plan.summary_line()}\n\n{plan.table()}")
    details = plan.details()
    if details:
        out(f"\n{details}")
    out(f"\ndone {counts['done']} | running {counts['running']} | failed {counts['failed']} | "
        f"remaining {plan.remaining()} (run by the next `eegbench sweep run`)")


# --- analyses: scaling, rsa ------------------------------------------------------------------------


def main() -> None:
    """Console-script entry point."""
    from eegbench._compat import keep_freed_memory

    keep_freed_memory()
    setup_logging()
    app()


if __name__ == "__main__":
    main()
