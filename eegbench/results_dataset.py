"""Results as a dataset: a results folder exported to Parquet, pushed to the Hugging Face Hub, loaded back.

:func:`export_results` writes every record a leaderboard is built from (:class:`~eegbench.leaderboard.BoardRecords`)
as a Parquet dataset with the ``datasets`` library, one config per kind of record::

    <out>/README.md                          dataset card: configs, license, the tasks and their protocols
    <out>/eegbench-export.json               what the export holds (:class:`ExportManifest`), checked on load
    <out>/records/train-00000-of-00001.parquet
    <out>/analyses/train-00000-of-00001.parquet
    <out>/pitfalls/train-00000-of-00001.parquet
    <out>/attestations/train-00000-of-00001.parquet

One row per record, in the order of the record files: typed scalar columns to browse and filter (task,
version, method, backbone, layer, subject, seed, main score...; result rows also carry the per-trial ranks
as ``n_better`` and ``n_tied``) and the whole record as JSON in ``record``, so that loading back is
lossless: :func:`load_results_dataset` validates every record again (records are untrusted input) and
:func:`~eegbench.leaderboard.write_leaderboard` builds the same pages as from the folder itself. A kind
of record that has no records gets no config (``datasets`` cannot read an empty Parquet split).

:func:`push_results` uploads an export to a dataset repository of the Hub with ``huggingface_hub``
(``upload_folder``, which resumes an interrupted upload when re-run, with ``hf_xet`` as
``huggingface_hub`` 2 installs it); ``hub:ORG/NAME`` names such a
repository wherever a source is read. Any copy loads with ``datasets.load_dataset(SOURCE, "records")``.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from eegbench._check import DataError, InvalidInputError, MissingDataError, describe_validation_error
from eegbench._io import atomic_write_text, check_writable_folder, explain_os_errors
from eegbench._version import __version__
from eegbench.attestation import AttestationRecord, Attestations, Trust
from eegbench.leaderboard import BoardRecords, escape_markdown, group_by_task, read_board_records
from eegbench.metrics import RANK_METRICS
from eegbench.pitfalls import PitfallRecord
from eegbench.records import AnalysisRecord, ResultRecord
from eegbench.results import load_results

__all__ = ["EXPORT_FORMAT", "ExportManifest", "ResultsEntry", "export_results", "load_results_dataset",
           "push_results", "results_entries"]

#: version of the export's layout and columns (:class:`ExportManifest`)
EXPORT_FORMAT = 1
MANIFEST = "eegbench-export.json"
#: the one Parquet file of each config (its ``train`` split)
PARQUET_FILE = "train-00000-of-00001.parquet"
CARD = "README.md"
#: the license of the exported records, stated in the dataset card
LICENSE = "cc-by-4.0"
#: a source on the Hub: ``hub:`` and a repository id ``ORG/NAME``
HUB_PREFIX = "hub:"
_REPO_ID = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
Kind = Literal["records", "analyses", "pitfalls", "attestations"]


class ExportManifest(BaseModel):
    """What an export holds, written beside its Parquet files: loading checks the row counts, so that a
    truncated copy or download is refused rather than silently missing records."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = EXPORT_FORMAT
    eegbench: str
    #: rows of each config (a config with no rows has no file)
    counts: dict[Kind, int]


@dataclass(frozen=True)
class _Config:
    """One config of the dataset: its typed columns and how a record becomes a row and a row a record."""

    description: str
    columns: dict[str, str]  # column -> type: a ``datasets`` Value dtype, or "list[int32]"
    row: Callable[[Any], dict[str, Any]]
    parse: Callable[[str], Any]

    def features(self) -> Any:
        from datasets import Features, List, Value

        return Features({name: List(Value(kind[5:-1])) if kind.startswith("list[") else Value(kind)
                         for name, kind in {**self.columns, "record": "string"}.items()})


def _result_row(record: ResultRecord) -> dict[str, Any]:
    layers = record.report.layers
    return {"path": record.key.relative_path().as_posix(), "task": record.task.id, "task_version": record.task.version,
            "method": record.method.id, "method_version": record.method.version, "hp_tag": record.method.hp_tag,
            "backbone": record.backbone.name, "layer_setting": record.backbone.layer_setting,
            "layer": layers[0].layer.name if len(layers) == 1 else None, "subject": record.subject,
            "seed": record.seed, "main_metric": record.task.main_score, "main_score": record.main_score,
            "n_test_trials": record.n_test_trials, "n_gallery": record.n_gallery,
            "n_better": record.per_trial.n_better, "n_tied": record.per_trial.n_tied,
            "eegbench": record.environment.eegbench, "created": record.created}


