"""eegbench: an honest, reproducible benchmark for decoding seen images from EEG and MEG.

The public Python API (what the command line is a thin layer over)::

    import eegbench as eb

    result = eb.run(task="synthetic-intra", method="shallow", subjects=[1], seeds=[0], results_dir="results")
    print(result.summary()["metrics"]["top1"])
    eb.list_tasks(), eb.list_methods(), eb.list_backbones()
    task = eb.load_task("synthetic-intra")
    records = eb.load_results("results")
    eb.build_leaderboard("results", "results/leaderboard")
    eb.export_results("results", "export")           # a Parquet dataset; eb.push_results("export", "ORG/NAME")
    board = eb.load_results_dataset("hub:ORG/NAME")  # or a local export: what a leaderboard is built from
    eb.reproduce("results/.../sub-01_seed-0.json")

Errors are in :mod:`eegbench.errors`. The names load on first use, so ``import eegbench`` stays
light (worker processes import it too).
"""

from __future__ import annotations

from typing import Any

from eegbench._compat import install_import_hook
from eegbench._version import __version__

install_import_hook()

__all__ = ["__version__", "build_leaderboard", "check_submission", "errors", "export_results", "list_backbones",
           "list_methods", "list_tasks", "load_results", "load_results_dataset", "load_task", "push_results",
           "reproduce", "run"]


def __getattr__(name: str) -> Any:
    """The public API, imported on first use."""
    if name == "run":
        from eegbench.runner import run as value
    elif name == "check_submission":
        from eegbench.check import check_submission as value
    elif name == "load_task":
        from eegbench.tasks import load_task as value
    elif name == "list_tasks":
        from eegbench.tasks import list_tasks as value
    elif name == "list_methods":
        from eegbench.submissions import list_submissions as value
    elif name == "list_backbones":
        from eegbench.backbones import list_backbones as value
    elif name == "build_leaderboard":
        from eegbench.leaderboard import build_leaderboard as value
    elif name == "reproduce":
        from eegbench.reproduction import reproduce as value
    elif name == "load_results":
        from eegbench.results import load_results as value
    elif name in ("export_results", "push_results", "load_results_dataset"):
        import eegbench.results_dataset

        value = getattr(eegbench.results_dataset, name)
    elif name == "errors":
        import eegbench.errors  # noqa: F401  (importing a submodule sets it on this package)

        return globals()["errors"]
    else:
        raise AttributeError(f"module 'eegbench' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
