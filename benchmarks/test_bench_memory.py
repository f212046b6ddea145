"""Peak memory of loading and training one subject at full THINGS-EEG2 size.

With ``EEGBENCH_BENCHMARK=full`` the synthetic generator writes a subject of 16540 images x 4
repetitions x 17 channels x 250 samples in the canonical memory-mapped form; a fresh process
then loads it through the protocol (repetition averaging, z-scoring, validation split) and trains
one epoch of the Shallow Alignment recipe, and reports its peak RSS (target: under 4 GB).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench_sizes import mode, record_rate
from eegbench.data import synthetic_dataset


def _run_child(options: dict, hyperparameters: dict) -> dict:
    script = Path(__file__).with_name("peak_memory.py")
    done = subprocess.run([sys.executable, str(script), json.dumps(options), json.dumps(hyperparameters)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_full_size_subject_memory(benchmark, sizes):
    benchmark.group = "memory"
    synthetic_dataset(**sizes.full_subject)  # generate (or find cached) outside the measured process
    hyperparameters = {"epochs": 1, "batch_size": sizes.batch_size, "hidden_dim": sizes.hidden_dim,
                       "proj_dim": sizes.proj_dim}
    result = benchmark.pedantic(_run_child, args=(sizes.full_subject, hyperparameters), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    record_rate(benchmark, result["train_shape"][0], "images")
    if mode() == "full":
        assert result["train_shape"] == [16540, 4, 17, 250]
        assert result["peak_rss_mb"] < 4096, "one full-size subject must stay under 4 GB peak RSS"
