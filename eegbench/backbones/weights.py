"""Finding backbone weights on disk, downloading them when the hub is reachable, failing fast when not.

Weights are looked up in this order; the first match wins:

1. an explicit file (``--weights FILE``, ``load_backbone(name, weights=FILE)``);
2. the weights folder, ``<cache_home>/weights/<name>.<ext>`` (``$EEGBENCH_HOME/weights`` when set;
   ``<name>`` is the backbone name with ``:`` and ``/`` replaced by ``_``; ``<ext>`` is one of
   ``safetensors``, ``bin``, ``pth``, ``pt``);
3. the Hugging Face cache (files downloaded earlier by eegbench, timm or open_clip);
4. a download, if the Hugging Face Hub (or the file's URL) answers within a few seconds.

Otherwise a :class:`~eegbench._check.MissingDataError` says at once how to provide the file.
Reachability is probed with one HTTP request of at most a few seconds (through the configured
proxy, if any), so an offline machine gets the error in seconds instead of a minute of download
retries, even when ``HF_HUB_OFFLINE`` is not set.
"""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from eegbench._check import InvalidInputError, MissingDataError
from eegbench._paths import cache_home
from eegbench._progress import logger

WEIGHT_EXTENSIONS = ("safetensors", "bin", "pth", "pt")
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
        path = Path(weights_file).expanduser()
        if not path.is_file():
            raise MissingDataError(f"Weights file {path} not found.")
        return path
    found = local_weights(name) or _hub_cached(source)
    if found is not None:
        return found
    if not source.download_urls():
        raise _missing(name, source, "no download is published for them")
    reachable, reason = hub_reachable(None if source.repo_id else source.url)
    if not reachable:
        raise _missing(name, source, reason)
    try:
        return _download(name, source)
    except Exception as err:  # any download failure (HTTP, auth, disk) gets the same instructions
        raise _missing(name, source, f"the download failed: {err}") from err


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
