"""The cost of isolation: one unit (and one batch of units) fitted and scored in worker processes,
against the same method called in this process with no isolation at all.

The isolated path writes the training arrays to the fit worker's inbox (``/dev/shm``), fits in the
worker, saves the fitted models, and embeds the test responses and the gallery in their workers in
secret orders, twice (the inductive check). The in-process path calls ``fit_many`` and the two
embeddings directly. Both then rank the gallery. The difference is the overhead of isolation.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench_sizes import rounds
from eegbench.backbones.base import LayerRef
from eegbench.data.base import RecordingInfo
from eegbench.isolation import SubmissionSession
from eegbench.metrics import retrieve
from eegbench.scoring import HiddenScorer
from eegbench.submissions import Split, TrainingData, import_method, load_submission

FINAL = LayerRef("final", "final", "embedding", None, 10)


def _hyperparameters(sizes) -> dict:
    return {"epochs": 1, "batch_size": sizes.batch_size, "hidden_dim": sizes.hidden_dim, "proj_dim": sizes.proj_dim}


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@pytest.fixture(scope="module")
def problem(sizes, device):
    """Training data of ``sizes.n_models`` units sharing one subject's responses, a test set and a gallery."""
    rng = np.random.default_rng(0)
    n_val = sizes.n_samples // 10
    responses = _read_only(rng.standard_normal((sizes.n_samples, sizes.n_channels, sizes.n_times), dtype=np.float32))
    features = {FINAL.key: _read_only(rng.standard_normal((sizes.n_samples, sizes.feature_dim), dtype=np.float32))}
    train = Split(responses[n_val:], _read_only(np.arange(n_val, sizes.n_samples)),
                  _read_only(np.full(sizes.n_samples - n_val, "sub-01")))
    val = Split(responses[:n_val], _read_only(np.arange(n_val)), _read_only(np.full(n_val, "sub-01")))
    info = RecordingInfo("eeg", tuple(f"E{i}" for i in range(sizes.n_channels)), 100.0,
                         np.arange(sizes.n_times) / 100.0)
    units = [TrainingData(train, val, features, _read_only(np.arange(sizes.n_samples) // 4), [FINAL], info, "top5",
                          seed, device) for seed in range(sizes.n_models)]
    test = rng.standard_normal((sizes.n_gallery, sizes.n_channels, sizes.n_times), dtype=np.float32)
    gallery = {FINAL.key: rng.standard_normal((sizes.n_gallery, sizes.feature_dim), dtype=np.float32)}
    return units, test, gallery


@pytest.fixture(scope="module")
def session(sizes, device):
    """The workers of `final`, started once (as a run starts them once for all its units)."""
    with SubmissionSession(load_submission("final"), timeout=3600, device=str(device)) as session:
        yield session


def _isolated(session, sizes, units, test, gallery) -> float:
    fitted = session.fit({}, _hyperparameters(sizes), None, units)
    scorer = HiddenScorer(session)
    top1 = [scorer.score(aligner, None, test, gallery, subject="sub-01")[0].top_k(1) for aligner in fitted]
    session.discard(fitted)
    return float(np.mean(top1))


def _in_process(sizes, units, test, gallery) -> float:
    final = import_method(load_submission("final"))
    method = final(final.Hyperparameters.model_validate(_hyperparameters(sizes)))
    top1 = [retrieve(aligner.embed_brain(test), aligner.embed_images(gallery)).top_k(1)
            for aligner in method.fit_many(units)]
    return float(np.mean(top1))


@pytest.mark.parametrize("n_units", [1, "batch"])
@pytest.mark.parametrize("path", ["in_process", "isolated"])
def test_isolation_overhead(benchmark, sizes, problem, session, path, n_units):
    """One unit, or one batch of ``sizes.n_models`` units, fitted (1 epoch) and scored."""
    benchmark.group = f"isolation: {'1 unit' if n_units == 1 else f'{sizes.n_models} units'}"
    units, test, gallery = problem
    units = units[:1] if n_units == 1 else units
    if path == "isolated":
        _isolated(session, sizes, units, test, gallery)  # warm the workers (a run starts them once)
        run = lambda: _isolated(session, sizes, units, test, gallery)  # noqa: E731
    else:
        run = lambda: _in_process(sizes, units, test, gallery)  # noqa: E731
    top1 = benchmark.pedantic(run, rounds=rounds(), iterations=1, warmup_rounds=1 if path == "in_process" else 0)
    assert 0.0 <= top1 <= 1.0
    benchmark.extra_info["units"] = len(units)


def test_worker_start(benchmark, device):
    """Starting the five workers of a run (fit, brain, images and their check twins), fork server warm."""
    benchmark.group = "isolation: start"
    roles = ("fit", "brain", "images", "brain-check", "images-check")

    def start() -> None:
        with SubmissionSession(load_submission("final"), timeout=600, device=str(device)) as fresh:
            for role in roles:
                fresh.worker(role)

    start()  # the fork server itself starts once per process
    benchmark.pedantic(start, rounds=rounds(), iterations=1)
    benchmark.extra_info["workers"] = len(roles)
