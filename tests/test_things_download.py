"""Downloads against a local HTTP server (Range requests, interrupted transfers, OSF listings), verification,
the packaged manifests and the `eegbench data` commands."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from eegbench._check import DataError, MissingDataError
from eegbench.cli import app
from eegbench.data import download as dl
from eegbench.data import get_dataset_spec


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (name -> bytes) with Range support; logs requests; can cut a transfer short."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        name = self.path.split("?")[0].lstrip("/")
        self.server.requests.append((name, self.headers.get("Range")))
        if name not in self.server.files:
            self.send_error(404)
            return
        body = self.server.files[name]
        if callable(body):
            body = body(self.server)
        start = int(re.match(r"bytes=(\d+)-", self.headers["Range"]).group(1)) if self.headers["Range"] else 0
        if start >= len(body) and start:
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = self.server.cut_after.pop(name, None)
        self.wfile.write(body[start:cut] if cut else body[start:])
        if cut:
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.cut_after = {}, [], {}
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _payload(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def test_a_partial_file_is_resumed_with_a_range_request(server, tmp_path):
    payload = _payload(3_000_000)
    server.files["big.bin"] = payload
    dest = tmp_path / "big.bin"
    dest.with_name("big.bin.part").write_bytes(payload[:1_200_000])
    dl.http_download(f"{server.url}/big.bin", dest, size=len(payload))
    assert server.requests == [("big.bin", "bytes=1200000-")]
    assert dest.read_bytes() == payload and not dest.with_name("big.bin.part").exists()


def test_an_interrupted_transfer_resumes_where_it_stopped(server, tmp_path):
    payload = _payload(2_500_000, seed=1)
    server.files["big.bin"] = payload
    server.cut_after["big.bin"] = 1_000_000
    dest = tmp_path / "big.bin"
    dl.http_download(f"{server.url}/big.bin", dest, size=len(payload))
    assert dest.read_bytes() == payload
    assert [name for name, _ in server.requests] == ["big.bin", "big.bin"] and server.requests[0][1] is None
    resumed_from = int(re.fullmatch(r"bytes=(\d+)-", server.requests[1][1]).group(1))
    assert 0 < resumed_from <= 1_000_000  # the second request asks only for what is missing


def test_unreachable_hosts_and_missing_files_say_what_to_do(server, tmp_path):
    with pytest.raises(MissingDataError, match=r"Cannot download x.bin from http://127.0.0.1:9/x.bin .*Connect to the "
                                               r"internet and run the command again \(a partial download resumes\), or "
                                               r"fetch the file yourself and place it at"):
        dl.http_download("http://127.0.0.1:9/x.bin", tmp_path / "x.bin")
    with pytest.raises(MissingDataError, match=r"HTTP 404"):
        dl.http_download(f"{server.url}/nothing.bin", tmp_path / "nothing.bin")
    server.files["short.bin"] = b"abc"
    with pytest.raises(DataError, match=r"has 3 bytes; 5 were expected. The partial file was removed"):
        dl.http_download(f"{server.url}/short.bin", tmp_path / "short.bin", size=5)
    assert not (tmp_path / "short.bin.part").exists()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _osf_listing(server, node, files):
    """The OSF API pages of a storage component holding ``files`` (name -> bytes), in two pages."""
    items = [{"attributes": {"kind": "file", "materialized_path": f"/{name}", "size": len(data),
                             "extra": {"hashes": {"sha256": hashlib.sha256(data).hexdigest()}}},
              "links": {"download": f"{server.url}/osf-{name}"}} for name, data in files.items()]
    base = f"nodes/{node}/files/osfstorage/"
    server.files[base] = json.dumps({"data": items[:1], "links": {"next": f"{server.url}/{base}page2"}}).encode()
    server.files[f"{base}page2"] = json.dumps({"data": items[1:], "links": {"next": None}}).encode()
    for name, data in files.items():
        server.files[f"osf-{name}"] = data


def _truncated(archive: bytes) -> bytes:
    return archive[: int(len(archive) * 0.6)]


def _bad_deflate(archive: bytes) -> bytes:  # the first compressed byte declares a block type deflate reserves
    start = 30 + len("x.npy")  # after the member's local header
    return archive[:start] + b"\xff" + archive[start + 1:]


@pytest.mark.parametrize("damage, error", [(_truncated, "BadZipFile: File is not a zip file"),
                                           (_bad_deflate, "error: Error -3 while decompressing data")])
def test_a_damaged_archive_is_refused_and_nothing_is_extracted(tmp_path, damage, error):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", bytes(range(256)) * 100)
    path = tmp_path / "sub-01.zip"
    path.write_bytes(damage(buffer.getvalue()))
    with pytest.raises(DataError, match=rf"^{path} is truncated or corrupt, not a readable zip archive \({error}.*\); "
                                        rf"delete it and download it again.$"):
        dl.extract_archive(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-01.zip"]


@pytest.fixture
def manifest(server, tmp_path, monkeypatch):
    """A things-eeg2 manifest whose sources are the local server: one http file with a sha256, one without,
    and an OSF component with a metadata file and a zip of images."""
    files = {"a.npy": _payload(50_000, 2), "b.npy": _payload(70_000, 3)}
    server.files.update(files)
    osf = {"image_metadata.npy": _payload(1000, 4),
           "test_images.zip": _zip({"test_images/00001_x/x_01b.jpg": b"jpeg"})}
    _osf_listing(server, "abc12", osf)
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "things-eeg2.json").write_text(json.dumps({
        "dataset": "things-eeg2",
        "sources": {"web": {"kind": "http"}, "images": {"kind": "osf", "node": "abc12"}},
        "files": [
            {"path": "eeg/sub-01/a.npy", "source": "web", "remote": f"{server.url}/a.npy", "subject": 1,
             "size": 50_000, "sha256": hashlib.sha256(files["a.npy"]).hexdigest()},
            {"path": "eeg/sub-02/b.npy", "source": "web", "remote": f"{server.url}/b.npy", "subject": 2,
             "variants": ["63ch-250hz"]},
            {"path": "image_set/image_metadata.npy", "source": "images", "remote": "image_metadata.npy",
             "images": True},
            {"path": "image_set", "source": "images", "remote": "*.zip", "images": True, "extract": True,
             "note": "Images are under {root}."},
        ]}))
    monkeypatch.setattr(dl, "MANIFEST_DIR", folder)
    monkeypatch.setattr(dl, "OSF_API", server.url)
    # Variants and subjects are the dataset's (its spec's): here a things-eeg2 of two subjects.
    two_subjects = replace(get_dataset_spec("things-eeg2"), subjects=(1, 2))
    monkeypatch.setattr(dl, "get_dataset_spec", lambda name: two_subjects if name == "things-eeg2"
                        else get_dataset_spec(name))
    return files, osf


def test_download_fetches_checks_extracts_and_skips_what_is_intact(manifest, server, tmp_path):
    files, osf = manifest
    root = tmp_path / "data"
    report = dl.download("things-eeg2", root, variant="63ch-250hz")
    assert sorted(report.downloaded) == ["eeg/sub-01/a.npy", "eeg/sub-02/b.npy", "image_set/image_metadata.npy",
                                         "image_set/test_images.zip"]
    assert (root / "eeg/sub-02/b.npy").read_bytes() == files["b.npy"]
    assert (root / "image_set/test_images/00001_x/x_01b.jpg").read_bytes() == b"jpeg"
    assert report.notes == [f"Images are under {root}."]
    statuses = {s.path: s.status for s in dl.verify("things-eeg2", root, variant="63ch-250hz")}
    # b.npy has no published checksum: its sha256 was recorded at download time.
    assert statuses == {"eeg/sub-01/a.npy": "ok", "eeg/sub-02/b.npy": "recorded",
                        "image_set/image_metadata.npy": "ok", "image_set/test_images.zip": "ok"}

    server.requests.clear()
    again = dl.download("things-eeg2", root, variant="63ch-250hz")
    assert again.downloaded == [] and len(again.present) == 4
    assert [r for r in server.requests if not r[0].startswith("nodes/")] == []

    # A damaged file is reported by verify and fetched anew by download.
    (root / "eeg/sub-02/b.npy").write_bytes(b"damaged")
    bad = {s.path: s for s in dl.verify("things-eeg2", root, variant="63ch-250hz")}["eeg/sub-02/b.npy"]
    assert bad.status == "size mismatch" and "7 bytes, expected 70000" in bad.detail
    assert dl.download("things-eeg2", root, variant="63ch-250hz").downloaded == ["eeg/sub-02/b.npy"]
    assert (root / "eeg/sub-02/b.npy").read_bytes() == files["b.npy"]


def test_a_download_that_disagrees_with_the_manifest_is_moved_aside(manifest, server, tmp_path):
    server.files["a.npy"] = _payload(50_000, seed=99)  # same size, other bytes
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"eeg/sub-01/a.npy is corrupt: its sha256 is [0-9a-f]{64}, but the manifest "
                                        r"says [0-9a-f]{64}. It was moved to .*a.npy.corrupt"):
        dl.download("things-eeg2", root, subjects=[1], images=False)
    assert (root / "eeg/sub-01/a.npy.corrupt").is_file() and not (root / "eeg/sub-01/a.npy").exists()


def test_verify_reports_missing_files_and_the_cli_exits_2(manifest, tmp_path):
    root = tmp_path / "data"
    dl.download("things-eeg2", root, subjects=[1])
    (root / "image_set/image_metadata.npy").unlink()
    result = CliRunner().invoke(app, ["data", "verify", "things-eeg2", "--root", str(root), "--json"])
    assert result.exit_code == 2
    assert "1 of 3 files are missing or damaged (e.g. image_set/image_metadata.npy: missing). Run `eegbench data " \
           "download things-eeg2 --root" in " ".join(result.output.split())
    with pytest.raises(Exception, match="Unknown things-eeg2 variant 'raw'"):
        dl.verify("things-eeg2", root, variant="raw")
    with pytest.raises(Exception, match=r"things-eeg2 has subjects 1..2; got \[7\]"):
        dl.verify("things-eeg2", root, subjects=[7])


def test_hugging_face_files_are_not_fetched_offline(tmp_path):
    entry = dl.load_manifest("things-eeg2").select("17ch-250hz", [1], images=False)[0]
    source = dl.load_manifest("things-eeg2").sources[entry.source]
    with pytest.raises(MissingDataError, match=r"HF_HUB_OFFLINE is set.*Unset HF_HUB_OFFLINE and run the command "
                                               r"again, or fetch https://huggingface.co/datasets/LidongYang/"
                                               r"EEG_Image_decode/resolve/dbe34bb"):
        dl._fetch_huggingface(entry, source, tmp_path)


def test_packaged_manifests_match_the_loaders():
    from eegbench.data import things_eeg2, things_meg

    eeg2, meg = dl.load_manifest("things-eeg2"), dl.load_manifest("things-meg")
    assert set(eeg2.variants) == set(things_eeg2.VARIANTS) and eeg2.default_variant == things_eeg2.DEFAULT_VARIANT
    assert set(meg.variants) == set(things_meg.VARIANTS) and meg.subjects == (1, 2, 3, 4)
    assert eeg2.subjects == tuple(range(1, 11))
    nice = [f for f in eeg2.select("17ch-250hz", images=False)]
    assert len(nice) == 20 and all(re.fullmatch(r"[0-9a-f]{64}", f.sha256) for f in nice)
    assert {f.size for f in nice if "training" in f.path} == {8_336_163_007}  # 16540 x 4 x 63 x 250 float64
    assert {f.size for f in nice if "test" in f.path} == {2_016_003_002}  # 200 x 80 x 63 x 250 float64
    assert eeg2.sources["nice-250hz"]["revision"] == "dbe34bb2407164f70883c661c76664f0d596e522"
    # MNE splits each subject's epochs into four files; read_epochs needs every part.
    epochs = [Path(f.path).name for f in meg.select(subjects=[2], images=False)]
    assert epochs == ["preprocessed_P2-epo.fif", "preprocessed_P2-epo-1.fif", "preprocessed_P2-epo-2.fif",
                      "preprocessed_P2-epo-3.fif"]
    for variant in eeg2.variants:
        paths = {f.path for f in eeg2.select(variant)}
        assert "image_set/image_metadata.npy" in paths
    with pytest.raises(Exception, match="Unknown downloadable dataset 'things-fmri'"):
        dl.load_manifest("things-fmri")
