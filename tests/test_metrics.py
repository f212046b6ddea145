from pathlib import Path

import numpy as np
import pytest

from eegbench.errors import InvalidInputError
from eegbench.metrics import cosine_similarity, metric, retrieve, top_k_accuracy

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nice_clip_vitl14"


def test_perfect_and_reversed_retrieval():
    eye = np.eye(5)
    assert top_k_accuracy(eye, eye, 1) == 1.0
    result = retrieve(eye, eye[::-1])  # brain i matches gallery item 4 - i
    assert result.top_k(1) == pytest.approx(1 / 5)  # only the middle item is right
    np.testing.assert_array_equal(result.n_better, [1, 1, 0, 1, 1])


def test_known_ranks_ties_and_top_k():
    brain = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    gallery = np.array([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0]])
    # row 0: sims (.995, 1, 0), true item 0 -> 1 better; row 1: (.0995, 0, 1), true item 1 -> 2 better;
    # row 2: (.774, .707, .707), true item 2 -> 1 better and tied with item 1
    result = retrieve(brain, gallery)
    np.testing.assert_array_equal(result.n_better, [1, 2, 1])
    np.testing.assert_array_equal(result.n_tied, [0, 0, 1])
    assert result.top_k(1) == 0.0
    assert result.top_k(2) == pytest.approx((1 + 0 + 0.5) / 3)  # the tie is won half of the time
    assert result.top_k(3) == 1.0
    assert result.mean_rank == pytest.approx((2 + 3 + 2.5) / 3)


def test_ties_score_chance_not_perfect():
    constant = np.ones((200, 8))
    result = retrieve(constant, constant)
    assert result.top_k(1) == pytest.approx(1 / 200)
    assert result.top_k(5) == pytest.approx(5 / 200)
    assert result.n_gallery == 200


def test_explicit_targets_and_validation():
    gallery = np.eye(3)
    brain = gallery[[2, 0]]
    assert retrieve(brain, gallery, targets=[2, 0]).top_k(1) == 1.0
    with pytest.raises(InvalidInputError, match=r"^targets must be 2 gallery indices in \[0, 3\)\.$"):
        retrieve(brain, gallery, targets=[3, 0])
    with pytest.raises(InvalidInputError, match=r"^4 brain embeddings but 3 image embeddings: pass targets"):
        retrieve(np.eye(4, 3), gallery)


@pytest.mark.parametrize("function", [retrieve, top_k_accuracy, cosine_similarity])
def test_metric_functions_refuse_embeddings_that_break_the_contract(function):
    """Every public metric function checks its inputs (eegbench.metrics.check_embeddings) instead of failing in
    torch, or scoring NaN embeddings as perfect (a NaN ties with nothing)."""
    import torch

    good = np.eye(200, 768)
    for bad in (good[:, None, :], torch.from_numpy(good[:, None, :])):
        with pytest.raises(InvalidInputError, match=r"^brain embeddings must be a 2-d \(n, dim\) array; found shape "
                                                    r"\(200, 1, 768\)\.$"):
            function(bad, good)
    with pytest.raises(InvalidInputError, match=r"^brain and image embeddings must have the same width \(dim\); "
                                                r"found shapes \(200, 768\) and \(200, 512\)\.$"):
        function(good, good[:, :512])
    with pytest.raises(InvalidInputError, match=r"^image embeddings must be finite; found NaN in 200 rows "
                                                r"\(0, 1, 2, 3, 4, \.\.\.\) of the 200 rows"):
        function(good, np.full_like(good, np.nan))
    with pytest.raises(InvalidInputError, match=r"^brain embeddings must be real floating-point numbers; found "
                                                r"dtype complex128"):
        function(good + 1j, good)


def test_cosine_similarity_is_scale_invariant():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    np.testing.assert_allclose(cosine_similarity(a * 7, b * 0.1), cosine_similarity(a, b))


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="shared NICE CLIP fixture not available")
def test_real_clip_centroid_retrieval():
    """Concept centroids retrieve their own THINGS-EEG2 test image far above chance, below 100 %."""
    test = np.load(FIXTURE / "clip_feature_maps_test.npy")[:, 0]
    centres = np.load(FIXTURE / "center_clip.npy")
    result = retrieve(centres, test)
    assert result.n_gallery == 200
    assert 0.85 < result.top_k(1) < 1.0  # the fixture's README measured 92.5 %
    assert result.top_k(5) > result.top_k(1)


def test_metrics_by_name_score_rank_and_know_their_chance():
    brain = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    gallery = np.array([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0]])
    result = retrieve(brain, gallery)
    top2, rank = metric("top2"), metric("mean_rank")
    assert (top2.k, top2.higher_is_better, rank.k, rank.higher_is_better) == (2, True, None, False)
    assert top2.score(result) == top2.selection_score(result) == result.top_k(2)
    assert rank.score(result) == result.mean_rank and rank.selection_score(result) == -result.mean_rank
    assert (metric("top1").chance(200), metric("top5").chance(200), metric("top5").chance(3)) == (0.005, 0.025, 1.0)
    constant = retrieve(np.ones((9, 2)), np.ones((9, 2)))  # identical embeddings score exactly chance
    assert [m.score(constant) for m in (metric("top1"), metric("top5"), rank)] == pytest.approx(
        [m.chance(9) for m in (metric("top1"), metric("top5"), rank)])


@pytest.mark.parametrize("name", ["top0", "top05", "top", "top-1", "Top1", "accuracy", "mean rank", 5])
def test_unknown_metric_names_are_refused(name):
    with pytest.raises(InvalidInputError, match=r"Unknown metric .*: metrics are top<k> \(top1, top5...\), mean_rank and median_rank"):
        metric(name)
