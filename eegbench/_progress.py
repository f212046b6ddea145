"""Progress bars and logging on stderr (stdout stays clean for ``--json`` output)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
logger = logging.getLogger("eegbench")

_active: Progress | None = None


def setup_logging(level: int | str = logging.INFO) -> None:
    """Send eegbench's log records to stderr through rich (idempotent)."""
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)


def _disabled() -> bool:
    return os.environ.get("EEGBENCH_PROGRESS", "1") in ("0", "false", "no")


@contextlib.contextmanager
def progress(description: str, total: float | None = None) -> Iterator[Callable[[float], None]]:
    """A progress bar for long work; yields ``advance(n=1)``.

    Nested calls add a line to the bar already on screen instead of opening a second display.
    Set ``EEGBENCH_PROGRESS=0`` to silence all bars.
    """
    global _active
    owner = _active is None
    if owner:
        _active = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=_disabled(),
        )
        _active.start()
    bar = _active
    task = bar.add_task(description, total=total)
    try:
        yield lambda n=1: bar.advance(task, n)
    finally:
        if owner:
            bar.stop()
            _active = None
        else:
            bar.remove_task(task)
