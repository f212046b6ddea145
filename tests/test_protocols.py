import numpy as np
import pytest
import torch

from eegbench._check import InvalidInputError
from eegbench.protocols import (Normalizer, ResponseCache, ResponsePipeline, plan_units, training_data,
                                validation_mask)
from helpers import tiny_task


def test_intra_units_cover_subjects_and_seeds(tiny_dataset):
    task = tiny_task().with_overrides(seeds=[0, 1])
    units = plan_units(task, tiny_dataset)
    assert [(u.subject, u.seed, u.train_subjects) for u in units] == [
        ("sub-01", 0, ("sub-01",)), ("sub-01", 1, ("sub-01",)),
        ("sub-02", 0, ("sub-02",)), ("sub-02", 1, ("sub-02",))]
    assert [u.subject for u in plan_units(task, tiny_dataset, subjects=[2], seeds=[7])] == ["sub-02"]


def test_inter_units_leave_the_evaluated_subject_out(tiny_dataset):
    units = plan_units(tiny_task("synthetic-inter"), tiny_dataset)
    for unit in units:
        assert unit.subject not in unit.train_subjects
        assert set(unit.train_subjects) | {unit.subject} == set(tiny_dataset.subjects)


def test_subjects_outside_the_task_are_refused(tiny_dataset):
    task = tiny_task().with_overrides(subjects=[1])
    with pytest.raises(InvalidInputError, match=r"Subjects \['sub-02'\] are not part of task"):
        plan_units(task, tiny_dataset, subjects=[2])


def test_validation_split_is_concept_disjoint_and_seeded(tiny_dataset):
    task = tiny_task()
    mask = validation_mask(task, tiny_dataset)
    concepts = tiny_dataset.train_images.concept_ids
    assert set(concepts[mask]).isdisjoint(concepts[~mask])
    assert len(set(concepts[mask])) == 10  # 10 % of 100 concepts
    np.testing.assert_array_equal(mask, validation_mask(task, tiny_dataset))
    other = validation_mask(task.with_overrides(validation={"fraction": 0.1, "seed": 1}), tiny_dataset)
    assert not np.array_equal(mask, other)


def test_pipeline_selects_channels_window_and_averages(tiny_dataset):
    task = tiny_task().with_overrides(channels=["Oz", "O1"], time_window=(0.0, 0.5))
    pipeline = ResponsePipeline(task, tiny_dataset.info)
    subject = tiny_dataset.load_subject(1)
    train, index = pipeline.train(subject.train)
    assert train.shape == (400, 2, 50) and pipeline.info.ch_names == ("Oz", "O1")
    oz, o1 = tiny_dataset.info.ch_names.index("Oz"), tiny_dataset.info.ch_names.index("O1")
    expected = np.asarray(subject.train)[:, :, [oz, o1], 10:60].mean(1)
    np.testing.assert_allclose(train, expected, rtol=1e-6)
    np.testing.assert_array_equal(index, np.arange(400))
    single = ResponsePipeline(task.with_overrides(repetitions={"train": "single", "test": "mean"}), tiny_dataset.info)
    responses, index = single.train(subject.train)
    assert responses.shape == (1600, 2, 50) and index[:5].tolist() == [0, 0, 0, 0, 1]
    assert pipeline.test(subject.test, n_repetitions=3).shape == (50, 2, 50)


def test_training_data_holds_no_test_data_and_uses_training_statistics(tiny_dataset):
    task = tiny_task("synthetic-inter")
    unit = plan_units(task, tiny_dataset, subjects=[1])[0]
    features = {"final": np.zeros((400, 4), np.float32)}
    data, normalizer = training_data(task, tiny_dataset, unit, features, [], torch.device("cpu"))
    assert set(data.train.subjects) == {"sub-02"} and set(data.val.subjects) == {"sub-02"}
    assert len(data.train) + len(data.val) == 400
    pooled = np.concatenate([data.train.responses, data.val.responses])
    np.testing.assert_allclose(pooled.mean(0), 0, atol=1e-4)  # z-scored with the training subjects' statistics
    np.testing.assert_allclose(pooled.std(0), 1, atol=1e-3)
    raw = ResponsePipeline(task, tiny_dataset.info).train(tiny_dataset.load_subject(2).train)[0]
    np.testing.assert_allclose(normalizer.mean, raw.mean(0), rtol=1e-4, atol=1e-12)
    assert not hasattr(data, "test")


def test_the_seeds_of_a_subject_share_read_only_responses(tiny_dataset):
    task = tiny_task()
    cache = ResponseCache()
    features = {"final": np.zeros((400, 4), np.float32)}
    first, second = (training_data(task, tiny_dataset, unit, features, [], torch.device("cpu"), cache=cache)[0]
                     for unit in plan_units(task, tiny_dataset, subjects=[1], seeds=[0, 1]))
    assert (first.seed, second.seed) == (0, 1) and first.train.responses is second.train.responses
    with pytest.raises(ValueError, match="read-only"):
        first.train.responses[0] = 0.0  # a method changing them in place would change its neighbours' data


def test_normalizer_disabled_is_identity():
    x = np.random.default_rng(0).normal(size=(10, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(Normalizer.fit(x, enabled=False)(x), x)


def test_normalizer_statistics_equal_numpys_bit_for_bit():
    """The block-wise statistics are exactly numpy's whole-array ones (results stay reproducible)."""
    rng = np.random.default_rng(3)
    responses = (rng.standard_normal((301, 7, 130)) * 3e-6 + 1e-6).astype(np.float32)
    normalizer = Normalizer.fit(responses, enabled=True)
    np.testing.assert_array_equal(normalizer.mean, responses.mean(0, dtype=np.float64).astype(np.float32))
    np.testing.assert_array_equal(normalizer.std, responses.std(0, dtype=np.float64).astype(np.float32))
    np.testing.assert_array_equal(normalizer(responses), ((responses - normalizer.mean) / normalizer.std))


@pytest.mark.parametrize("base", ["synthetic-intra", "synthetic-inter"])
def test_a_subject_with_damaged_files_fails_when_units_are_planned(tiny_dataset, base):
    import dataclasses

    from eegbench._check import DataError

    broken = dataclasses.replace(tiny_dataset, unavailable={"sub-02": DataError("sub-02: file x is truncated")})
    task = tiny_task(base)
    with pytest.raises(DataError, match="sub-02: file x is truncated"):
        plan_units(task, broken)  # all subjects: sub-02 is evaluated (intra) or trained on (inter)
    if base == "synthetic-intra":
        assert [u.subject for u in plan_units(task, broken, subjects=[1])] == ["sub-01"]
    else:
        with pytest.raises(DataError, match="truncated"):
            plan_units(task, broken, subjects=[1])  # sub-02's training responses would be needed
