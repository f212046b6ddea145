"""How soon a mistake is reported: the wall time of ``eegbench run`` from start to its one-line error.

Each case is a fresh process, as a user types it, so the time includes Python's start and the
imports of the command line (PyTorch, timm, scipy). Task-file and option mistakes are found before
any worker, backbone or dataset is touched; a typo in the ``training`` section needs the method's
worker to say which hyperparameters it has, so it also pays the worker's start.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bench_sizes import rounds

from eegbench.tasks import task_path

#: case -> (edit of the synthetic-intra task file as "old -> new", or None, and extra arguments)
CASES = {
    "time-window": ("time_window: [0.0, 1.0] -> time_window: [-10, 50]", []),
    "duplicate-key": ("seeds: [0] -> seeds: [0]\nseeds: [1]", []),
    "negative-seed": (None, ["--seeds", "-1"]),
    "training-typo": ("lr: 1.0e-3 -> lrr: 1.0e-3", []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_time_to_error(benchmark, case, tmp_path: Path):
    benchmark.group = "bad input: seconds to the error"
    change, extra = CASES[case]
    task = task_path("synthetic-intra")
    if change is not None:
        old, new = change.split(" -> ")
        task = tmp_path / "synthetic-intra.yaml"
        task.write_text(task_path("synthetic-intra").read_text().replace(old, new))
    command = [sys.executable, "-m", "eegbench.cli", "run", "--task", str(task), "--results-dir",
               str(tmp_path / "results"), *extra]

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    done = benchmark.pedantic(run, rounds=rounds(), iterations=1)
    assert done.returncode == 2 and done.stderr.startswith("Error: "), done.stderr
    assert not (tmp_path / "results").exists()
