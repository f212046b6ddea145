"""The ``eegbench`` command line: a thin layer over the Python API.

Every command parses options, calls one API function and prints; errors caused by user input are
printed as one clear message with exit code 2 (set ``EEGBENCH_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

from eegbench._check import EegbenchError, InvalidInputError
from eegbench._paths import DEFAULT_RESULTS_DIR
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
            console.print(f"[bold red]Error:[/bold red] {escape(str(err))}", markup=True, highlight=False,
                          soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _csv(value: str | None, cast=str) -> list | None:
    if value is None:
        return None
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise InvalidInputError(f"Expected a comma-separated list of {cast.__name__}, got {value!r}.") from None


def _hyperparameters(pairs: list[str] | None, epochs: int | None, encoder: str | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--hp expects KEY=VALUE, got {pair!r}.")
        values[key.strip()] = yaml.safe_load(raw)
    for key, value in (("epochs", epochs), ("encoder", encoder)):
        if value is not None:
            values[key] = value
    return values


TaskOpt = Annotated[str, typer.Option("--task", "-t", help="Task id or task YAML file.")]
MethodOpt = Annotated[str, typer.Option("--method", "-m", help="Submission id (see `eegbench list methods`).")]
BackboneOpt = Annotated[str, typer.Option("--backbone", "-b", help="Backbone name (see `eegbench list backbones`).")]
ResultsOpt = Annotated[Path, typer.Option("--results-dir", help="Root folder of result files.")]
EncoderOpt = Annotated[str | None, typer.Option(
    help="Brain encoder, e.g. tsconv (see `eegbench list encoders`); short for --hp encoder=NAME.")]


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
    encoder: EncoderOpt = None,
    hp: Annotated[list[str] | None, typer.Option("--hp", help="Hyperparameter override KEY=VALUE (repeatable).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    results_dir: ResultsOpt = DEFAULT_RESULTS_DIR,
    overwrite: Annotated[str, typer.Option(help="missing: keep existing results; always: recompute; "
                                                "never: fail if any exist.")] = "missing",
    data_root: Annotated[Path | None, typer.Option(help="Folder of a real dataset (THINGS tasks).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Local weights file for the backbone.")] = None,
    batch_units: Annotated[int | None, typer.Option(
        help="Units fitted together (default: 1 on CPU, memory-bounded on GPU); results are identical.")] = None,
    isolation: Annotated[str, typer.Option(
        help="process: the method runs in worker processes that see training data only; sandbox: also no "
             "network and no files but its own (Linux, needs bubblewrap). See CONTRIBUTING.md.")] = "process",
    timeout: Annotated[float | None, typer.Option(
        help="Seconds one unit may take to fit before the method is stopped and the unit recorded as failed "
             "(default: the task's limits.unit_seconds, 6 h).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary object on stdout.")] = False,
) -> None:
    """Run a method on a task: features, training, harness-owned retrieval, one result file per unit."""
    from eegbench.runner import run as run_api

    result = run_api(task, method, backbone, layer, subjects=_csv(subjects), seeds=_csv(seeds, int),
                     hyperparameters=_hyperparameters(hp, epochs, encoder), device=device, results_dir=results_dir,
                     overwrite=overwrite, data_root=data_root, weights=weights, batch_units=batch_units,
                     isolation=isolation, timeout=timeout)
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
    results_dir: ResultsOpt = DEFAULT_RESULTS_DIR,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Folder for the markdown pages (default: <results-dir>/leaderboard).")] = None,
) -> None:
    """Regenerate the leaderboard markdown from result files, and print the main tables."""
    from eegbench.leaderboard import build_leaderboard, build_rows, code_notes, group_by_task, main_table
    from eegbench.results import ResultStore

    if not results_dir.is_dir():
        raise InvalidInputError(f"Results folder {results_dir} does not exist; run `eegbench run` first or "
                                "pass --results-dir.")
    every = list(ResultStore(results_dir).records())  # read once: a skipped file is reported once
    written = build_leaderboard(results_dir, out_dir or results_dir / "leaderboard", every)
    for (task, version), records in group_by_task(every).items():
        chance = ", ".join(f"{k} {100 * v:g} %" for k, v in records[0].task["chance"].items())
        out(f"\n{task} (v{version}) | chance: {chance}\n")
        rows = build_rows(records)
        out(main_table(records, rows))
        for note in code_notes(rows):
            out(note)
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

    from eegbench.submissions import list_submissions, read_meta, submission_folders

    folders = submission_folders()
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
    """Brain encoders selectable with --encoder NAME (or `encoder:` in a task file's training section)."""
    from tabulate import tabulate

    from eegbench.encoders import encoder_parameters, encoders

    shapes = [(17, 250), (63, 250)]  # THINGS-EEG2 at 250 Hz: posterior channels and all channels
    rows = [[name, *[f"{encoder_parameters(name, c, t, 1024) / 1e6:.2f}M" for c, t in shapes],
             encoders.get(name).description] for name in encoders.names()]
    out(tabulate(rows, ["encoder", *[f"params {c}x{t}" for c, t in shapes], "description"], tablefmt="simple"))
    out("\nParameters per model for the given channels x samples, encoder output width 1024.")


# ---------------------------------------------------------------------------------------------
# Command groups of other concepts are added below, each in its own section, as thin wrappers
# over the Python API: data (datasets), features (backbones), check (submissions), reproduce
# (results), sweep, scaling and rsa (analyses).
# ---------------------------------------------------------------------------------------------

# --- data: download, verify, info -------------------------------------------------------------

data_app = typer.Typer(help="Download, verify and describe the real datasets (THINGS-EEG2, THINGS-MEG).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

DatasetArg = Annotated[str, typer.Argument(help="things-eeg2 or things-meg.")]
RootOpt = Annotated[Path, typer.Option("--root", help="Data root folder (give it to `eegbench run --data-root`).")]
VariantOpt = Annotated[str | None, typer.Option(help="Preprocessing variant (default: the dataset's default).")]
SubjectsOpt = Annotated[str | None, typer.Option(help="Comma-separated subject numbers, e.g. 1,2 (default: all).")]
ImagesOpt = Annotated[bool, typer.Option("--images/--no-images", help="Include the image set.")]


@data_app.command("download")
@handle_errors
def data_download(dataset: DatasetArg, root: RootOpt, variant: VariantOpt = None, subjects: SubjectsOpt = None,
                  images: ImagesOpt = True) -> None:
    """Fetch a dataset's files (resumable), each checked against the packaged manifest."""
    from eegbench.data.download import download

    report = download(dataset, root, variant=variant, subjects=_csv(subjects, int), images=images)
    out(f"{dataset}: {len(report.downloaded)} files downloaded, {len(report.present)} already present, in "
        f"{report.root}.")
    for note in report.notes:
        out(f"Note: {note}")
    out(f"Use it with: eegbench run --task <task> --data-root {report.root}")


@data_app.command("verify")
@handle_errors
def data_verify(dataset: DatasetArg, root: RootOpt, variant: VariantOpt = None, subjects: SubjectsOpt = None,
                images: ImagesOpt = True,
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False) -> None:
    """Re-check the files under a data root (present, size, sha256); exit code 2 if any is bad."""
    from tabulate import tabulate

    from eegbench._check import DataError
    from eegbench.data.download import verify

    statuses = verify(dataset, root, variant=variant, subjects=_csv(subjects, int), images=images)
    if as_json:
        out(json.dumps([{"path": s.path, "status": s.status, "detail": s.detail} for s in statuses], indent=2))
    else:
        out(tabulate([[s.path, s.status, s.detail] for s in statuses], ["file", "status", "detail"],
                     tablefmt="simple"))
    bad = [s for s in statuses if not s.ok]
    if bad:
        raise DataError(f"{len(bad)} of {len(statuses)} files are missing or damaged (e.g. {bad[0].path}: "
                        f"{bad[0].status}). Run `eegbench data download {dataset} --root {root}"
                        f"{f' --variant {variant}' if variant else ''}` to fetch them.")


@data_app.command("info")
@handle_errors
def data_info(dataset: DatasetArg, root: RootOpt, variant: VariantOpt = None,
              as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False) -> None:
    """Subjects, variant, shapes, channels, sampling rate, time window and image counts (converts once)."""
    from tabulate import tabulate

    from eegbench.data import load_dataset

    dataset_obj = load_dataset(dataset, variant=variant, data_root=root)
    described = {**dataset_obj.describe(), "image_root": str(dataset_obj.image_root),
                 "description": dataset_obj.metadata.get("source", {}).get("description", "")}
    if as_json:
        out(json.dumps(described, indent=2))
        return
    rows = [[key, ", ".join(map(str, value)) if isinstance(value, list) else value]
            for key, value in described.items()]
    out(tabulate(rows, tablefmt="plain", disable_numparse=True, maxcolwidths=[None, 100]))


# --- features: extract, ls ---------------------------------------------------------------------

features_app = typer.Typer(help="Extract, inspect and list cached backbone features.", no_args_is_help=True)
app.add_typer(features_app, name="features")


@features_app.command("extract")
@handle_errors
def features_extract_cmd(
    backbone: BackboneOpt = "efficientnet_lite0",
    layers: Annotated[str, typer.Option(
        help="Comma-separated layers: index (1..L, -1), relative depth (0.5), name, 'final'; 'all' is every "
             "layer, 'sweep' about ten evenly spaced ones, both with the final embedding.")] = "sweep",
    pooling: Annotated[str | None, typer.Option(
        help="Pooling of intermediate layers: gap (feature maps), cls or mean (tokens). Default: per layer.")] = None,
    images: Annotated[Path | None, typer.Option(help="A folder of images (searched recursively).")] = None,
    task: Annotated[str | None, typer.Option(
        "--task", "-t", help="Extract for this task's dataset at its image size, as `eegbench run` does.")] = None,
    dataset: Annotated[str | None, typer.Option(help="A dataset's train and test images (e.g. synthetic).")] = None,
    data_root: Annotated[Path | None, typer.Option(help="Folder of a real dataset (THINGS).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Local weights file for the backbone.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    image_size: Annotated[int | None, typer.Option(help="Feed CNNs images of this size, uncropped.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    workers: Annotated[int | None, typer.Option(help="Image decoding processes (default: 0 on CPU, up to 16 on CUDA).")] = None,
    precision: Annotated[str, typer.Option(help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16 or fp16.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the extracted layers as JSON on stdout.")] = False,
) -> None:
    """Extract features of backbone layers for images or a dataset into the feature cache."""
    from eegbench.backbones import extract_image_sets
    from eegbench.data.images import dataset_image_sets, image_sets

    if task is not None:
        if dataset is not None or images is not None:
            raise InvalidInputError("--task already names the images; drop --dataset and --images.")
        from eegbench.plan import resolve_task

        resolved = resolve_task(task, backbone, data_root=data_root)
        sets = dataset_image_sets(resolved.dataset)
        image_size = image_size or resolved.task.features.image_size
    else:
        sets = image_sets(images=images, dataset=dataset, data_root=data_root)
    extracted = extract_image_sets(backbone, _csv(layers) or [], sets, pooling=pooling, weights=weights, device=device,
                                   image_size=image_size, batch_size=batch_size, num_workers=workers,
                                   precision=precision)
    rows = [{"images": name, "n_images": len(fs[key]), "key": key,
             **{k: info[k] for k in ("index", "relative_depth", "module", "pooling", "output_shape", "dim", "cached")},
             "cache_key": fs.cache_keys[key]}
            for name, fs in extracted.items() for key, info in fs.layers.items()]
    if as_json:
        out(json.dumps(rows, indent=2))
        return
    from tabulate import tabulate

    table = [[r["images"], r["n_images"], r["key"], r["index"] or "-", "-" if r["relative_depth"] is None
              else f"{r['relative_depth']:.3f}", r["module"], r["pooling"], "x".join(map(str, r["output_shape"])),
              r["dim"], "cached" if r["cached"] else "extracted", r["cache_key"][:12]] for r in rows]
    out(tabulate(table, ["images", "n", "layer", "l", "depth", "module", "pooling", "output", "dim", "status", "key"],
                 tablefmt="simple", disable_numparse=True))


@features_app.command("layers")
@handle_errors
def features_layers_cmd(
    backbone: Annotated[str, typer.Argument(help="Backbone name (see `eegbench list backbones`).")],
    image_size: Annotated[int | None, typer.Option(help="Input size for CNNs fed small images.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON on stdout.")] = False,
) -> None:
    """A backbone's addressable layers with module, relative depth and output shape (no weights needed)."""
    from tabulate import tabulate

    from eegbench.backbones import describe_backbone

    info = describe_backbone(backbone, image_size)
    if as_json:
        out(json.dumps(info, indent=2))
        return
    pre = info["preprocessing"]
    out(f"{info['name']}: {info['library']} {info['model_id']} ({info['pretrained'] or 'no pretrained tag'}), "
        f"{info['params_millions']:g}M parameters, {info['gflops_per_image']:g} GFLOPs per image at "
        f"{pre['size']} px\nfinal embedding: {info['final']}\n")
    rows = [[layer["index"] or "-", layer["name"], layer["module"], "-" if layer["relative_depth"] is None else
             f"{layer['relative_depth']:.3f}", layer["pooling"], "x".join(map(str, layer["output_shape"])), layer["dim"]]
            for layer in info["layers"]]
    out(tabulate(rows, ["l", "layer", "module", "depth", "pooling", "output", "dim"], tablefmt="simple",
                 disable_numparse=True))


@features_app.command("ls")
@handle_errors
def features_ls_cmd(
    backbone: Annotated[str | None, typer.Option("--backbone", "-b", help="Only this backbone's entries.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON on stdout.")] = False,
) -> None:
    """What the feature cache holds: one row per backbone, layer and image set, with its size."""
    from tabulate import tabulate

    from eegbench.backbones import FeatureCache

    cache = FeatureCache()
    everything = [e for e in cache.entries() if backbone is None or e.get("backbone", {}).get("name") == backbone]
    if as_json:
        out(json.dumps(everything, indent=2))
        return
    entries = [e for e in everything if e["current"]]
    outdated = [e for e in everything if not e["current"]]
    if outdated:
        console.print(f"{len(outdated)} entries of an older feature format are never read again; delete their "
                      f"files to reclaim {sum(e['bytes'] for e in outdated) / 2**20:.1f} MiB, e.g. "
                      f"{cache.root / '*' / outdated[0]['key']}.*", highlight=False, markup=False)
    if not entries:
        out(f"No cached features{f' for {backbone!r}' if backbone else ''} in {cache.root}.")
        return
    rows = [[e["backbone"]["name"], e["layer"]["name"], e["layer"]["pooling"], e["images"][:12], e["n_images"],
             e["layer"]["dim"], e["precision"], f"{e['bytes'] / 2**20:.1f}", e["created"], e["key"][:12]]
            for e in entries]
    out(tabulate(rows, ["backbone", "layer", "pooling", "images", "n", "dim", "precision", "MiB", "created", "key"],
                 tablefmt="simple", disable_numparse=True))
    out(f"\n{len(entries)} entries, {sum(e['bytes'] for e in entries) / 2**20:.1f} MiB in {cache.root}")



# --- check: validate a submission ----------------------------------------------------------------

@app.command()
@handle_errors
def check(
    submission: Annotated[str, typer.Argument(help="A submission folder (submissions/<id>) or id.")],
    task: TaskOpt = "synthetic-intra",
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subjects (default: the task's).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (overrides the task file).")] = None,
    hp: Annotated[list[str] | None, typer.Option("--hp", help="Hyperparameter override KEY=VALUE.")] = None,
    encoder: EncoderOpt = None,
    isolation: Annotated[str, typer.Option(
        help="strongest (sandbox where bubblewrap works, else process), process or sandbox.")] = "strongest",
) -> None:
    """Validate a submission and run it on the synthetic task on CPU, next to `final`."""
    from eegbench.check import check_submission

    report = check_submission(submission, task, subjects=_csv(subjects),
                              hyperparameters=_hyperparameters(hp, epochs, encoder), isolation=isolation)
    out(f"Submission {report.submission.id!r} ({report.submission.folder}) on {report.result.task.id}: "
        f"metadata, import and interface OK; ran in {report.seconds:.0f} s with isolation {report.isolation!r}.\n")
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
    "--results-dir", help="Root folder of result files (default: the file's, else results).")]
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

scaling_app = typer.Typer(help="Scaling analyses: accuracy against data amount or backbone size.",
                          no_args_is_help=True)
app.add_typer(scaling_app, name="scaling")
PlotOpt = Annotated[Path | None, typer.Option(
    "--plot", help="Where to write the PNG plot (default: beside the analysis record).")]


def _fractions(value: str | None) -> list[float] | None:
    """``"1/16,0.25,1"`` -> ``[0.0625, 0.25, 1.0]``."""
    from fractions import Fraction

    try:
        return None if value is None else [float(Fraction(v)) for v in _csv(value)]
    except (ValueError, ZeroDivisionError):
        raise InvalidInputError(f"Expected comma-separated fractions such as 0.25 or 1/4, got {value!r}.") from None


def _report_analysis(result, plot: Path | None, as_json: bool, tables: list[str]) -> None:
    """Write the plot, then print the record (``--json``) or the tables."""
    plot_path = result.plot(plot or result.path.with_suffix(".png"))
    if as_json:
        out(json.dumps(result.record.model_dump(mode="json"), indent=2))
    else:
        out("\n\n".join(tables))
    console.print(f"Wrote {result.path} and {plot_path}.", highlight=False)


@scaling_app.command("data")
@handle_errors
def scaling_data(
    task: TaskOpt = "synthetic-intra",
    method: MethodOpt = "shallow",
    backbone: BackboneOpt = "efficientnet_lite0",
    layer: Annotated[str | None, typer.Option(help="Layer for methods that take one (as for `run`).")] = None,
    fractions: Annotated[str | None, typer.Option(
        help="Comma-separated fractions of the training images, e.g. 1/16,1/4,1 (default 1/16,1/8,1/4,1/2,1).")] = None,
    repetitions: Annotated[str | None, typer.Option(
        help="Comma-separated test repetition counts (default 1,2,4,... and all).")] = None,
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subjects (default: the task's).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds (default: the task's).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (overrides the task file).")] = None,
    hp: Annotated[list[str] | None, typer.Option("--hp", help="Hyperparameter override KEY=VALUE.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    results_dir: ResultsOpt = DEFAULT_RESULTS_DIR,
    overwrite: Annotated[str, typer.Option(help="missing, always or never (as for `run`).")] = "missing",
    data_root: Annotated[Path | None, typer.Option(help="Folder of a real dataset (THINGS tasks).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Local weights file for the backbone.")] = None,
    plot: PlotOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis record as JSON on stdout.")] = False,
) -> None:
    """Train on nested fractions of the training images; fit accuracy against log(amount)."""
    from eegbench.analyses import data_scaling

    result = data_scaling(task, method, backbone, layer, fractions=_fractions(fractions),
                          repetitions=_csv(repetitions, int), subjects=_csv(subjects), seeds=_csv(seeds, int),
                          hyperparameters=_hyperparameters(hp, epochs), device=device, results_dir=results_dir,
                          overwrite=overwrite, data_root=data_root, weights=weights)
    _report_analysis(result, plot, as_json, [result.title(), result.table(), result.repetition_table(),
                                             result.summary()])


@scaling_app.command("backbones")
@handle_errors
def scaling_backbones(
    task: TaskOpt = "synthetic-intra",
    version: Annotated[int | None, typer.Option(help="Task version (default: the latest with results).")] = None,
    results_dir: ResultsOpt = DEFAULT_RESULTS_DIR,
    plot: PlotOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis record as JSON on stdout.")] = False,
) -> None:
    """Accuracy against backbone parameter count from existing results (final vs selected layer)."""
    from eegbench.analyses import backbone_scaling

    result = backbone_scaling(results_dir, task, version)
    _report_analysis(result, plot, as_json, [result.table(), result.summary()])


@app.command()
@handle_errors
def rsa(
    task: TaskOpt = "synthetic-intra",
    backbone: BackboneOpt = "efficientnet_lite0",
    layers: Annotated[str | None, typer.Option(
        help="Comma-separated layers (names, indices, depths, final); default every layer and final.")] = None,
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subjects (default: the task's).")] = None,
    permutations: Annotated[int, typer.Option(help="Permutations of the image labels.")] = 1000,
    splits: Annotated[int, typer.Option(help="Split-half partitions for the noise ceiling.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of permutations and splits.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    results_dir: ResultsOpt = DEFAULT_RESULTS_DIR,
    data_root: Annotated[Path | None, typer.Option(help="Folder of a real dataset (THINGS tasks).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Local weights file for the backbone.")] = None,
    plot: PlotOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis record as JSON on stdout.")] = False,
) -> None:
    """Time-resolved representational similarity of every backbone layer with the test responses."""
    from eegbench.analyses import rsa as rsa_api

    result = rsa_api(task, backbone, layers=_csv(layers), subjects=_csv(subjects), n_permutations=permutations,
                     n_splits=splits, seed=seed, device=device, results_dir=results_dir, data_root=data_root,
                     weights=weights)
    _report_analysis(result, plot, as_json, [result.table(), result.summary()])


def main() -> None:
    """Console-script entry point."""
    from eegbench._compat import keep_freed_memory

    keep_freed_memory()
    setup_logging()
    app()


if __name__ == "__main__":
    main()
