"""Load and train one subject through the real protocol path, then print peak RSS as JSON.

Run in a fresh process by test_bench_memory.py (``python peak_memory.py OPTIONS_JSON HP_JSON``) so the
figure covers exactly this work; the synthetic dataset must already be generated (cached).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from eegbench.backbones import load_backbone
from eegbench.data import load_dataset
from eegbench.protocols import plan_units, training_data
from eegbench.submissions import import_method, load_submission
from eegbench.tasks import load_task


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    On Linux, ``VmHWM`` of ``/proc/self/status``: ``getrusage``'s ``ru_maxrss`` would also count
    the parent's resident set at the fork before ``exec`` (Linux carries the old address space's
    high-water mark over), i.e. whatever the pytest process held, not this work.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(options: dict, hyperparameters: dict) -> dict:
    start = time.perf_counter()
    task = load_task("synthetic-intra").with_overrides(dataset_options=options)
    dataset = load_dataset("synthetic", options=task.dataset.options, variant=task.dataset.variant)
    ref = load_backbone("efficientnet_lite0").resolve("final")
    rng = np.random.default_rng(0)
    # Random stand-ins for the image features: their values do not change memory or time.
    features = {ref.key: rng.standard_normal((len(dataset.train_images), 1280), dtype=np.float32)}
    unit = plan_units(task, dataset, seeds=[0])[0]
    data, _ = training_data(task, dataset, unit, features, [ref], torch.device("cpu"))
    final = import_method(load_submission("final"))  # measured in this process, as a worker runs it
    fields = final.Hyperparameters.model_fields
    method = final(final.Hyperparameters.model_validate(
        {k: v for k, v in task.training.items() if k in fields} | hyperparameters))
    method.fit_many([data])
    return {"peak_rss_mb": peak_rss_mb(),
            "seconds": round(time.perf_counter() - start, 2),
            "train_shape": list(dataset.load_subject(unit.subject).train.shape)}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]), json.loads(sys.argv[2]))))
