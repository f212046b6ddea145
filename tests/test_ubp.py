"""The UBP reference submission: its blur-level rule, its views, and a run on the tiny task."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from eegbench.runner import run
from eegbench.submissions import import_method, load_submission
from eegbench.views import GaussianBlur
from helpers import TINY_CHANCE, tiny_task

UBP = import_method(load_submission("ubp"))
module = __import__(UBP.__module__, fromlist=["blur_labels"])


def test_a_sample_above_its_batch_interval_gets_less_blur_and_one_below_gets_more():
    averages = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])  # mean 3, std (ddof 1) 1.58: interval 3 +/- 3.10
    current = torch.tensor([6.2, 3.0, -0.2, 0.0, 6.0])
    labels = module.blur_labels(current, averages, z=1.96)
    assert labels.tolist() == [module.LOW, module.MEDIUM, module.HIGH, module.MEDIUM, module.MEDIUM]
    # a narrower interval makes more samples outliers
    assert module.blur_labels(current, averages, z=0.5).tolist() == [module.LOW, module.MEDIUM, module.HIGH,
                                                                      module.HIGH, module.LOW]


def test_the_views_are_three_foveated_blurs_of_kernels_r0_minus_c_r0_and_r0_plus_c():
    views = UBP().image_views()
    assert views == [GaussianBlur(sigma=7.1, fovea=3.0), GaussianBlur(sigma=8.0, fovea=3.0),
                     GaussianBlur(sigma=8.9, fovea=3.0)]  # OpenCV's sigmas of kernels 45, 51, 57
    wider = UBP(UBP.Hyperparameters(r0=31, c=10, fovea=2.0)).image_views()
    assert [view.sigma for view in wider] == [3.5, 5.0, 6.5] and {view.fovea for view in wider} == {2.0}


def test_the_defaults_are_the_papers_settings_and_bad_kernels_are_refused():
    hp = UBP.Hyperparameters()
    assert (hp.epochs, hp.batch_size, hp.lr, hp.weight_decay, hp.dropout) == (50, 1024, 1e-4, 1e-4, 0.3)
    assert (hp.r0, hp.c, hp.fovea) == (51, 6, 3.0)
    for bad, message in [({"r0": 50}, "odd"), ({"c": 5}, "even"), ({"r0": 7, "c": 6}, "at least 3")]:
        with pytest.raises(ValidationError, match=message):
            UBP.Hyperparameters(**bad)


def test_it_learns_on_the_tiny_task_and_the_record_lists_the_three_views(tmp_path):
    result = run(tiny_task(), "ubp", subjects=[1], seeds=[0], results_dir=tmp_path)
    (record,) = result.records
    assert [view.key for view in record.backbone.views] == [view.key for view in UBP().image_views()]
    assert record.scores["top1"] > 3 * TINY_CHANCE["top1"]
    report = record.report
    assert len(report.validation_by_epoch) == 20 and 1 <= report.selected_epoch <= 20
    assert report.details["blur_kernels"] == [45, 51, 57]
    assert "last_epoch" in record.alternatives
