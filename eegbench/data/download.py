"""Fetch the THINGS datasets from their public mirrors, resumably, and verify every file.

What to fetch for each dataset, variant and subject is listed in a manifest packaged with eegbench
(``eegbench/data/manifests/<dataset>.json``): where each file lands under the data root, its source,
the variants and subject it serves and, where published, its size and sha256. The variants and
subjects themselves are the dataset's :class:`~eegbench.data.spec.DatasetSpec`'s, and a manifest
naming others is refused. Three kinds of source are supported:

* ``huggingface``: a dataset repository on the Hugging Face Hub at a pinned revision, fetched with
  :func:`huggingface_hub.hf_hub_download` (resumable, with its own progress bar);
* ``http``: a fixed URL (figshare, OpenNeuro's S3 with a pinned ``versionId``), fetched with HTTP
  Range requests so an interrupted download resumes from its ``.part`` file;
* ``osf``: files of an OSF storage component, found through the OSF API by path (glob patterns
  allowed) and fetched like ``http``; OSF publishes a sha256 for each file.

Each downloaded file is checked against the manifest's sha256, else against the one its source
publishes; the result is recorded in ``<root>/.eegbench/downloads.json`` so :func:`verify` can
re-check the root later (offline). A file without any published checksum is recorded and reported as
"recorded" rather than "verified". Archives marked ``extract`` are unpacked beside themselves.
"""

from __future__ import annotations

import fnmatch
import http.client
import json
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eegbench._check import DataError, InvalidInputError, MissingDataError, unknown_name
from eegbench._io import FileDigests, atomic_write_json
from eegbench._progress import logger, progress
from eegbench._version import __version__
from eegbench.data.base import check_subjects
from eegbench.data.registry import get_dataset_spec, list_datasets

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
RECORD_FILE = ".eegbench/downloads.json"
OSF_API = "https://api.osf.io/v2"
_CHUNK = 1 << 20
_TIMEOUT_S = 60
_ATTEMPTS = 3


@dataclass(frozen=True)
class ManifestFile:
    """One entry of a manifest.

    Attributes
    ----------
    path : str
        Where the file lands, relative to the data root (for ``osf`` globs: the folder the matched
        files land in, keeping their path inside the component).
    source : str
        Key of the manifest's ``sources``.
    remote : str
        The file in the source: a repository path (``huggingface``), a URL (``http``), or a path or
        glob pattern inside the component (``osf``).
    size, sha256 : int or str, optional
        As published; None when not known to eegbench.
    subject : int, optional
        The subject the file belongs to (None: shared by all subjects).
    variants : tuple of str
        Variants that need the file (``"*"``: all).
    extract : bool
        Unpack the (zip) archive into the folder it lands in.
    images : bool
        Part of the image set (shared by all variants; ``--no-images`` skips it).
    note : str, optional
        Shown after the download (e.g. a license step the user must take).
    """

    path: str
    source: str
    remote: str
    size: int | None = None
    sha256: str | None = None
    subject: int | None = None
    variants: tuple[str, ...] = ("*",)
    extract: bool = False
    images: bool = False
    note: str | None = None

    @property
    def key(self) -> str:
        """Identifies the entry in the download record."""
        return f"{self.source}:{self.remote}"

    @property
    def is_glob(self) -> bool:
        return any(ch in self.remote for ch in "*?[")


@dataclass(frozen=True)
class Manifest:
    """The packaged download manifest of one dataset."""

    dataset: str
    default_variant: str
    variants: tuple[str, ...]
    subjects: tuple[int, ...]
    sources: dict[str, dict[str, Any]]
    files: tuple[ManifestFile, ...]

    def select(self, variant: str | None = None, subjects: Sequence[int] | None = None,
               images: bool = True) -> list[ManifestFile]:
        """The files a variant needs, for ``subjects`` (default all), with or without the images."""
        variant = variant or self.default_variant
        if variant not in self.variants:
            raise unknown_name(f"{self.dataset} variant", variant, self.variants)
        chosen = set(self.subjects if subjects is None else check_subjects(subjects))
        outside = sorted(chosen - set(self.subjects))
        if outside:
            raise InvalidInputError(f"{self.dataset} has subjects {self.subjects[0]}..{self.subjects[-1]}; got "
                                    f"{outside}.")
        return [f for f in self.files
                if ("*" in f.variants or variant in f.variants) and (f.subject is None or f.subject in chosen)
                and (images or not f.images)]


def list_manifests() -> list[str]:
    """Datasets with a packaged manifest."""
    return [name for name in list_datasets() if get_dataset_spec(name).manifest]


