"""The SAMGA reference submission: its MMD, its router and runs on the tiny intra and joint tasks."""

import sys

import numpy as np
import pytest
import torch

from eegbench.backbones import LayerRef
from eegbench.runner import run
from eegbench.submissions import import_method, load_submission
from helpers import tiny_task


@pytest.fixture(scope="module")
def samga():
    """The submission's module (imported as the harness's workers import it)."""
    return sys.modules[import_method(load_submission("samga")).__module__]


def test_mmd_is_near_zero_for_one_distribution_and_positive_for_shifted_samples(samga):
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 400, 8, generator=generator) * 0.3
    sigmas = [0.1, 0.2, 0.5, 1.0, 2.0]
    same = samga.mmd_rbf(x, y, sigmas)
    shifted = samga.mmd_rbf(x, y + 0.5, sigmas)
    assert 0.0 <= same.item() < 0.01
    assert shifted.item() > 10 * max(same.item(), 1e-4)
    assert samga.mmd_rbf(x, x.clone(), sigmas).item() < 0.01  # unbiased: the diagonal is left out


def test_router_starts_at_the_middle_layer_and_tests_without_subjects(samga):
    hp = samga.SamgaHyperparameters(hidden_dim=16, proj_dim=8)
    net = samga.SamgaNet(17, 20, [12, 12, 6, 12, 12], 3, hp, seed=0, device="cpu")
    weights = net.layer_weights()
    assert int(weights.argmax()) == 2
    assert torch.allclose(weights, torch.softmax(torch.tensor([-2.0, -1.0, 0.0, -1.0, -2.0]), -1))
    with torch.no_grad():
        net.subject_bias.copy_(torch.randn(3, 5))
    layers = [LayerRef(f"blocks.{i}", f"blocks.{i}", "gap", i + 2, 8) for i in range(5)]
    features = {ref.key: np.random.default_rng(i).normal(size=(4, w)).astype(np.float32)
                for i, (ref, w) in enumerate(zip(layers, [12, 12, 6, 12, 12]))}
    before = samga.SamgaAligner(net, layers).embed_images(features)
    kept = torch.ones(2)
    assert not torch.allclose(net.training_weights(torch.tensor([0, 1]), kept),
                              weights.expand(2, 5))  # training routes by subject...
    with torch.no_grad():
        net.subject_bias.zero_()
    assert np.allclose(before, samga.SamgaAligner(net, layers).embed_images(features))  # ...testing does not


@pytest.mark.parametrize("base", ["synthetic-intra", "synthetic-joint"])
def test_samga_runs_above_chance_and_reports_its_mixed_layers(base, tmp_path):
    task = tiny_task(base)
    subjects = [1, 2] if base == "synthetic-joint" else [1]  # the joint model learns a bias per subject
    result = run(task, "samga", results_dir=tmp_path, subjects=subjects, hyperparameters={"epochs": 6})
    assert result.summary()["metrics"]["top1"]["mean"] > 3 * task.chance["top1"]
    assert result.layer_setting.startswith("samga:blocks.")
    record = result.records[0]
    report = record.report
    assert len(report.layers) >= 2 and sum(use.weight for use in report.layers) == pytest.approx(1.0, abs=1e-5)
    assert len(report.validation_by_epoch) == 6
    assert report.selected_epoch == int(np.argmax(report.validation_by_epoch)) + 1
    assert set(record.alternatives["last_epoch"]) >= {"top1", "top5"}
    assert len(report.details["subjects"]) == (2 if base == "synthetic-joint" else 1)
