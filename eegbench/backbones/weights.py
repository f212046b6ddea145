"""Finding backbone weights on disk, downloading them when the hub is reachable, failing fast when not.

Weights are looked up in this order; the first match wins:

1. an explicit file (``--weights FILE``, ``load_backbone(name, weights=FILE)``);
2. the weights folder, ``<cache_home>/weights/<name>.<ext>`` (``$EEGBENCH_HOME/weights`` when set;
   ``<name>`` is the backbone name with ``:`` and ``/`` replaced by ``_``; ``<ext>`` is one of
   ``safetensors``, ``bin``, ``pth``, ``pt``);
3. the Hugging Face cache (files downloaded earlier by eegbench, timm or open_clip);
4. a download, if the Hugging Face Hub (or the file's URL) answers within a few seconds.

Otherwise a :class:`~eegbench._check.MissingDataError` says at once how to provide the file. A file
found is checked before a model is built (:func:`check_weights_file`): an empty, truncated or foreign
file, or a pickle that holds code, is a :class:`~eegbench._check.DataError` naming it.
Reachability is probed with one HTTP request of at most a few seconds (through the configured
proxy, if any), so an offline machine gets the error in seconds instead of a minute of download
retries, even when ``HF_HUB_OFFLINE`` is not set.
"""

from __future__ import annotations

import pickle
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from eegbench._check import DataError, InvalidInputError, MissingDataError
from eegbench._paths import cache_home
from eegbench._progress import logger

WEIGHT_EXTENSIONS = ("safetensors", "bin", "pth", "pt")
#: what check_weights_file accepts, for messages
WEIGHT_FORMATS = ("a safetensors file (.safetensors), or a state dict saved by torch.save (.bin, .pth, .pt: "
                  "tensors only, pickled code is refused)")
#: seconds to wait for a TCP connection to the hub before calling it unreachable
REACHABILITY_TIMEOUT = 3.0


def weights_home() -> Path:
    """The folder searched for weights files: ``<cache_home>/weights``."""
    return cache_home() / "weights"


def safe_name(name: str) -> str:
    """A backbone name usable as a file or folder name (``open_clip:ViT-B-16/openai`` -> ``open_clip_ViT-B-16_openai``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's pretrained weights are published.

    Attributes
    ----------
    description : str
        What the weights are, for messages (``"open_clip ViT-H-14, pretrained 'laion2b_s32b_b79k'"``).
    repo_id : str or None
        Hugging Face Hub repository.
    filenames : tuple of str
        Candidate files in that repository, preferred first.
    url : str or None
        A plain download URL, for weights that are not on the hub.
    """

    description: str
    repo_id: str | None = None
    filenames: tuple[str, ...] = ()
    url: str | None = None

    def download_urls(self) -> list[str]:
        if self.repo_id:
            from huggingface_hub import constants

            return [f"{constants.ENDPOINT}/{self.repo_id}/resolve/main/{f}" for f in self.filenames]
        return [self.url] if self.url else []