def load_manifest(dataset: str) -> Manifest:
    """The packaged manifest of ``dataset`` (``"things-eeg2"``, ``"things-meg"``).

    The file lists the files and their sources; the variants, default variant and subjects are
    the dataset's (its :class:`~eegbench.data.spec.DatasetSpec`), and every file must name only
    those.
    """
    if dataset not in list_manifests():
        raise unknown_name("downloadable dataset", dataset, list_manifests())
    spec = get_dataset_spec(dataset)
    path = MANIFEST_DIR / f"{dataset}.json"
    raw = json.loads(path.read_text())
    files = tuple(ManifestFile(**{**entry, "variants": tuple(entry.get("variants", ("*",)))})
                  for entry in raw["files"])
    manifest = Manifest(spec.name, spec.default_variant, tuple(spec.variants), spec.subjects, raw["sources"], files)
    problems = manifest_problems(manifest, raw)
    if problems:  # a packaging mistake, caught by tests/test_dataset_specs.py before a release
        raise DataError(f"{path} does not match the {dataset} dataset: {'; '.join(problems)}.")
    return manifest


def manifest_problems(manifest: Manifest, raw: dict) -> list[str]:
    """What in the manifest file ``raw`` names other than its dataset's spec (``manifest``) does; empty when nothing.

    (That every variant has files for every subject is the packaged manifests' test, not a rule:
    a manifest may also list only some files.)
    """
    problems = [] if raw.get("dataset") == manifest.dataset else [f"it names the dataset {raw.get('dataset')!r}"]
    # Declared once, in the spec: a second declaration here could only drift from it.
    problems += [f"it declares {key!r}, which belongs to the dataset's spec"
                 for key in ("variants", "default_variant", "subjects") if key in raw]
    declared = set(manifest.variants) | {"*"}
    for entry in manifest.files:
        unknown = sorted(set(entry.variants) - declared)
        if unknown:
            problems.append(f"{entry.path} names unknown variants {unknown}")
        if entry.subject is not None and entry.subject not in manifest.subjects:
            problems.append(f"{entry.path} belongs to subject {entry.subject}, not one of {list(manifest.subjects)}")
        if entry.source not in manifest.sources:
            problems.append(f"{entry.path} has the unknown source {entry.source!r}")
    return problems


# --- the download record ----------------------------------------------------------------------------


class DownloadRecord:
    """``<root>/.eegbench/downloads.json``: what was fetched, its checksum and where that came from."""

    def __init__(self, root: Path) -> None:
        self.path = root / RECORD_FILE
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            self.data = {}
        self.data.setdefault("files", {})
        self.data.setdefault("entries", {})

    def file(self, rel: str) -> dict | None:
        return self.data["files"].get(rel)

    def add_file(self, rel: str, sha256: str, size: int, checksum: str, entry: ManifestFile) -> None:
        self.data["files"][rel] = {"sha256": sha256, "size": size, "checksum": checksum, "entry": entry.key}

    def entry_files(self, entry: ManifestFile) -> list[str]:
        return list(self.data["entries"].get(entry.key, {}).get("files", []))

    def set_entry(self, entry: ManifestFile, files: list[str], extracted: bool) -> None:
        self.data["entries"][entry.key] = {"files": files, "extracted": extracted}

    def extracted(self, entry: ManifestFile) -> bool:
        return bool(self.data["entries"].get(entry.key, {}).get("extracted"))

    def save(self) -> None:
        atomic_write_json(self.path, self.data)


# --- transports ---------------------------------------------------------------------------------------


def _request(url: str, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, headers={"User-Agent": f"eegbench/{__version__}", **(headers or {})})
    return urllib.request.urlopen(request, timeout=_TIMEOUT_S)


def _unreachable(what: str, url: str, dest: Path, err: BaseException) -> MissingDataError:
    reason = getattr(err, "reason", None) or err
    return MissingDataError(
        f"Cannot download {what} from {url} ({reason}). Connect to the internet and run the command again (a "
        f"partial download resumes), or fetch the file yourself and place it at {dest}.")


