"""The ``eegbench`` command line: a thin layer over the Python API (:mod:`eegbench`).

Every command parses options, calls one API function and prints. Three things are defined once:

- **Options.** An option that several commands take is declared once below (the ``*Opt`` aliases),
  with one help text.
- **Defaults.** An option left out takes the default of the same-named parameter of the API function
  that the command calls (:func:`api_defaults`), read when needed, so that ``eegbench run`` and
  ``eegbench.run()`` cannot drift apart and ``eegbench --help`` does not import torch.
- **Errors.** Errors caused by user input or data (:class:`eegbench.errors.EegbenchError`) are printed
  as one message on stderr with exit code 2 by :meth:`EegbenchGroup.main`, for every command (set
  ``EEGBENCH_DEBUG=1`` for the traceback). So are the OS errors a user can fix (permissions, a
  read-only or full file system, a file where a folder belongs) and truncated or foreign pickles,
  which the code that knows the file's role usually explains first. Usage errors exit with 2 as
  well, an interrupt with 130, SIGTERM during a run with 143.

``--hp`` takes ``KEY=VALUE`` with the value in YAML everywhere; a sweep reads the value as the items
of a YAML list (``KEY=V1,V2``), see :func:`parse_hp`.
"""

from __future__ import annotations

import inspect
import json
import os
import pickle
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from typer.core import TyperGroup

import eegbench
from eegbench._check import check_count, check_positive, check_seeds
from eegbench._paths import DEFAULT_RESULTS_DIR
from eegbench._progress import console, setup_logging
from eegbench.errors import DataError, EegbenchError, InvalidInputError


class EegbenchGroup(TyperGroup):
    """The root command; its :meth:`main` maps eegbench's errors to exit code 2, once for all commands."""

    def invoke(self, ctx: typer.Context) -> Any:
        """Run a command; an OS or unpickling error a user can fix becomes an :class:`EegbenchError`.

        Here, not in :meth:`main`: click turns an ``EOFError`` into a bare "Aborted!" before ``main`` sees it.
        """
        try:
            return super().invoke(ctx)
        except (OSError, EOFError, pickle.UnpicklingError) as err:
            explained = _explain(err)
            if explained is None:
                raise
            raise explained from err

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Run the command line; an :class:`EegbenchError` becomes one line on stderr and exit code 2.

        Click's own usage errors keep exit code 2 and an interrupt exits with 130 (typer maps both).
        """
        try:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        except EegbenchError as err:
            if os.environ.get("EEGBENCH_DEBUG"):
                raise
            console.print(f"[bold red]Error:[/bold red] {escape(str(err))}", markup=True, highlight=False,
                          soft_wrap=True)
            if standalone_mode:
                sys.exit(2)
            return 2


def _explain(err: BaseException) -> EegbenchError | None:
    """The safety net for errors no code explained where the file's role is known (None: a bug, or EegbenchError)."""
    if isinstance(err, EegbenchError):
        return None
    if isinstance(err, OSError):
        from eegbench._io import explain_os_error  # here: _io imports numpy, which `eegbench --help` needs not

        message = explain_os_error(err)
        return None if message is None else InvalidInputError(f"{message} (Set EEGBENCH_DEBUG=1 for the traceback.)")
    return DataError(f"A file ended early or is not in the format expected ({type(err).__name__}: {err}); set "
                     "EEGBENCH_DEBUG=1 for the traceback, which shows the file, and replace or delete it.")


class ApiDefaults(Mapping[str, Any]):
    """Defaults of API parameters, read on first use: a command's ``default_map``.

    Each source returns an API function (the defaults of its parameters) or a mapping of defaults;
    ``name`` maps to the default that the first source gives it.
    """

    def __init__(self, *sources: Callable[[], Callable[..., Any] | Mapping[str, Any]]) -> None:
        self.sources = sources  # called on first use, so that the API is imported only when needed
        self._defaults: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._defaults is None:
            defaults: dict[str, Any] = {}
            for get in self.sources:
                source = get()
                if not isinstance(source, Mapping):
                    parameters = inspect.signature(source).parameters.values()
                    source = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
                for name, value in source.items():
                    defaults.setdefault(name, value)
            self._defaults = defaults
        return self._defaults

    def __getitem__(self, name: str) -> Any:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


def api_defaults(*sources: Callable[[], Callable[..., Any] | Mapping[str, Any]]) -> dict[str, Any]:
    """``context_settings`` of a command whose left-out options take the defaults of ``sources`` (first wins)."""
    return {"default_map": ApiDefaults(*sources)}


def _run_api() -> Callable[..., Any]:
    return eegbench.run