def _analysis_row(record: AnalysisRecord) -> dict[str, Any]:
    return {"path": record.relative_path().as_posix(), "kind": record.kind, "name": record.name,
            "task": record.task["id"], "task_version": record.task["version"], "created": record.created}


def _pitfall_row(record: PitfallRecord) -> dict[str, Any]:
    return {"path": record.relative_path().as_posix(), "task": record.task.id, "task_version": record.task.version,
            "method": record.method, "backbone": record.backbone, "layer_setting": record.layer_setting,
            "pitfalls": ",".join(p.name for p in record.pitfalls if p.status == "applied"), "created": record.created}


def _attestation_row(record: AttestationRecord) -> dict[str, Any]:
    return {"unit": record.unit, "record_sha256": record.record_sha256, "by": record.by, "agreed": record.agreed,
            "identical_trials": record.identical_trials, "created": record.created}


CONFIGS: dict[Kind, _Config] = {
    "records": _Config(
        "one row per result record (task, method, backbone, layer setting, hyperparameters, subject, seed): "
        "scores, per-trial ranks (`n_better`, `n_tied`: gallery images ranked above and tied with the true one)",
        {"path": "string", "task": "string", "task_version": "int32", "method": "string", "method_version": "string",
         "hp_tag": "string", "backbone": "string", "layer_setting": "string", "layer": "string", "subject": "string",
         "seed": "int64", "main_metric": "string", "main_score": "float64", "n_test_trials": "int32",
         "n_gallery": "int32", "n_better": "list[int32]", "n_tied": "list[int32]", "eegbench": "string",
         "created": "string"},
        _result_row, lambda text: ResultRecord.from_disk(json.loads(text))),
    "analyses": _Config(
        "one row per analysis record (data scaling, backbone scaling, RSA)",
        {"path": "string", "kind": "string", "name": "string", "task": "string", "task_version": "int32",
         "created": "string"},
        _analysis_row, lambda text: AnalysisRecord.from_disk(json.loads(text))),
    "pitfalls": _Config(
        "one row per protocol-pitfall record (`eegbench pitfalls`): never part of the main tables",
        {"path": "string", "task": "string", "task_version": "int32", "method": "string", "backbone": "string",
         "layer_setting": "string", "pitfalls": "string", "created": "string"},
        _pitfall_row, PitfallRecord.model_validate_json),
    "attestations": _Config(
        "one row per attestation (`eegbench reproduce --attest`): a maintainer's re-run of the record whose "
        "content hash is `record_sha256` agreed with it; such entries are `reproduced` on the board",
        {"unit": "string", "record_sha256": "string", "by": "string", "agreed": "bool", "identical_trials": "bool",
         "created": "string"},
        _attestation_row, lambda text: AttestationRecord.from_disk(json.loads(text))),
}


def _records_of(board: BoardRecords, kind: Kind) -> Sequence[Any]:
    return {"records": board.results, "analyses": board.analyses, "pitfalls": board.pitfalls,
            "attestations": board.attestations}[kind]


# --- export -----------------------------------------------------------------------------------------------

def export_results(results_dir: str | Path, out_dir: str | Path) -> ExportManifest:
    """Write every record of ``results_dir`` as a Parquet dataset with its card into ``out_dir``.

    The same records always give the same files. ``out_dir`` must be new, empty or an earlier export
    (whose files are replaced; a config that has no records any more is removed), outside the results folder.
    """
    _check_export_folder(Path(out_dir), Path(results_dir))
    board = read_board_records(results_dir, load_results(results_dir))  # load_results: a missing folder is an error
    out = check_writable_folder(Path(out_dir), "pass another export folder")
    manifest = ExportManifest(eegbench=__version__, counts={kind: len(_records_of(board, kind)) for kind in CONFIGS})
    with explain_os_errors(out, action="write the export to", instead="pass another export folder"):
        for kind, config in CONFIGS.items():
            path = out / kind / PARQUET_FILE
            records = _records_of(board, kind)
            if records:
                _write_parquet(config, records, path)
            else:
                path.unlink(missing_ok=True)
        atomic_write_text(out / CARD, dataset_card(board, manifest))
        atomic_write_text(out / MANIFEST, manifest.model_dump_json(indent=2) + "\n")
    return manifest


def _check_export_folder(out: Path, results_dir: Path) -> None:
    """Refuse an export folder inside the results folder (its files would mix with the records) or one that
    holds other files (its README.md would be overwritten)."""
    if out.resolve().is_relative_to(results_dir.resolve()):
        raise InvalidInputError(f"The export folder {out} is inside the results folder {results_dir}; pass a "
                                "folder outside it.")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise InvalidInputError(f"{out} holds other files and no earlier export; pass a new or empty folder.")