def http_download(url: str, dest: Path, *, size: int | None = None, description: str | None = None) -> Path:
    """Download ``url`` to ``dest`` with HTTP Range requests, resuming from ``dest.part``.

    The bytes go to ``<dest>.part`` and are renamed to ``dest`` once complete, so ``dest`` never
    holds a partial file. Connection drops are retried (resuming) up to 3 times; a host that cannot
    be reached fails at once with a message saying what to fetch and where to put it.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            _fetch_range(url, part, size, description or dest.name)
            break
        except (ConnectionError, TimeoutError, socket.timeout, http.client.IncompleteRead) as err:
            if attempt == _ATTEMPTS:
                raise _unreachable(dest.name, url, dest, err) from None
            logger.warning("Download of %s interrupted (%s); resuming (attempt %d of %d).", dest.name, err,
                           attempt + 1, _ATTEMPTS)
            time.sleep(attempt)
        except urllib.error.HTTPError as err:
            raise MissingDataError(f"Cannot download {dest.name} from {url}: HTTP {err.code} {err.reason}. "
                                   f"Fetch it yourself and place it at {dest}.") from None
        except urllib.error.URLError as err:
            raise _unreachable(dest.name, url, dest, err) from None
    if size is not None and part.stat().st_size != size:
        got = part.stat().st_size
        part.unlink()
        raise DataError(f"Downloaded {dest.name} from {url} has {got} bytes; {size} were expected. The partial file "
                        f"was removed; run the command again.")
    os.replace(part, dest)
    return dest


def _fetch_range(url: str, part: Path, size: int | None, description: str) -> None:
    start = part.stat().st_size if part.exists() else 0
    if size is not None and start == size:
        return
    if size is not None and start > size:
        part.unlink()
        start = 0
    try:
        response = _request(url, {"Range": f"bytes={start}-"} if start else None)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # nothing left to send: the partial file is already complete
            return
        raise
    with response:
        if start and response.status != 206:
            logger.info("%s: the server ignored the resume request; downloading from the start.", description)
            start = 0
        elif start:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != start:
                raise DataError(f"{url} answered the resume request from byte {start} with Content-Range "
                                f"{response.headers.get('Content-Range')!r}; delete {part} and retry.")
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else size
        with open(part, "ab" if start else "wb") as handle, \
                progress(f"Downloading {description}", total=total) as advance:
            advance(start)
            while block := response.read(_CHUNK):
                handle.write(block)
                advance(len(block))
    received = part.stat().st_size
    if total is not None and received < total:
        # A server that closes the connection early ends the body without an error: resume from here.
        raise http.client.IncompleteRead(b"", total - received)


def _osf_files(node: str) -> list[dict]:
    """Every file of an OSF storage component: materialized path, download URL, size, sha256."""
    files, pending = [], [f"{OSF_API}/nodes/{node}/files/osfstorage/"]
    while pending:
        url = pending.pop()
        try:
            with _request(url) as response:
                page = json.load(response)
        except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout) as err:
            raise MissingDataError(f"Cannot list the files of OSF component {node} ({url}: "
                                   f"{getattr(err, 'reason', err)}). Connect to the internet and run the command "
                                   f"again, or fetch the files from https://osf.io/{node}/ yourself.") from None
        for item in page.get("data", []):
            attributes = item["attributes"]
            if attributes["kind"] == "folder":
                pending.append(item["relationships"]["files"]["links"]["related"]["href"])
            else:
                hashes = (attributes.get("extra") or {}).get("hashes") or {}
                files.append({"path": attributes["materialized_path"].lstrip("/"), "url": item["links"]["download"],
                              "size": attributes.get("size"), "sha256": hashes.get("sha256")})
        if page.get("links", {}).get("next"):
            pending.append(page["links"]["next"])
    return files


# --- downloading --------------------------------------------------------------------------------------


@dataclass
class FileStatus:
    """The state of one file under a data root."""

    path: str
    status: Literal["ok", "recorded", "missing", "size mismatch", "checksum mismatch", "not extracted"]
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "recorded")


@dataclass
class DownloadReport:
    """What :func:`download` did."""

    root: Path
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _check_file(path: Path, rel: str, expected: dict | None, memo: FileDigests) -> FileStatus:
    """Compare a file with its expected size and sha256 (``None``: nothing to compare with)."""
    if not path.is_file():
        return FileStatus(rel, "missing")
    if expected is None or not expected.get("sha256"):
        return FileStatus(rel, "recorded", "no published checksum")
    if expected.get("size") is not None and path.stat().st_size != expected["size"]:
        return FileStatus(rel, "size mismatch", f"{path.stat().st_size} bytes, expected {expected['size']}")
    digest = memo.digest(path)
    if digest != expected["sha256"]:
        return FileStatus(rel, "checksum mismatch", f"sha256 {digest}, expected {expected['sha256']}")
    return FileStatus(rel, "ok" if expected.get("checksum", "manifest") != "recorded" else "recorded")


def _accept(path: Path, rel: str, entry: ManifestFile, expected_sha: str | None, checksum: str,
            record: DownloadRecord, memo: FileDigests) -> None:
    """Check a freshly downloaded file; record it, or move it aside and fail when it is corrupt."""
    digest = memo.digest(path)
    if expected_sha and digest != expected_sha:
        corrupt = path.with_name(path.name + ".corrupt")
        os.replace(path, corrupt)
        raise DataError(f"{rel} is corrupt: its sha256 is {digest}, but the {checksum} says {expected_sha}. It was "
                        f"moved to {corrupt}; run the command again to download it anew.")
    if not expected_sha:
        logger.warning("%s has no published checksum; recorded its sha256 %s for later verification.", rel, digest)
    record.add_file(rel, digest, path.stat().st_size, checksum if expected_sha else "recorded", entry)


def _fetch_huggingface(entry: ManifestFile, source: dict, root: Path) -> Path:
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    url = (f"https://huggingface.co/datasets/{source['repo_id']}/resolve/{source['revision']}/{entry.remote}")
    dest = root / entry.path
    if constants.HF_HUB_OFFLINE:
        raise MissingDataError(f"{dest} is missing and HF_HUB_OFFLINE is set, so it cannot be downloaded. Unset "
                               f"HF_HUB_OFFLINE and run the command again, or fetch {url} and place it at {dest}.")
    try:
        path = huggingface_hub.hf_hub_download(source["repo_id"], entry.remote, repo_type=source.get("repo_type"),
                                               revision=source["revision"], local_dir=root)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
        raise _unreachable(entry.path, url, dest, err) from None
    if Path(path).resolve() != dest.resolve():
        os.replace(path, dest)
    return dest


def _resolve_osf(entry: ManifestFile, source: dict) -> list[dict]:
    listing = _osf_files(source["node"])
    matches = [f for f in listing if fnmatch.fnmatchcase(f["path"], entry.remote)]
    if not matches:
        names = ", ".join(sorted(f["path"] for f in listing)[:20]) or "(no files)"
        raise MissingDataError(f"OSF component {source['node']} has no file matching {entry.remote!r} (it has: "
                               f"{names}). Fetch the file from https://osf.io/{source['node']}/ yourself and place "
                               f"it under {entry.path}.")
    if not entry.is_glob and len(matches) > 1:
        raise DataError(f"OSF component {source['node']} has {len(matches)} files at {entry.remote!r}.")
    return matches


def _targets(entry: ManifestFile, source: dict, root: Path, record: DownloadRecord,
             memo: FileDigests) -> list[tuple[str, str | None, dict | None]] | None:
    """Files of ``entry`` still to fetch as (relative path, url, expected); None when all are present."""
    known = record.entry_files(entry)
    if known and all(_check_file(root / rel, rel, record.file(rel), memo).ok for rel in known):
        if not entry.extract or record.extracted(entry):
            return None
    if source["kind"] == "osf":
        out = []
        for match in _resolve_osf(entry, source):
            rel = (Path(entry.path) / match["path"]).as_posix() if entry.is_glob else entry.path
            sha = entry.sha256 if not entry.is_glob and entry.sha256 else match["sha256"]
            size = entry.size if not entry.is_glob and entry.size else match["size"]
            checksum = "manifest" if sha and sha == entry.sha256 else "OSF-published sha256"
            out.append((rel, match["url"], {"sha256": sha, "size": size, "checksum": checksum}))
        return out
    expected = {"sha256": entry.sha256, "size": entry.size, "checksum": "manifest"} if entry.sha256 else None
    return [(entry.path, entry.remote if source["kind"] == "http" else None, expected)]


def licenses(manifest: Manifest, entries: Sequence[ManifestFile]) -> dict[str, str]:
    """The licences (name -> terms URL) that the sources of ``entries`` declare and a user must accept."""
    declared = (manifest.sources[entry.source].get("license") for entry in entries)
    return {terms["name"]: terms["url"] for terms in declared if terms}


def download(dataset: str, root: str | Path, *, variant: str | None = None, subjects: Sequence[int] | None = None,
             images: bool = True, accept_license: bool = False) -> DownloadReport:
    """Fetch what ``variant`` of ``dataset`` needs into ``root``; files already there and intact are kept.

    Parameters
    ----------
    dataset : str
        ``"things-eeg2"``, ``"things-meg"`` or ``"alljoined"``.
    root : path-like
        The data root (created if needed); pass the same folder as ``--data-root`` to ``eegbench run``.
    variant : str, optional
        Default: the dataset's default variant.
    subjects : sequence of int, optional
        Subject numbers (default: all).
    images : bool
        Also fetch the image set (shared by all variants).
    accept_license : bool
        Accept the licence the dataset's source declares (e.g. Alljoined-1.6M's CC-BY-NC-ND-4.0); without it,
        such a dataset is refused before anything is fetched. The acceptance is recorded under the root.
    """
    manifest = load_manifest(dataset)
    entries = manifest.select(variant, subjects, images)
    terms = licenses(manifest, entries)
    if terms and not accept_license:
        listed = "; ".join(f"{name} ({url})" for name, url in terms.items())
        raise InvalidInputError(f"The {dataset} files are distributed under {listed}. Read the terms, then pass "
                                f"--accept-license (Python: accept_license=True) to download them.")
    root = Path(root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    record, memo, report = DownloadRecord(root), FileDigests(), DownloadReport(root)
    record.data.setdefault("licenses_accepted", {}).update(terms)
    try:
        for entry in entries:
            source = manifest.sources[entry.source]
            targets = _targets(entry, source, root, record, memo)
            if targets is None:
                report.present.extend(record.entry_files(entry))
            else:
                for rel, url, expected in targets:
                    dest = root / rel
                    # Without a published checksum, the one recorded at download time still reveals damage.
                    status = _check_file(dest, rel, expected or record.file(rel), memo)
                    if status.ok:  # already there: verified, or (no checksum to compare with) adopted
                        checksum = expected["checksum"] if status.status == "ok" else "recorded"
                        if status.status == "recorded":
                            logger.warning("%s is already present and has no published checksum; keeping it and "
                                           "recording its sha256.", rel)
                        record.add_file(rel, memo.digest(dest), dest.stat().st_size, checksum, entry)
                        report.present.append(rel)
                        continue
                    if dest.exists():
                        logger.warning("%s: %s (%s); downloading it again.", rel, status.status, status.detail)
                        dest.unlink()
                    if source["kind"] == "huggingface":
                        _fetch_huggingface(entry, source, root)
                    else:
                        http_download(url, dest, size=(expected or {}).get("size"), description=rel)
                    _accept(dest, rel, entry, (expected or {}).get("sha256"),
                            (expected or {}).get("checksum", "manifest"), record, memo)
                    report.downloaded.append(rel)
                files = [rel for rel, _, _ in targets]
                if entry.extract:
                    for rel in files:
                        if rel.endswith(".zip"):
                            extract_archive(root / rel)
                record.set_entry(entry, files, extracted=entry.extract)
                record.save()
            if entry.note:
                report.notes.append(entry.note.format(root=root, path=root / entry.path))
    finally:
        record.save()
        memo.save()
    return report


def extract_archive(archive: Path) -> None:
    """Unpack a zip archive into its folder, atomically per top-level entry."""
    dest = archive.parent
    staging = dest / f".{archive.name}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as handle, progress(f"Extracting {archive.name}", total=None):
            handle.extractall(staging)
    # zlib.error: a damaged compressed member; RuntimeError: an encrypted one; NotImplementedError: another compression
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"{archive} is truncated or corrupt, not a readable zip archive ({type(err).__name__}: {err}); "
                        f"delete it and download it again.") from None
    for item in staging.iterdir():
        target = dest / item.name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        os.replace(item, target)
    staging.rmdir()


# --- verification -------------------------------------------------------------------------------------


def verify(dataset: str, root: str | Path, *, variant: str | None = None, subjects: Sequence[int] | None = None,
           images: bool = True) -> list[FileStatus]:
    """Re-check every file ``variant`` needs under ``root`` (offline): present, right size and sha256.

    Files with a sha256 in the manifest are compared with it; others with the checksum recorded when
    they were downloaded (status ``"recorded"`` when no published checksum exists).
    """
    manifest = load_manifest(dataset)
    root = Path(root).expanduser().resolve()
    record, memo = DownloadRecord(root), FileDigests()
    statuses = []
    entries = manifest.select(variant, subjects, images)
    with progress("Verifying files", total=len(entries)) as advance:
        for entry in entries:
            if entry.is_glob:
                files = record.entry_files(entry)
                if not files:
                    statuses.append(FileStatus(f"{entry.path}/{entry.remote}", "missing",
                                               "never downloaded (no record)"))
                statuses += [_check_file(root / rel, rel, record.file(rel), memo) for rel in files]
            else:
                expected = ({"sha256": entry.sha256, "size": entry.size, "checksum": "manifest"} if entry.sha256
                            else record.file(entry.path))
                statuses.append(_check_file(root / entry.path, entry.path, expected, memo))
            if entry.extract and statuses[-1].ok and not record.extracted(entry):
                statuses.append(FileStatus(entry.path, "not extracted", "run `eegbench data download` to unpack it"))
            advance(1)
    memo.save()
    return statuses
