"""Where eegbench keeps its caches and finds task files and submissions."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent

#: where ``run``, ``sweep``, the analyses and ``leaderboard`` keep result files unless told otherwise
#: (relative to the working directory). The committed official board, ``leaderboard/results``, is
#: always named explicitly (by ``sweeps/official-synthetic.yaml`` and ``leaderboard/official.sh``).
DEFAULT_RESULTS_DIR = Path("results")


def cache_home() -> Path:
    """Root of eegbench's caches (synthetic datasets, features, canonical data).

    ``$EEGBENCH_HOME`` if set, else ``$XDG_CACHE_HOME/eegbench``, else ``~/.cache/eegbench``.
    """
    if os.environ.get("EEGBENCH_HOME"):
        return Path(os.environ["EEGBENCH_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "eegbench"


def _shipped_dir(name: str) -> Path:
    """``tasks/`` or ``submissions/`` of a source checkout, else the copy bundled in the wheel."""
    checkout = _PACKAGE_DIR.parent / name
    if checkout.is_dir():
        return checkout
    return _PACKAGE_DIR / "_bundled" / name


def _search_path(env_var: str, shipped: str) -> list[Path]:
    extra = [Path(p).expanduser() for p in os.environ.get(env_var, "").split(os.pathsep) if p]
    return [*extra, _shipped_dir(shipped)]


def task_dirs() -> list[Path]:
    """Folders searched for task files: ``$EEGBENCH_TASKS_PATH`` entries, then the shipped tasks."""
    return _search_path("EEGBENCH_TASKS_PATH", "tasks")


def submission_dirs() -> list[Path]:
    """Folders searched for submissions: the shipped ones, then ``$EEGBENCH_SUBMISSIONS_PATH``.

    Shipped first, so that no extra folder can shadow a reference method's id.
    """
    shipped, *extra = reversed(_search_path("EEGBENCH_SUBMISSIONS_PATH", "submissions"))
    return [shipped, *reversed(extra)]
