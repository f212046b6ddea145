import numpy as np
import pytest
import torch

from eegbench._check import InvalidInputError
from eegbench.encoders import StackedLinear, encoders
from eegbench.training import ContrastiveProblem, TrainingConfig, fit_contrastive, info_nce, smooth_channels

CONFIG = TrainingConfig(epochs=3, batch_size=32, lr=1e-3, hidden_dim=16, proj_dim=8)


def _problem(seed, n=96, dim=12, data_seed=0):
    rng = np.random.default_rng(data_seed)
    targets = rng.normal(size=(n, dim)).astype(np.float32)
    brain = (targets @ rng.normal(size=(dim, 3 * 5))).reshape(n, 3, 5).astype(np.float32)
    brain += 0.1 * rng.normal(size=brain.shape).astype(np.float32)
    return ContrastiveProblem(brain, targets, np.arange(n), seed)


def test_stacked_model_equals_model_trained_alone():
    """A model's result does not depend on the other models in its stack (own RNG streams)."""
    shared = _problem(seed=5)
    other = ContrastiveProblem(shared.brain, np.random.default_rng(1).normal(size=(96, 20)).astype(np.float32),
                               shared.image_index, seed=9)
    stack = fit_contrastive([other, shared, _problem(seed=2, data_seed=3)], CONFIG)
    alone = fit_contrastive([shared], CONFIG)
    x = shared.brain[:10]
    np.testing.assert_allclose(stack.member(1).embed_brain(x), alone.member(0).embed_brain(x), atol=1e-6)
    np.testing.assert_allclose(stack.member(1).embed_images(shared.targets[:10]),
                               alone.member(0).embed_images(shared.targets[:10]), atol=1e-6)
    np.testing.assert_allclose(stack.loss_history[:, 1], alone.loss_history[:, 0], rtol=1e-5)


def test_seeds_change_the_model_and_training_reduces_loss():
    config = CONFIG.model_copy(update={"epochs": 30})
    stack = fit_contrastive([_problem(seed=0), _problem(seed=1)], config)
    x = _problem(seed=0).brain[:5]
    assert not np.allclose(stack.member(0).embed_brain(x), stack.member(1).embed_brain(x))
    assert (stack.loss_history[-1] < 0.7 * stack.loss_history[0]).all()
    embeddings = stack.member(0).embed_brain(x)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)  # L2-normalised


def test_learnable_temperature_is_trained():
    config = CONFIG.model_copy(update={"learnable_temperature": True})
    stack = fit_contrastive([_problem(seed=0)], config)
    assert stack.model.log_scale.requires_grad
    assert not torch.isclose(stack.model.log_scale[0], torch.tensor(np.log(1 / 0.07), dtype=torch.float32))


def test_parameter_count_matches_the_architecture():
    stack = fit_contrastive([_problem(seed=0)], CONFIG)
    c_t, h, p, d = 15, 16, 8, 12
    expected = (c_t * h + h) + (h * h + h) + 2 * h + (h * p + p) + (d * p + p)
    assert stack.member(0).n_parameters == expected


def test_problems_must_share_sample_counts():
    with pytest.raises(InvalidInputError, match="equal sample counts"):
        fit_contrastive([_problem(0, n=96), _problem(0, n=64)], CONFIG)


def test_stacked_linear_pads_narrow_inputs_with_zero_rows():
    gens = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)]
    layer = StackedLinear(2, 6, 3, gens, fan_in=[4, 6])
    assert torch.all(layer.weight[0, 4:] == 0) and torch.all(layer.weight[1, 4:] != 0)
    assert layer.weight[0].abs().max() <= 0.5 and layer.weight[1].abs().max() <= 6**-0.5  # U(+-1/sqrt(fan_in))
    x = torch.randn(2, 5, 6)
    x[0, :, 4:] = 123.0  # padding columns of model 0 are ignored
    torch.testing.assert_close(layer(x)[0], x[0, :, :4] @ layer.weight[0, :4] + layer.bias[0])


def test_unknown_encoder_lists_the_registered_ones():
    with pytest.raises(InvalidInputError, match=r"Valid encoders: (\w+, )*eegproject"):
        encoders.get("transformer9000")


def test_compiled_training_step_matches_eager(monkeypatch):
    """EEGBENCH_COMPILE=1 compiles the loss with torch.compile; the trained model is the same."""
    rng = np.random.default_rng(0)
    brain = rng.standard_normal((64, 4, 10), dtype=np.float32)
    targets = rng.standard_normal((64, 8), dtype=np.float32)
    config = TrainingConfig(epochs=2, batch_size=32, hidden_dim=16, proj_dim=8, dropout=0.0)
    problem = ContrastiveProblem(brain, targets, np.arange(64), seed=0)
    eager = fit_contrastive([problem], config)
    monkeypatch.setenv("EEGBENCH_COMPILE", "1")
    compiled = fit_contrastive([problem], config)
    np.testing.assert_allclose(compiled.loss_history, eager.loss_history, rtol=1e-4)
    np.testing.assert_allclose(compiled.member(0).embed_brain(brain), eager.member(0).embed_brain(brain), atol=1e-4)


def test_info_nce_is_low_for_matched_pairs_and_batches_over_models():
    images = torch.nn.functional.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    matched, shuffled = info_nce(images, images, 20.0), info_nce(images.flip(0), images, 20.0)
    assert matched < 0.1 < np.log(8) < shuffled
    stacked = info_nce(torch.stack([images, images.flip(0)]), torch.stack([images, images]), torch.tensor([20.0, 20.0]))
    torch.testing.assert_close(stacked, torch.stack([matched, shuffled]))


def test_smooth_channels_averages_a_seeded_share_of_channels():
    responses = np.random.default_rng(0).normal(size=(400, 5, 40)).astype(np.float32)
    responses.flags.writeable = False  # the harness's arrays are read-only: a copy is returned
    smoothed = smooth_channels(responses, 5, 0.3, seed=1)
    changed = ~np.isclose(smoothed, responses).all(-1)
    assert 0.25 < changed.mean() < 0.35
    n, c = np.argwhere(changed)[0]
    np.testing.assert_allclose(smoothed[n, c], np.convolve(responses[n, c], np.ones(5) / 5, mode="same"), rtol=1e-5)
    np.testing.assert_array_equal(smoothed, smooth_channels(responses, 5, 0.3, seed=1))
    assert not np.array_equal(smoothed, smooth_channels(responses, 5, 0.3, seed=2))
    with pytest.raises(InvalidInputError, match="kernel >= 1"):
        smooth_channels(responses, 0, 0.3, seed=1)