def hub_filenames(filename: str) -> tuple[str, ...]:
    """Candidate hub files for ``filename``: its safetensors twin first (as timm and open_clip do), then itself."""
    twins = {"pytorch_model.bin": "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
    stem, dot, ext = filename.rpartition(".")
    twin = twins.get(filename) or (f"{stem}.safetensors" if dot and ext in ("bin", "pth") else None)
    return (twin, filename) if twin else (filename,)


def local_weights(name: str) -> Path | None:
    """The file for backbone ``name`` in :func:`weights_home`, or None."""
    stem = safe_name(name)
    found = [weights_home() / f"{stem}.{ext}" for ext in WEIGHT_EXTENSIONS if (weights_home() / f"{stem}.{ext}").is_file()]
    if len(found) > 1:
        raise InvalidInputError(f"Several weights files for backbone {name!r}: {', '.join(map(str, found))}. "
                                "Keep one.")
    return found[0] if found else None


def hub_reachable(url: str | None = None, timeout: float = REACHABILITY_TIMEOUT) -> tuple[bool, str]:
    """Whether a download from ``url`` (default: the Hugging Face Hub) can start; and why not.

    One HTTP HEAD request, through the configured proxies: any HTTP answer (even an error status)
    means the server is reachable. Honours ``HF_HUB_OFFLINE``. Never waits longer than ``timeout``
    seconds, DNS lookup included.
    """
    from huggingface_hub import constants

    if url is None and constants.HF_HUB_OFFLINE:
        return False, "HF_HUB_OFFLINE is set"
    target = url or constants.ENDPOINT
    outcome: dict[str, str] = {}

    def request() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(target, method="HEAD"), timeout=timeout).close()
            outcome["ok"] = ""
        except urllib.error.HTTPError:  # the server answered, if only with an error status
            outcome["ok"] = ""
        except (OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            outcome["error"] = str(reason) or type(reason).__name__

    thread = threading.Thread(target=request, daemon=True)  # DNS lookups ignore socket timeouts
    thread.start()
    thread.join(timeout)
    if "ok" in outcome:
        return True, ""
    reason = outcome.get("error", f"no answer within {timeout:g} s")
    return False, f"{urlparse(target).hostname} cannot be reached: {reason}"


def resolve_weights(name: str, source: WeightsSource, weights_file: str | Path | None = None) -> Path:
    """The weights file for backbone ``name``, found or downloaded as described in the module docstring.

    Raises
    ------
    MissingDataError
        If ``weights_file`` does not exist, or no file is found and none can be downloaded.
    """
    if weights_file is not None:
        return check_weights_file(Path(weights_file).expanduser())
    found = local_weights(name) or _hub_cached(source)
    if found is not None:
        return check_weights_file(found)
    if not source.download_urls():
        raise _missing(name, source, "no download is published for them")
    reachable, reason = hub_reachable(None if source.repo_id else source.url)
    if not reachable:
        raise _missing(name, source, reason)
    try:
        downloaded = _download(name, source)
    except Exception as err:  # any download failure (HTTP, auth, disk) gets the same instructions
        raise _missing(name, source, f"the download failed: {err}") from err
    return check_weights_file(downloaded)


def check_weights_file(path: Path) -> Path:
    """``path``, once it is seen to hold weights in one of :data:`WEIGHT_FORMATS`; else a DataError.

    Fast even for files of many GB: a safetensors file's header is read, a torch.save file (zip
    format) is unpickled with its tensors memory-mapped. Only a file of torch's legacy format
    (before PyTorch 1.6) is loaded in full. Pickles are read with ``weights_only=True``, so no code
    in them ever runs. A ``.npz`` file (timm's big_vision weights) is checked to be a zip archive.

    Raises
    ------
    MissingDataError
        If there is no file at ``path``.
    DataError
        If the file cannot be read, is empty, or holds no weights in the format its suffix names.
    """
    if not path.is_file():
        raise MissingDataError(f"Weights file {path} not found.")
    problem = _weights_problem(path)
    if problem is not None:
        raise DataError(f"Weights file {path} {problem}. Expected {WEIGHT_FORMATS}. Replace or delete it (a "
                        "download fetches it again where the hub is reachable), or pass another file with "
                        "--weights FILE.")
    return path


def _weights_problem(path: Path) -> str | None:
    """What is wrong with a weights file, in words (None: it holds weights in the format its suffix names)."""
    try:
        if path.stat().st_size == 0:
            return "is empty (0 bytes)"
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(path, framework="pt"):
                return None
        if path.suffix == ".npz":
            import numpy as np

            with np.load(path, allow_pickle=False):  # an archive: only its table of contents is read
                return None
        import torch

        with open(path, "rb") as handle:
            head = handle.read(4)
        zipped = head == b"PK\x03\x04"  # torch.save's format since PyTorch 1.6; a pickle before (legacy)
        if not zipped and not head.startswith(b"\x80"):
            return f"is not a torch.save file: it is neither a zip archive nor a pickle (it starts with {head!r})"
        torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
        return None
    except pickle.UnpicklingError as err:  # weights_only refused something other than tensors
        code = re.search(r"GLOBAL (\S+)", str(err))
        if code:
            return f"holds pickled code ({code[1]}), which eegbench never runs"
        return "is not a valid torch.save file (its pickle is damaged or holds objects other than tensors)"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    except Exception as err:  # each format's reader fails in its own way (RuntimeError, ValueError, EOFError...)
        first = str(err).splitlines()[0].split(". ")[0] if str(err) else type(err).__name__
        return f"is not a valid {_FORMAT_NAMES.get(path.suffix, 'torch.save')} file ({first})"


_FORMAT_NAMES = {".safetensors": "safetensors", ".npz": "NumPy .npz"}


def _hub_cached(source: WeightsSource) -> Path | None:
    if not source.repo_id:
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    for filename in source.filenames:
        try:
            return Path(hf_hub_download(source.repo_id, filename, local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError):
            continue
    return None


def _download(name: str, source: WeightsSource) -> Path:
    if source.repo_id:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError

        not_found: Exception = FileNotFoundError(f"{source.repo_id} names no weights file")
        for filename in source.filenames:  # e.g. safetensors first, then the pickle
            logger.info("Downloading %s from %s/%s", source.description, source.repo_id, filename)
            try:
                return Path(hf_hub_download(source.repo_id, filename))
            except EntryNotFoundError as err:
                not_found = err
        raise not_found
    import torch

    target = weights_home() / f"{safe_name(name)}{Path(urlparse(source.url).path).suffix or '.pt'}"
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Downloading %s from %s to %s", source.description, source.url, target)
    torch.hub.download_url_to_file(source.url, str(target))  # writes a temporary file, then renames
    return target


def _missing(name: str, source: WeightsSource, reason: str) -> MissingDataError:
    home = weights_home()
    urls = source.download_urls()
    fetch = (f" On a machine with internet, download {' or '.join(urls)} and copy it as in 1 or 2."
             if urls else "")
    return MissingDataError(
        f"No weights for backbone {name!r} ({source.description}) on this machine, and they cannot be "
        f"downloaded: {reason}. Provide them in one of these ways: 1. pass --weights FILE (Python: "
        f"load_backbone({name!r}, weights=FILE)); 2. save the file as {home / safe_name(name)}.<ext> "
        f"(<ext>: {', '.join(WEIGHT_EXTENSIONS)}), where every later run finds it.{fetch}"
    )
