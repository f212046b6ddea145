"""Result records: one JSON file per run unit, with the provenance needed to trust and redo it.

A unit is (task and version, method, backbone, layer setting, hyperparameter tag, subject, seed).
Files live at::

    <results_dir>/<task>/v<version>/<method>/<backbone>/<layer setting>/<hp tag>/<subject>_seed-<seed>.json

and are written atomically as each unit finishes, so an interrupted run loses at most the units
in flight and a rerun skips the finished ones. Leaderboards are built from these files alone.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eegbench import __version__
from eegbench._check import DataError, InvalidInputError, describe_validation_error
from eegbench._io import atomic_write_json

SCHEMA_VERSION = 1
OVERWRITE_MODES = ("missing", "always", "never")


@dataclass(frozen=True)
class UnitKey:
    """Identity of one result: what was run, on whom, with which seed."""

    task: str
    task_version: int
    method: str
    backbone: str
    layer_setting: str
    hp_tag: str
    subject: str
    seed: int

    def relative_path(self) -> Path:
        layer = self.layer_setting.replace(":", "_").replace("/", "_")
        return Path(self.task, f"v{self.task_version}", self.method, self.backbone, layer, self.hp_tag,
                    f"{self.subject}_seed-{self.seed}.json")


class ResultRecord(BaseModel):
    """Schema of a result file (version 1)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    created: str
    task: dict[str, Any]
    dataset: dict[str, Any]
    method: dict[str, Any]
    backbone: dict[str, Any]
    subject: str
    train_subjects: list[str]
    seed: int
    report: dict[str, Any] = Field(default_factory=dict)
    scores: dict[str, float]
    n_test_trials: int
    n_gallery: int
    per_trial: dict[str, list[int]]
    timing: dict[str, float]
    environment: dict[str, Any]

    @property
    def key(self) -> UnitKey:
        return UnitKey(self.task["id"], self.task["version"], self.method["id"], self.backbone["name"],
                       self.backbone["layer_setting"], self.method["hp_tag"], self.subject, self.seed)

    @property
    def config_hash(self) -> str:
        return self.method.get("config_hash", "")


class ResultStore:
    """The folder of result files of a benchmark."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: UnitKey) -> Path:
        return self.root / key.relative_path()

    def exists(self, key: UnitKey) -> bool:
        return self.path(key).is_file()

    def write(self, record: ResultRecord) -> Path:
        path = self.path(record.key)
        atomic_write_json(path, record.model_dump(mode="json"))
        return path

    def read(self, path: str | Path) -> ResultRecord:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"Result file {path} is unreadable: {err}") from err
        if data.get("schema_version") != SCHEMA_VERSION:
            raise DataError(f"Result file {path} has schema version {data.get('schema_version')}; "
                            f"this eegbench reads version {SCHEMA_VERSION}.")
        try:
            return ResultRecord.model_validate(data)
        except ValidationError as err:
            raise DataError(describe_validation_error(err, f"Result file {path}")) from None

    def records(self) -> Iterator[ResultRecord]:
        """Every record under the root, in path order (invalid files raise with their path)."""
        for path in sorted(self.root.rglob("*.json")):
            if path.name.startswith("."):
                continue
            yield self.read(path)


def check_overwrite(mode: str) -> str:
    if mode not in OVERWRITE_MODES:
        raise InvalidInputError(f"--overwrite must be one of {', '.join(OVERWRITE_MODES)}, got {mode!r}.")
    return mode


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@functools.cache
def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the eegbench checkout, if it runs from one."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


_PACKAGES = ("torch", "torchvision", "timm", "open_clip_torch", "numpy", "scipy", "mne", "pydantic")


def environment(device: Any) -> dict[str, Any]:
    """Versions, hardware and determinism flags, recorded with every result."""
    import torch

    from eegbench.training import compile_requested

    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    device = torch.device(device)
    return {
        "eegbench": __version__,
        "git": git_state(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or None,
        "packages": packages,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "torch_compile": compile_requested(),
    }