def _write_parquet(config: _Config, records: Sequence[Any], path: Path) -> None:
    """The rows of ``records`` as one Parquet file, written whole or not at all."""
    from datasets import Dataset

    columns: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        for name, value in {**config.row(record), "record": record.model_dump_json()}.items():
            columns[name].append(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    with _quiet_datasets():
        Dataset.from_dict(dict(columns), features=config.features()).to_parquet(str(partial))
    partial.replace(path)


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Without the tqdm bars of ``datasets`` (eegbench reports progress itself), restored afterwards."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def dataset_card(board: BoardRecords, manifest: ExportManifest) -> str:
    """The README.md of an export: YAML front matter (license, tags, one config per kind of record) and
    what each task measured, as the task files said (from the records, so each task version is the one run)."""
    import yaml

    kinds = [kind for kind, n in manifest.counts.items() if n]
    front = {"license": LICENSE, "pretty_name": "eegbench results", "tags": ["eeg", "meg", "neuroscience", "benchmark",
                                                                            "eegbench"],
             "configs": [{"config_name": kind, "data_files": [{"split": "train", "path": f"{kind}/*.parquet"}],
                          **({"default": True} if kind == "records" else {})} for kind in kinds]}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "", "# eegbench results", "",
             "Result records of [eegbench](https://github.com/eegbench/eegbench), the benchmark for decoding seen "
             "images from EEG and MEG by 200-way zero-shot retrieval, exported with `eegbench results export` "
             f"(eegbench {manifest.eegbench}, export format {manifest.format}). The leaderboard pages are built from "
             "this dataset alone: `eegbench leaderboard --from-dataset hub:ORG/NAME --out DIR`.", "",
             "## Configs", "", "| Config | Rows | What a row is |", "|---|---|---|"]
    lines += [f"| `{kind}` | {manifest.counts[kind]} | {CONFIGS[kind].description} |" for kind in kinds]
    lines += ["", "Every row holds its whole record as JSON in `record` (the eegbench schema named by its "
              "`schema_version`), beside the typed columns. `datasets.load_dataset(SOURCE, \"records\")` loads a "
              "config, where SOURCE is this repository's id or a local copy.", "", "## Tasks", ""]
    lines += _task_lines(board.results)
    return "\n".join(lines) + "\n"


def _task_lines(records: Sequence[ResultRecord]) -> list[str]:
    """Per (task, version) of the records: its description, protocol, data, metrics and what was run."""
    md = escape_markdown
    groups = group_by_task(records)
    if not groups:
        return ["No result records yet.", ""]
    lines = []
    for (task, version), mine in groups.items():
        info, dataset = mine[0].task, mine[0].dataset
        chance = ", ".join(f"{md(metric)} {value:g}" if metric in RANK_METRICS else f"{md(metric)} {100 * value:g} %"
                           for metric, value in info.chance.items())
        methods = ", ".join(sorted({md(r.method.id) for r in mine}))
        lines += [f"### {task} (version {version})", "", md(info.description), "",
                  f"- Protocol: {md(info.protocol)}, inference {md(info.inference)}; data: {md(dataset.name)} "
                  f"({md(dataset.variant)}), {len(dataset.channels)} channels, {dataset.sfreq:g} Hz.",
                  f"- Metrics: {', '.join(md(m) for m in info.metrics)} (main: {md(info.main_score)}); chance: "
                  f"{chance}.",
                  f"- {len(mine)} records of {len({r.subject for r in mine})} subjects; methods: {methods}.", ""]
    return lines


# --- load ---------------------------------------------------------------------------------------------