app = typer.Typer(
    name="eegbench",
    cls=EegbenchGroup,
    help="An honest, reproducible benchmark for decoding seen images from EEG and MEG.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
list_app = typer.Typer(help="List registered tasks, methods, backbones or encoders.", no_args_is_help=True)
app.add_typer(list_app, name="list")

out = typer.echo  # results go to stdout; logs and progress go to stderr


# --- options shared by several commands: declared once, one help text each ---------------------------
# Defaults are None here: a command takes them from the API (see api_defaults).

def _early_task_check(task: str | None) -> str | None:
    """Check a task file and its dataset's declaration as soon as the option is read (it is eager).

    This happens before any other option takes its default from the API, which imports PyTorch:
    a broken task file is reported in about a second. The API checks it again.
    """
    if task is not None:
        from eegbench.data import get_dataset_spec
        from eegbench.tasks import load_task

        loaded = load_task(task)
        get_dataset_spec(loaded.dataset.name).check_task(loaded)
    return task


def _early_seeds_check(seeds: str | None) -> str | None:
    check_seeds(_csv(seeds, int))
    return seeds


def _early_subjects_check(subjects: str | None) -> str | None:
    from eegbench.data.base import check_subjects

    check_subjects(_csv(subjects))
    return subjects


TaskOpt = Annotated[str | None, typer.Option("--task", "-t", help="Task id or task YAML file.", is_eager=True,
                                             callback=_early_task_check)]
MethodOpt = Annotated[str | None, typer.Option("--method", "-m", help="Submission id (see `eegbench list methods`).")]
BackboneOpt = Annotated[str | None, typer.Option(
    "--backbone", "-b", help="Backbone name (see `eegbench list backbones`).")]
LayerOpt = Annotated[str | None, typer.Option(
    "--layer", help="Layer for methods that take one: index (1..L or -1), relative depth (0.5), name, or 'auto'.")]
LayersOpt = Annotated[str | None, typer.Option(
    "--layers", help="Comma-separated layers, each as for --layer; to extract or compare features also 'all' "
                     "(every layer) or 'sweep' (about ten evenly spaced ones), both with the final embedding.")]
SubjectsOpt = Annotated[str | None, typer.Option(
    "--subjects", help="Comma-separated subjects, e.g. 1,2 (default: all of the task's or dataset's).", is_eager=True,
    callback=_early_subjects_check)]
SeedsOpt = Annotated[str | None, typer.Option("--seeds", help="Comma-separated seeds, e.g. 0,1 (default: the task's).",
                                              is_eager=True, callback=_early_seeds_check)]
_EPOCHS = typer.Option("--epochs", help="Training epochs, overriding the task file; a sweep takes several (10,20).")
EpochsOpt = Annotated[int | None, _EPOCHS]
EpochsListOpt = Annotated[str | None, _EPOCHS]
HpOpt = Annotated[list[str] | None, typer.Option(
    "--hp", help="Hyperparameter override KEY=VALUE, the value in YAML (repeatable); a sweep takes the values "
                 "to try, KEY=V1,V2.")]
EncoderOpt = Annotated[str | None, typer.Option(
    "--encoder", help="Brain encoder, e.g. tsconv (see `eegbench list encoders`); short for --hp encoder=NAME.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
ResultsOpt = Annotated[Path | None, typer.Option("--results-dir", help="Root folder of result files.")]
DataRootOpt = Annotated[Path | None, typer.Option("--data-root", help="Folder of a real dataset (THINGS tasks).")]
WeightsOpt = Annotated[Path | None, typer.Option("--weights", help="Local weights file for the backbone.")]
BatchUnitsOpt = Annotated[int | None, typer.Option(
    "--batch-units", help="Units fitted together (default: 1 on CPU, memory-bounded on GPU); results are identical.")]
OverwriteOpt = Annotated[str | None, typer.Option(
    "--overwrite", help="missing: keep existing results; always: recompute; never: fail if any exist.")]
IsolationOpt = Annotated[str | None, typer.Option(
    "--isolation", help="process: the method runs in worker processes that see training data only; sandbox: also "
                        "no network and no files but its own (Linux, needs bubblewrap); strongest: sandbox where "
                        "it works, else process. See CONTRIBUTING.md.")]
ImageSizeOpt = Annotated[int | None, typer.Option(
    "--image-size", help="Input size for CNNs fed small images (uncropped).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of tables.")]
PlotOpt = Annotated[Path | None, typer.Option(
    "--plot", help="Where to write the PNG plot (default: beside the analysis record).")]


# --- parsing of option values ------------------------------------------------------------------------

def _csv(value: str | None, cast: Callable[[str], Any] = str) -> list | None:
    if value is None:
        return None
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise InvalidInputError(f"Expected a comma-separated list of {cast.__name__}, got {value!r}.") from None


def parse_hp(pairs: list[str] | None, *, several: bool = False) -> dict[str, Any]:
    """Parse repeated ``--hp KEY=VALUE`` options into ``{key: value}``, each VALUE read as YAML.

    ``lr=0.001`` gives 0.001, ``dims=[64,32]`` a list, ``name=x`` a string. With ``several`` (a
    sweep's values to try), VALUE is read as the items of a YAML list: ``lr=0.001,0.01`` gives
    ``[0.001, 0.01]``, ``lr=0.001`` ``[0.001]`` and ``dims=[64,32]`` the one value ``[[64, 32]]``.
    A later KEY replaces an earlier one. Malformed input raises one :class:`InvalidInputError`.
    """
    from eegbench._io import load_yaml, yaml_problem  # here: _io imports numpy, which `eegbench --help` needs not

    form = "KEY=V1,V2,..." if several else "KEY=VALUE"
    values: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep:
            problem = "no '='"
        elif not key.strip():
            problem = "no key before '='"
        elif not raw.strip():
            problem = "no value after '=' (write null for none)"
        else:
            try:
                values[key.strip()] = load_yaml(f"[{raw}]" if several else raw)
                continue
            except yaml.YAMLError as err:
                problem = f"the value is not valid YAML ({yaml_problem(err, located=False)})"
        raise InvalidInputError(f"--hp expects {form} with values in YAML (e.g. lr=0.001), got {pair!r}: {problem}.")
    return values


def _hyperparameters(hp: list[str] | None, *, epochs: int | None = None,
                     encoder: str | None = None) -> dict[str, Any] | None:
    """``--hp`` overrides with the ``--epochs`` and ``--encoder`` shorthands on top; None when there are none."""
    values = parse_hp(hp)
    check_count("epochs", epochs)
    for key, value in (("epochs", epochs), ("encoder", encoder)):
        if value is not None:
            values[key] = value
    return values or None


# --- run, leaderboard, list ----------------------------------------------------------------------------

@app.command(context_settings=api_defaults(_run_api))
def run(
    task: TaskOpt = None,
    method: MethodOpt = None,
    backbone: BackboneOpt = None,
    layer: LayerOpt = None,
    subjects: SubjectsOpt = None,
    seeds: SeedsOpt = None,
    epochs: EpochsOpt = None,
    encoder: EncoderOpt = None,
    hp: HpOpt = None,
    device: DeviceOpt = None,
    results_dir: ResultsOpt = None,
    overwrite: OverwriteOpt = None,
    data_root: DataRootOpt = None,
    weights: WeightsOpt = None,
    batch_units: BatchUnitsOpt = None,
    isolation: IsolationOpt = None,
    timeout: Annotated[float | None, typer.Option(
        help="Seconds one unit may take to fit before the method is stopped and the unit recorded as failed "
             "(default: the task's limits.unit_seconds, 6 h).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a method on a task: features, training, harness-owned retrieval, one result file per unit."""
    hyperparameters = _hyperparameters(hp, encoder=encoder)
    result = eegbench.run(task, method, backbone, layer, subjects=_csv(subjects), seeds=_csv(seeds, int),
                          hyperparameters=hyperparameters, epochs=epochs, device=device, results_dir=results_dir,
                          overwrite=overwrite, data_root=data_root, weights=weights, batch_units=batch_units,
                          isolation=isolation, timeout=timeout)
    summary = result.summary()
    if as_json:
        out(json.dumps(summary, indent=2))
        return
    out(_summary_table(summary))


def _summary_table(summary: dict) -> str:
    from tabulate import tabulate

    from eegbench.metrics import metric

    metrics = list(summary["metrics"])
    scale = {m: 100 if metric(m).k is not None else 1 for m in metrics}  # top-k in %, ranks as ranks
    rows = [[s["subject"], *[f"{scale[m] * s[m]:.1f}" for m in metrics], ", ".join(s.get("layers", []))]
            for s in summary["per_subject"]]
    rows.append(["mean ± SD", *[f"{scale[m] * summary['metrics'][m]['mean']:.1f} ± "
                                f"{scale[m] * summary['metrics'][m]['sd_subjects']:.1f}" for m in metrics], ""])
    rows.append(["chance", *[f"{scale[m] * summary['chance'][m]:g}" for m in metrics], ""])
    head = (f"{summary['task']} v{summary['task_version']} | {summary['method']} | {summary['backbone']} | "
            f"layer {summary['layer']} | {summary['computed']} computed, {summary['skipped']} already on disk")
    table = tabulate(rows, ["subject", *[f"{m} (%)" if scale[m] == 100 else m for m in metrics], "layer"],
                     tablefmt="github",
                     disable_numparse=True)
    return f"{head}\n\n{table}\n\n{_records_note(summary)}"


def _records_note(summary: dict) -> str:
    """Where the run's result files are, what is missing, and the command that puts them on a leaderboard."""
    folders = summary["record_dirs"]
    where = f"{folders[0]}/" if len(folders) == 1 else f"{len(folders)} folders under {summary['results_dir']}/"
    n = summary["n_units"]
    lines = [f"Records: {n} result file{'s' * (n != 1)} in {where}" if folders else "Records: none."]
    if summary["failed"]:
        lines.append(f"Failed: {summary['failed']} units have no result (their failure records are beside them).")
    if summary["elsewhere"]:
        lines.append(f"Elsewhere: {summary['elsewhere']} units are being computed by other processes.")
    lines.append(f"Leaderboard: eegbench leaderboard --results-dir {summary['results_dir']}")
    return "\n".join(lines)


@app.command()
def leaderboard(
    results_dir: ResultsOpt = DEFAULT_RESULTS_DIR,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Folder for the markdown pages (default: <results-dir>/leaderboard).")] = None,
    from_dataset: Annotated[str | None, typer.Option(
        "--from-dataset", help="Build from a results dataset instead of --results-dir: a folder written by "
                               "`eegbench results export`, or hub:ORG/NAME; needs --out.")] = None,
    reproduced_only: Annotated[bool, typer.Option(
        "--reproduced-only", help="Show only entries a maintainer reproduced (`eegbench reproduce --attest`).")] = False,
    site_dir: Annotated[Path | None, typer.Option(
        "--site", help="Also write the static HTML site (open DIR/index.html, offline) into this folder: new, empty "
                       "or an earlier site, outside the results folder.")] = None,
) -> None:
    """Regenerate the leaderboard markdown from result files, and print the main tables."""
    from eegbench.attestation import Attestations
    from eegbench.leaderboard import build_rows, code_notes, group_by_task, main_table, read_board_records, \
        reproduced_entries, write_leaderboard

    if from_dataset is not None and out_dir is None:
        raise InvalidInputError("--from-dataset needs --out: the folder to write the pages to.")
    if site_dir is not None:  # refused before anything is read or written
        from eegbench.site import check_site_folder

        check_site_folder(site_dir, None if from_dataset is not None else results_dir)
    if from_dataset is not None:
        from eegbench.results_dataset import load_results_dataset

        board = load_results_dataset(from_dataset)
    else:  # load_results: a missing folder is an error, and a skipped file is reported once
        board = read_board_records(results_dir, eegbench.load_results(results_dir))
    out_dir = out_dir or results_dir / "leaderboard"
    written = write_leaderboard(board, out_dir, reproduced_only=reproduced_only)
    attestations = Attestations.of(board.attestations)
    shown = reproduced_entries(board.results, attestations) if reproduced_only else board.results
    for (task, version), records in group_by_task(shown).items():
        chance = ", ".join(f"{k} {100 * v:g} %" for k, v in records[0].task.chance.items())
        out(f"\n{task} (v{version}) | chance: {chance}\n")
        rows = build_rows(records, attestations)
        out(main_table(records, rows))
        for note in code_notes(rows):
            out(note)
    console.print(f"Wrote {len(written)} pages to {out_dir}/ (index: {written['index']}).")
    if site_dir is not None:
        from eegbench.site import write_site

        pages = write_site(board, site_dir, reproduced_only=reproduced_only)
        console.print(f"Wrote the site, {len(pages)} page{'s' * (len(pages) != 1)}, to {site_dir}/ (open {pages['index']}).")


@list_app.command("tasks")
def list_tasks_cmd() -> None:
    """Task ids with version, protocol and dataset."""
    from tabulate import tabulate

    rows = []
    for name in eegbench.list_tasks():
        task = eegbench.load_task(name)
        data = " -> ".join(d.name + (f" ({d.variant})" if d.variant else "") for d in task.datasets)
        rows.append([task.id, task.version, task.protocol, data, len(task.seeds)])
    out(tabulate(rows, ["task", "version", "protocol", "dataset", "seeds"], tablefmt="simple"))


@list_app.command("methods")
def list_methods_cmd() -> None:
    """Submissions found in submissions/ (and $EEGBENCH_SUBMISSIONS_PATH)."""
    from tabulate import tabulate

    from eegbench.submissions import read_meta, submission_folders

    folders = submission_folders()
    rows = []
    for name in eegbench.list_methods():
        meta = read_meta(folders[name])
        rows.append([meta.id, meta.name, meta.features])
    out(tabulate(rows, ["method", "name", "features"], tablefmt="simple"))


@list_app.command("backbones")
def list_backbones_cmd() -> None:
    """Registered backbones (any can be used with --backbone)."""
    from tabulate import tabulate

    from eegbench.backbones import get_backbone_spec

    rows = []
    for name in eegbench.list_backbones():
        spec = get_backbone_spec(name)
        rows.append([name, spec.library, spec.model_id, spec.pretrained or "-",
                     f"{spec.params_millions:g}M" if spec.params_millions else "?",
                     "yes" if spec.embedded else "no"])
    out(tabulate(rows, ["backbone", "library", "model", "weights", "params", "offline"], tablefmt="simple"))


@list_app.command("encoders")
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

data_app = typer.Typer(help="Download, verify and describe the real datasets (THINGS-EEG2, THINGS-MEG, "
                            "Alljoined-1.6M).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

DatasetArg = Annotated[str, typer.Argument(help="things-eeg2, things-meg, things-eeg1 or alljoined.")]
RootOpt = Annotated[Path, typer.Option("--root", help="Data root folder (give it to `eegbench run --data-root`).")]
VariantOpt = Annotated[str | None, typer.Option(help="Preprocessing variant (default: the dataset's default).")]
# A flag's default is written out (typer's help shows it from here, not from the API); a test keeps it the API's.
ImagesOpt = Annotated[bool, typer.Option("--images/--no-images", help="Include the image set.")]


def _download_api() -> Callable[..., Any]:
    from eegbench.data.download import download

    return download


def _verify_api() -> Callable[..., Any]:
    from eegbench.data.download import verify

    return verify


@data_app.command("download", context_settings=api_defaults(_download_api))
def data_download(dataset: DatasetArg, root: RootOpt, variant: VariantOpt = None, subjects: SubjectsOpt = None,
                  images: ImagesOpt = True, accept_license: Annotated[bool, typer.Option(
                      "--accept-license", help="Accept the dataset's licence (Alljoined-1.6M: CC-BY-NC-ND-4.0); "
                                               "such a dataset is refused without it.")] = False) -> None:
    """Fetch a dataset's files (resumable), each checked against the packaged manifest."""
    report = _download_api()(dataset, root, variant=variant, subjects=_csv(subjects, int), images=images,
                             accept_license=accept_license)
    out(f"{dataset}: {len(report.downloaded)} files downloaded, {len(report.present)} already present, in "
        f"{report.root}.")
    for note in report.notes:
        out(f"Note: {note}")
    out(f"Use it with: eegbench run --task <task> --data-root {report.root}")


@data_app.command("verify", context_settings=api_defaults(_verify_api))
def data_verify(dataset: DatasetArg, root: RootOpt, variant: VariantOpt = None, subjects: SubjectsOpt = None,
                images: ImagesOpt = True, as_json: JsonOpt = False) -> None:
    """Re-check the files under a data root (present, size, sha256); exit code 2 if any is bad."""
    from tabulate import tabulate

    statuses = _verify_api()(dataset, root, variant=variant, subjects=_csv(subjects, int), images=images)
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
def data_info(dataset: DatasetArg, root: RootOpt, variant: VariantOpt = None, as_json: JsonOpt = False) -> None:
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


# --- features: extract, layers, ls ---------------------------------------------------------------

features_app = typer.Typer(help="Extract, inspect and list cached backbone features.", no_args_is_help=True)
app.add_typer(features_app, name="features")


def _extract_api() -> Callable[..., Any]:
    from eegbench.backbones import extract_image_sets

    return extract_image_sets


def _default_backbone() -> dict[str, str]:
    from eegbench.backbones import DEFAULT_BACKBONE

    return {"backbone": DEFAULT_BACKBONE}


@features_app.command("extract", context_settings=api_defaults(_extract_api, _default_backbone))
def features_extract_cmd(
    backbone: BackboneOpt = None,
    layers: LayersOpt = "sweep",
    pooling: Annotated[str | None, typer.Option(
        help="Pooling of intermediate layers: gap (feature maps); cls, mean (patch tokens) or mean_all "
             "(all tokens, class token included) for tokens. Default: per layer.")] = None,
    images: Annotated[Path | None, typer.Option(help="A folder of images (searched recursively).")] = None,
    task: TaskOpt = None,
    dataset: Annotated[str | None, typer.Option(help="A dataset's train and test images (e.g. synthetic).")] = None,
    data_root: DataRootOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = None,
    image_size: ImageSizeOpt = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per forward pass.")] = None,
    num_workers: Annotated[int | None, typer.Option(
        "--workers", help="Image decoding processes (default: 0 on CPU, up to 16 on CUDA).")] = None,
    precision: Annotated[str | None, typer.Option(
        help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16 or fp16.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Extract features of backbone layers for images or a dataset into the feature cache.

    The images are a folder (--images), a dataset (--dataset), or a task's dataset at the task's
    image size (--task), as `eegbench run` extracts them.
    """
    from eegbench.backbones.features import check_extraction_options
    from eegbench.data.images import dataset_image_sets, image_sets

    options = {"pooling": pooling, "weights": weights, "image_size": image_size, "batch_size": batch_size,
               "num_workers": num_workers, "precision": precision}
    check_extraction_options(backbone, _csv(layers) or [], **options)  # before any image or dataset is read
    if task is not None:
        if dataset is not None or images is not None:
            raise InvalidInputError("--task already names the images; drop --dataset and --images.")
        from eegbench.plan import resolve_task

        resolved = resolve_task(task, backbone, data_root=data_root)
        sets = dataset_image_sets(resolved.dataset)
        options["image_size"] = image_size or resolved.task.features.image_size
    else:
        sets = image_sets(images=images, dataset=dataset, data_root=data_root)
    extracted = _extract_api()(backbone, _csv(layers) or [], sets, device=device, **options)
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
def features_layers_cmd(
    backbone: Annotated[str, typer.Argument(help="Backbone name (see `eegbench list backbones`).")],
    image_size: ImageSizeOpt = None,
    as_json: JsonOpt = False,
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
def features_ls_cmd(backbone: BackboneOpt = None, as_json: JsonOpt = False) -> None:
    """What the feature cache holds: one row per backbone, layer and image set, with its size.

    With --backbone, only that backbone's entries.
    """
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

@app.command(context_settings=api_defaults(lambda: eegbench.check_submission))
def check(
    submission: Annotated[str, typer.Argument(help="A submission folder (submissions/<id>) or id.")],
    task: TaskOpt = None,
    subjects: SubjectsOpt = None,
    epochs: EpochsOpt = None,
    hp: HpOpt = None,
    encoder: EncoderOpt = None,
    isolation: IsolationOpt = None,
) -> None:
    """Validate a submission and run it on the synthetic task on CPU, next to `final`."""
    report = eegbench.check_submission(submission, task, subjects=_csv(subjects),
                                       hyperparameters=_hyperparameters(hp, epochs=epochs, encoder=encoder),
                                       isolation=isolation)
    out(f"Submission {report.submission.id!r} ({report.submission.folder}) on {report.result.task.id}: "
        f"metadata, import and interface OK; ran in {report.seconds:.0f} s with isolation {report.isolation!r}.\n")
    out(report.table())
    for warning in report.warnings:
        console.print(f"[yellow]Warning:[/yellow] {warning}", markup=True, highlight=False)
    out("\nCheck passed.")


# --- reproduce: re-run a recorded configuration --------------------------------------------------

def _reproduce_api() -> Callable[..., Any]:
    from eegbench import reproduce

    return reproduce


@app.command(context_settings=api_defaults(_reproduce_api))
def reproduce(
    result: Annotated[Path, typer.Argument(help="A result file (JSON) written by `eegbench run`.")],
    task: TaskOpt = None,
    device: DeviceOpt = None,
    data_root: DataRootOpt = None,
    weights: WeightsOpt = None,
    tolerance: Annotated[float, typer.Option(
        help="Largest accepted |difference| of a task metric, in points of %; exit code 1 beyond it.")] = 1.0,
    attest: Annotated[bool, typer.Option(
        "--attest", help="Sign the re-run off: file an attestation record beside the results (trust level "
        "'reproduced' on the board when the scores agree).")] = False,
    by: Annotated[str | None, typer.Option(
        help="Who signs the attestation off (default: git's user.name <user.email>, else $USER).")] = None,
) -> None:
    """Re-run exactly the configuration recorded in RESULT and report the difference in scores.

    The task is the recorded one; pass --task with the task file of the recorded version if the
    registered task has changed since.
    """
    from eegbench.attestation import attester, results_root

    check_positive("tolerance", tolerance, zero=True, unit="points")
    if by is not None and not attest:
        raise InvalidInputError("--by names who signs an attestation off: pass it with --attest.")
    if not result.is_file():
        raise InvalidInputError(f"Result file {result} does not exist.")
    results_dir = results_root(result) if attest else None  # found before the re-run, as is who signs
    signer = attester(by) if attest else None
    report = _reproduce_api()(result, task=task, device=device, data_root=data_root, weights=weights)
    out(report.table())
    for warning in report.warnings:
        console.print(f"[yellow]Warning:[/yellow] {warning}", markup=True, highlight=False)
    out("Every test trial got the same rank as recorded." if report.identical_trials
        else "Some test trials got a different rank than recorded.")
    if results_dir is not None:
        attestation, path = report.attest(results_dir, tolerance=tolerance / 100, by=signer)
        out(f"Attestation by {attestation.by} ({'agreed' if attestation.agreed else 'did not agree'}) written to "
            f"{path}.")
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
MaxAttemptsOpt = Annotated[int | None, typer.Option(help="Attempts per failing unit (default 3).")]


def _sweep_spec(sweep_file: Path | None, tasks: str | None, methods: str | None, backbones: str | None,
                layers: str | None, subjects: str | None, seeds: str | None, epochs: str | None,
                hp: list[str] | None, **settings: Any):
    """The sweep of a file, or of grid options; settings given on the command line win."""
    hp_values = parse_hp(hp, several=True)  # malformed input fails before the sweep machinery loads
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
    if epochs is not None:
        hp_values["epochs"] = [check_count("epochs", value) for value in _csv(epochs, int)]
    return sweep_from_options(tasks=_csv(tasks), methods=_csv(methods), backbones=_csv(backbones),
                              layers=_csv(layers), subjects=_csv(subjects), seeds=_csv(seeds, int), hp=hp_values,
                              **settings)


@sweep_app.command("run")
def sweep_run(
    sweep_file: SweepFileArg = None,
    tasks: TasksOpt = None,
    methods: MethodsOpt = None,
    backbones: BackbonesOpt = None,
    layers: LayersOpt = None,
    subjects: SubjectsOpt = None,
    seeds: SeedsOpt = None,
    epochs: EpochsListOpt = None,
    hp: HpOpt = None,
    name: Annotated[str | None, typer.Option(help="Sweep name (folder of its jobs and logs).")] = None,
    results_dir: ResultsOpt = None,
    device: DeviceOpt = None,
    data_root: DataRootOpt = None,
    batch_units: BatchUnitsOpt = None,
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
    """Plan a sweep, skip finished units, and run the rest here or submit them as a Slurm job array.

    Without a sweep file, --tasks, --methods, --backbones, --layers (layer settings for the
    methods that take one; the others run once), --subjects, --seeds, --epochs and --hp describe
    one grid. The other options override the file's settings; those left out take the file's, else
    the defaults.
    """
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
        out(f"\n{outcome.plan.estimate_report()}")
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
def sweep_status(
    sweep_file: SweepFileArg = None,
    tasks: TasksOpt = None,
    methods: MethodsOpt = None,
    backbones: BackbonesOpt = None,
    layers: LayersOpt = None,
    subjects: SubjectsOpt = None,
    seeds: SeedsOpt = None,
    epochs: EpochsListOpt = None,
    hp: HpOpt = None,
    results_dir: ResultsOpt = None,
    max_attempts: MaxAttemptsOpt = None,
) -> None:
    """Units of a sweep that are done, running (who, log), failed (error, log) and remaining.

    The sweep is a file or grid options, as for `eegbench sweep run`.
    """
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


def _fractions(value: str | None) -> list[float] | None:
    """``"1/16,0.25,1"`` -> ``[0.0625, 0.25, 1.0]``."""
    from fractions import Fraction

    try:
        return None if value is None else [float(Fraction(v)) for v in _csv(value)]
    except (ValueError, ZeroDivisionError):
        raise InvalidInputError(f"Expected comma-separated fractions such as 0.25 or 1/4, got {value!r}.") from None


def _report_analysis(result: Any, plot: Path | None, as_json: bool, tables: list[str]) -> None:
    """Write the plot, then print the record (``--json``) or the tables."""
    plot_path = result.plot(plot or result.path.with_suffix(".png"))
    if as_json:
        out(json.dumps(result.record.model_dump(mode="json"), indent=2))
    else:
        out("\n\n".join(tables))
    console.print(f"Wrote {result.path} and {plot_path}.", highlight=False)


def _data_scaling_api() -> Callable[..., Any]:
    from eegbench.analyses import data_scaling

    return data_scaling


def _backbone_scaling_api() -> Callable[..., Any]:
    from eegbench.analyses import backbone_scaling

    return backbone_scaling


def _rsa_api() -> Callable[..., Any]:
    from eegbench.analyses import rsa

    return rsa


@scaling_app.command("data", context_settings=api_defaults(_data_scaling_api, _run_api))
def scaling_data(
    task: TaskOpt = None,
    method: MethodOpt = None,
    backbone: BackboneOpt = None,
    layer: LayerOpt = None,
    fractions: Annotated[str | None, typer.Option(
        help="Comma-separated fractions of the training images, e.g. 1/16,1/4,1 (default 1/16,1/8,1/4,1/2,1).")] = None,
    repetitions: Annotated[str | None, typer.Option(
        help="Comma-separated test repetition counts (default 1,2,4,... and all).")] = None,
    subjects: SubjectsOpt = None,
    seeds: SeedsOpt = None,
    epochs: EpochsOpt = None,
    hp: HpOpt = None,
    device: DeviceOpt = None,
    results_dir: ResultsOpt = None,
    overwrite: OverwriteOpt = None,
    data_root: DataRootOpt = None,
    weights: WeightsOpt = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train on nested fractions of the training images; fit accuracy against log(amount)."""
    result = _data_scaling_api()(task, method, backbone, layer, fractions=_fractions(fractions),
                                 repetitions=_csv(repetitions, int), subjects=_csv(subjects), seeds=_csv(seeds, int),
                                 hyperparameters=_hyperparameters(hp, epochs=epochs), device=device,
                                 results_dir=results_dir, overwrite=overwrite, data_root=data_root, weights=weights)
    _report_analysis(result, plot, as_json, [result.title(), result.table(), result.repetition_table(),
                                             result.summary()])


@scaling_app.command("backbones", context_settings=api_defaults(_backbone_scaling_api, _run_api))
def scaling_backbones(
    task: TaskOpt = None,
    version: Annotated[int | None, typer.Option(help="Task version (default: the latest with results).")] = None,
    results_dir: ResultsOpt = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy against backbone parameter count from existing results (final vs selected layer)."""
    result = _backbone_scaling_api()(results_dir, task, version)
    _report_analysis(result, plot, as_json, [result.table(), result.summary()])


@app.command(context_settings=api_defaults(_rsa_api, _run_api))
def rsa(
    task: TaskOpt = None,
    backbone: BackboneOpt = None,
    layers: LayersOpt = None,
    subjects: SubjectsOpt = None,
    n_permutations: Annotated[int | None, typer.Option(
        "--permutations", help="Permutations of the image labels.")] = None,
    n_splits: Annotated[int | None, typer.Option(
        "--splits", help="Split-half partitions for the noise ceiling.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of permutations and splits.")] = None,
    device: DeviceOpt = None,
    results_dir: ResultsOpt = None,
    data_root: DataRootOpt = None,
    weights: WeightsOpt = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Time-resolved representational similarity of every backbone layer with the test responses.

    Without --layers, every layer and the final embedding.
    """
    result = _rsa_api()(task, backbone, layers=_csv(layers), subjects=_csv(subjects), n_permutations=n_permutations,
                        n_splits=n_splits, seed=seed, device=device, results_dir=results_dir, data_root=data_root,
                        weights=weights)
    _report_analysis(result, plot, as_json, [result.table(), result.summary()])


def _pitfalls_api() -> Callable[..., Any]:
    from eegbench.pitfalls import run_pitfalls

    return run_pitfalls


@app.command(context_settings=api_defaults(_pitfalls_api))
def pitfalls(
    method: MethodOpt = None,
    task: TaskOpt = None,
    backbone: BackboneOpt = None,
    layer: LayerOpt = None,
    only: Annotated[str | None, typer.Option(
        "--only", help="Comma-separated pitfalls to measure (default: all): test-checkpoint, test-layer, "
                       "blurred-gallery, centroid-gallery, augmented-gallery, mvnn-test-covariance, "
                       "channels-63-vs-17.")] = None,
    subjects: SubjectsOpt = None,
    seeds: SeedsOpt = None,
    epochs: EpochsOpt = None,
    hp: HpOpt = None,
    device: DeviceOpt = None,
    results_dir: ResultsOpt = None,
    data_root: DataRootOpt = None,
    weights: WeightsOpt = None,
    isolation: IsolationOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What protocol choices do to scores: the honest task against the same units with one pitfall switched on.

    Writes a pitfall record under <results-dir>/_pitfalls/ (never read by the main tables); `eegbench
    leaderboard` shows it in the section "What protocol choices do to scores" of the task's page.
    """
    from eegbench.pitfalls import check_pitfalls, summary_table

    names = check_pitfalls(_csv(only))  # before anything is loaded
    record, path = _pitfalls_api()(method, task, backbone, layer, only=names, subjects=_csv(subjects),
                                   seeds=_csv(seeds, int), hyperparameters=_hyperparameters(hp, epochs=epochs),
                                   device=device, results_dir=results_dir, data_root=data_root, weights=weights,
                                   isolation=isolation)
    if as_json:
        out(record.model_dump_json(indent=2))
        return
    out(f"{summary_table(record)}\n\nWritten to {path}")


# --- results: list, export to a Parquet dataset, push to the Hub -----------------------------------------

results_app = typer.Typer(help="List a results folder; export it as a Parquet dataset and push that to the Hub.",
                          no_args_is_help=True)
app.add_typer(results_app, name="results")
ExportDirArg = Annotated[Path, typer.Argument(help="Folder of the export (README.md, eegbench-export.json, "
                                                   "one folder of Parquet files per config).")]


@results_app.command("ls")
def results_ls(results_dir: ResultsOpt = DEFAULT_RESULTS_DIR, as_json: JsonOpt = False) -> None:
    """What a results folder holds: one row per task, version, method and backbone."""
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from eegbench.attestation import Attestations
    from eegbench.results_dataset import results_entries

    entries = results_entries(eegbench.load_results(results_dir), Attestations.load(results_dir))
    if as_json:
        out(json.dumps([asdict(entry) for entry in entries], indent=2))
        return
    if not entries:
        out(f"No result files in {results_dir}.")
        return
    # one (header, cell) pair per column: a new column is one more pair
    columns: list[tuple[str, Callable[[Any], str]]] = [
        ("task", lambda e: e.task), ("version", lambda e: str(e.version)), ("method", lambda e: e.method),
        ("backbone", lambda e: e.backbone), ("records", lambda e: str(e.records)),
        ("subjects", lambda e: str(len(e.subjects))), ("seeds", lambda e: ",".join(map(str, e.seeds))),
        ("trust", lambda e: e.trust)]
    table = Table(title=f"Results in {escape(str(results_dir))}")
    for header, _ in columns:
        table.add_column(header, overflow="fold")  # a narrow terminal wraps ids, never cuts them
    for entry in entries:
        table.add_row(*(escape(cell(entry)) for _, cell in columns))
    Console(soft_wrap=True).print(table)


@results_app.command("export")
def results_export(out_dir: ExportDirArg, results_dir: ResultsOpt = DEFAULT_RESULTS_DIR) -> None:
    """Write every record of a results folder (per-trial ranks, analyses, pitfalls) as a Parquet dataset."""
    from eegbench.results_dataset import export_results

    manifest = export_results(results_dir, out_dir)
    counts = ", ".join(f"{n} {kind}" for kind, n in manifest.counts.items())
    out(f"Exported {counts} from {results_dir} to {out_dir}/ (its pages: `eegbench leaderboard --from-dataset "
        f"{out_dir} --out DIR`).")


@results_app.command("push")
def results_push(
    export_dir: ExportDirArg,
    repo_id: Annotated[str, typer.Option("--repo-id", help="Hugging Face Hub dataset repository, ORG/NAME.")],
    private: Annotated[bool | None, typer.Option("--private/--public", help="Visibility of a new repository "
                                                                             "(default: the Hub's).")] = None,
) -> None:
    """Upload an export to a Hub dataset repository (created if needed); re-run to resume an interrupted push.

    The token is the one saved by `hf auth login`, or $HF_TOKEN.
    """
    from eegbench.results_dataset import push_results

    url = push_results(export_dir, repo_id, private=private)
    out(f"Pushed {export_dir} to https://huggingface.co/datasets/{repo_id} ({url}); build its pages with "
        f"`eegbench leaderboard --from-dataset hub:{repo_id} --out DIR`.")


def main() -> None:
    """Console-script entry point (errors are mapped to exit codes by :meth:`EegbenchGroup.main`)."""
    from eegbench._compat import keep_freed_memory

    keep_freed_memory()
    setup_logging()
    app()


if __name__ == "__main__":
    main()
