"""Matplotlib helpers shared by the leaderboard and the analyses: headless figures and PNG files
whose bytes depend only on what is drawn (so regenerated pages are byte-identical)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def subplots(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``matplotlib.pyplot.subplots`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def finish_axes(ax: Any, xlabel: str, ylabel: str = "test top-1 (%)") -> None:
    """Axis labels, a small legend and a light grid: the house style of every line plot."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def save_png(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` atomically, without the software-version metadata, and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.tight_layout()
    fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
    os.replace(tmp, path)
    return path