def load_results_dataset(source: str | Path) -> BoardRecords:
    """The records of an export: a local folder, or ``hub:ORG/NAME`` (a dataset repository on the
    Hugging Face Hub, downloaded with ``snapshot_download`` into its cache, or taken from the cache when
    offline). Every record is validated again; a folder that is no export, or whose row counts differ from
    its manifest, is refused."""
    folder = _local_copy(source)
    manifest = _read_manifest(folder)
    loaded: dict[Kind, list[Any]] = {}
    for kind, config in CONFIGS.items():
        expected = manifest.counts.get(kind, 0)  # an export made before a kind existed has none of it
        loaded[kind] = _read_parquet(config, folder / kind / PARQUET_FILE, kind) if expected else []
        if len(loaded[kind]) != expected:
            raise DataError(f"The export {folder} holds {len(loaded[kind])} {kind} rows, its manifest "
                            f"{expected}: it is incomplete; export or download it again.")
    return BoardRecords(loaded["records"], loaded["analyses"], loaded["pitfalls"], loaded["attestations"])


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it names a Hub repository as ``ORG/NAME``, else one InvalidInputError."""
    if not _REPO_ID.match(repo_id):
        raise InvalidInputError(f"Expected a Hugging Face Hub dataset id ORG/NAME (letters, digits, '-', '_', '.'), "
                                f"got {repo_id!r}.")
    return repo_id


def _local_copy(source: str | Path) -> Path:
    """The folder of ``source``: itself, or the Hub snapshot of ``hub:ORG/NAME``."""
    text = str(source)
    if not text.startswith(HUB_PREFIX):
        folder = Path(source)
        if not folder.is_dir():
            raise InvalidInputError(f"Results dataset {folder} is not a folder; pass the folder written by "
                                    "`eegbench results export`, or hub:ORG/NAME.")
        return folder
    repo_id = check_repo_id(text[len(HUB_PREFIX):])
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(huggingface_hub.snapshot_download(repo_id, repo_type="dataset"))
    except LocalEntryNotFoundError:
        raise MissingDataError(f"The results dataset {repo_id} is not in the Hub cache and the Hub cannot be "
                               "reached (offline?); connect once, or pass a local export folder.") from None
    except HfHubHTTPError as err:
        raise MissingDataError(f"Cannot download the results dataset {repo_id} from the Hub: "
                               f"{' '.join(str(err).split())}") from None


def _read_manifest(folder: Path) -> ExportManifest:
    path = folder / MANIFEST
    if not path.is_file():
        raise InvalidInputError(f"{folder} is not a results export (no {MANIFEST}); write one with "
                                "`eegbench results export DIR`.")
    try:
        return ExportManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as err:
        raise DataError(describe_validation_error(err, f"Export manifest {path}")) from None


def _read_parquet(config: _Config, path: Path, kind: str) -> list[Any]:
    """The records of one config, validated; read into memory through a fresh cache that is then deleted,
    so that no earlier load is ever served."""
    from datasets import Dataset

    if not path.is_file():
        raise DataError(f"The export lacks {path}; export or download it again.")
    with tempfile.TemporaryDirectory(prefix="eegbench-dataset-") as cache, _quiet_datasets():
        rows = Dataset.from_parquet(str(path), cache_dir=cache, keep_in_memory=True)["record"]
    records = []
    for i, text in enumerate(rows):
        try:
            records.append(config.parse(text))
        except (ValueError, DataError) as err:  # ValidationError is a ValueError
            problem = describe_validation_error(err, f"{kind} row {i} of {path}") if isinstance(
                err, ValidationError) else f"{kind} row {i} of {path}: {err}"
            raise DataError(problem) from None
    return records


# --- push ---------------------------------------------------------------------------------------------

def push_results(folder: str | Path, repo_id: str, token: str | None = None, *, private: bool | None = None) -> str:
    """Upload an export (:func:`export_results`) to the Hub dataset repository ``repo_id``, created if
    needed (``private``: its visibility; None: the Hub's default); returns the URL of the commit.
    Re-running an interrupted push resumes it (``upload_folder`` skips files already committed and data
    already uploaded)."""
    check_repo_id(repo_id)
    source = Path(folder)
    if not source.is_dir():
        raise InvalidInputError(f"Export folder {source} does not exist; write it with `eegbench results export`.")
    manifest = _read_manifest(source)
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = huggingface_hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(source),
                                   allow_patterns=[CARD, MANIFEST, *(f"{kind}/*.parquet" for kind in CONFIGS)],
                                   delete_patterns=[f"{kind}/*.parquet" for kind, n in manifest.counts.items() if not n]
                                   or None,  # configs that have no records any more
                                   commit_message=f"eegbench results export (eegbench {manifest.eegbench})")
    except (HfHubHTTPError, OfflineModeIsEnabled) as err:
        raise InvalidInputError(f"Cannot push to the Hub dataset {repo_id}: {' '.join(str(err).split())}; check the "
                                "network, the id and the token (`hf auth login` or $HF_TOKEN).") from None
    return str(commit.commit_url)


# --- listing ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResultsEntry:
    """What a results folder holds for one (task, version, method, backbone): a row of ``eegbench results ls``."""

    task: str
    version: int
    method: str
    backbone: str
    records: int
    subjects: tuple[str, ...]
    seeds: tuple[int, ...]
    #: ``reproduced`` when an agreeing attestation names every one of its records
    trust: Trust


def results_entries(records: Sequence[ResultRecord], attestations: Attestations = Attestations()) -> list[ResultsEntry]:
    """One :class:`ResultsEntry` per (task, version, method, backbone) of ``records``, sorted, with its trust
    level by ``attestations``."""
    groups: dict[tuple[str, int, str, str], list[ResultRecord]] = defaultdict(list)
    for record in records:
        groups[(record.task.id, record.task.version, record.method.id, record.backbone.name)].append(record)
    return [ResultsEntry(*key, len(mine), tuple(sorted({r.subject for r in mine})),
                         tuple(sorted({r.seed for r in mine})), attestations.entry_trust(mine))
            for key, mine in sorted(groups.items())]
