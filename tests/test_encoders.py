"""Every registered brain encoder: shapes, training, members, seeding, parameter counts."""

import json
import logging

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from eegbench._check import InvalidInputError
from eegbench.cli import app
from eegbench.encoders import (EEGNet, ChannelTransformer, TSConvEmbedding, count_parameters, encoder_parameters,
                               encoders, seeded_copies)
from eegbench.metrics import retrieve
from eegbench.results import ResultStore
from eegbench.runner import run
from eegbench.tasks import task_path
from eegbench.training import ContrastiveProblem, TrainingConfig, ValidationSet, fit_contrastive
from helpers import TINY, TINY_CHANCE, tiny_task

CONFIG = TrainingConfig(epochs=6, batch_size=24, lr=1e-3, hidden_dim=16, proj_dim=8)
SHAPE = (6, 80)  # channels, times: the smallest size every encoder accepts, to keep the tests fast


def _build(name, seeds, shape=SHAPE, hidden_dim=16, dropout=0.3):
    inits = [torch.Generator().manual_seed(s) for s in seeds]
    drops = [torch.Generator().manual_seed(s + 1) for s in seeds]
    return encoders.get(name).build(len(seeds), *shape, hidden_dim, dropout, inits, drops)


MIXING = np.random.default_rng(0).normal(size=(10, SHAPE[0] * SHAPE[1]))  # image features -> responses


def _problem(seed, n=48, data_seed=0):
    """``n`` responses, each a noisy linear image of its own 10-d target features."""
    rng = np.random.default_rng(data_seed)
    targets = rng.normal(size=(n, MIXING.shape[0])).astype(np.float32)
    brain = (targets @ MIXING + 0.1 * rng.normal(size=(n, MIXING.shape[1]))).reshape(n, *SHAPE).astype(np.float32)
    return ContrastiveProblem(brain, targets, np.arange(n), seed)


@pytest.mark.parametrize("name", encoders.names())
@pytest.mark.parametrize("shape", [(6, 80), (17, 100), (63, 250), (271, 201)],
                         ids=["6x80", "synthetic-17x100", "eeg2-63x250", "meg-271x201"])
def test_output_is_one_feature_vector_per_model_and_response(name, shape):
    encoder = _build(name, [0, 1], shape)
    x = torch.randn(2, 3, *shape)
    for mode in (encoder.train, encoder.eval):
        mode()
        out = encoder(x)
        assert out.shape == (2, 3, 16)
        assert torch.isfinite(out).all()


def _validation_score(model, validation):
    gallery, targets = np.unique(validation.image_index, return_inverse=True)
    result = retrieve(model.embed_brain(validation.brain), model.embed_images(validation.targets[0][gallery]), targets)
    return -result.mean_rank


@pytest.mark.parametrize("name", encoders.names())
def test_training_reduces_the_loss_and_keeps_the_selected_epoch(name, caplog):
    """With epoch selection, the returned weights are exactly those that scored best on validation."""
    config = CONFIG.model_copy(update={"encoder": name, "select_epoch": True})
    problems = [_problem(seed=0), _problem(seed=1)]
    for problem, data_seed in zip(problems, (2, 3)):
        held_out = _problem(seed=0, n=20, data_seed=data_seed)  # new images, same response model
        problem.validation = ValidationSet(held_out.brain, held_out.targets, held_out.image_index, "mean_rank")
    with caplog.at_level(logging.INFO, logger="eegbench"):
        stack = fit_contrastive(problems, config)
    n_parameters = encoder_parameters(name, *SHAPE, 16)
    assert f"Encoder {name} on 6 channels x 80 samples: {n_parameters:,} trainable parameters" in caplog.text
    assert (stack.loss_history[-1] < 0.8 * stack.loss_history[0]).all()
    for k, problem in enumerate(problems):
        best = stack.best_epoch[k] - 1
        assert _validation_score(stack.member(k), problem.validation) == stack.validation_history[best, k]
        assert _validation_score(stack.last.member(k), problem.validation) == stack.validation_history[-1, k]
    assert stack.member(0).embed_brain(problems[0].brain[:5]).shape == (5, 8)


def _embed_with_batch_statistics(stack, k, x):
    """Model ``k``'s brain embeddings computed in training mode (BatchNorm on batch statistics)."""
    with torch.no_grad():
        return stack.model.train().embed_brain(torch.as_tensor(x)[None], [k])[0].numpy()


@pytest.mark.parametrize("name", encoders.names())
def test_stacked_model_equals_model_trained_alone(name):
    """Initialisation, batch order and dropout masks all come from the model's own seed.

    Compared where training acts: training losses, and embeddings with BatchNorm on batch
    statistics. Parameters that get no true gradient (a bias right before BatchNorm, attention's
    key bias) are moved by AdamW on rounding noise alone, so in evaluation mode (running
    statistics) a stack and a lone model agree only to about 1e-2; the grouped convolutions round
    differently for different K.
    """
    config = CONFIG.model_copy(update={"encoder": name, "epochs": 2})
    shared = _problem(seed=5)
    stack = fit_contrastive([_problem(seed=9, data_seed=1), shared], config)
    alone = fit_contrastive([shared], config)
    np.testing.assert_allclose(stack.loss_history[:, 1], alone.loss_history[:, 0], rtol=1e-5)
    x = shared.brain[:10]
    np.testing.assert_allclose(_embed_with_batch_statistics(stack, 1, x), _embed_with_batch_statistics(alone, 0, x),
                               atol=1e-5)


SINGLE_MODEL = {"tsconv": TSConvEmbedding, "atm": ChannelTransformer, "eegnet": EEGNet}


@pytest.mark.parametrize("name", sorted(SINGLE_MODEL))
def test_stacked_extractor_computes_what_each_single_model_computes(name):
    """The grouped / batched form equals each model's own definition: training pass with its dropout
    masks and batch statistics, then an evaluation pass with the running statistics it updated."""
    extractor = SINGLE_MODEL[name]

    def copies():
        return seeded_copies(lambda drop: extractor(*SHAPE, 0.3, drop),
                             [torch.Generator().manual_seed(s) for s in (0, 1, 2)],
                             [torch.Generator().manual_seed(s + 10) for s in (0, 1, 2)])

    alone, stacked = copies(), extractor.stack(copies())
    x = torch.randn(3, 5, *SHAPE)
    for training in (True, False):
        with torch.no_grad():
            out = stacked.train(training)(x)
            for k, model in enumerate(alone):
                torch.testing.assert_close(out[k], model.train(training)(x[k]), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", encoders.names())
def test_members_select_models(name):
    encoder = _build(name, [0, 1, 2]).eval()
    x = torch.randn(3, 4, *SHAPE)
    with torch.no_grad():
        everyone = encoder(x)
        torch.testing.assert_close(encoder(x[[2, 0]], [2, 0]), everyone[[2, 0]])
        torch.testing.assert_close(encoder(x[[1]], [1]), everyone[[1]])


@pytest.mark.parametrize("name", encoders.names())
def test_initial_weights_depend_only_on_the_models_own_seed(name):
    x = torch.randn(4, *SHAPE)
    torch.manual_seed(0)
    alone = _build(name, [7]).eval()
    torch.manual_seed(1)  # the global RNG plays no part
    stacked = _build(name, [3, 7, 5]).eval()
    with torch.no_grad():
        out = stacked(x.expand(3, *x.shape))
        torch.testing.assert_close(out[1], alone(x[None])[0])
        assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("name", encoders.names())
def test_building_and_dropout_leave_the_global_rng_alone(name):
    x = torch.randn(2, 8, *SHAPE)
    state = torch.get_rng_state()
    encoder = _build(name, [0, 1], dropout=0.5).train()
    first, second = encoder(x), encoder(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.allclose(first, second)  # fresh dropout masks from the models' own generators
    deterministic = _build(name, [0, 1], dropout=0.0).train()
    torch.testing.assert_close(deterministic(x), deterministic(x))


# Known configurations, derived by hand (weights + biases + BatchNorm/LayerNorm affine parameters).
EXPECTED_PARAMETERS = {
    # UBP reports 5.40 M for 17 channels x 250 samples -> 1024:
    # (4250 * 1024 + 1024) + (1024 * 1024 + 1024) + 2 * 1024.
    "eegproject": ((17, 250, 1024), 5_404_672),
    # NICE (~1.80 M): TSConv (25*40+40) + 80 + (40*40*63+40) + 80 + (40*40+40) = 103,680 (~0.104 M),
    # 40 filters x 36 patches = 1440, then Proj_eeg (1440*768+768) + (768*768+768) + 2*768.
    "tsconv": ((63, 250, 768), 1_802_496),
    # ATM-S without subject token (~3.08 M): d_model 252; embedding 250*252+252; attention 4*(252*252+252);
    # feed-forward (252*256+256) + (256*252+252); 3 LayerNorms 3*504; TSConv 103,680; Proj_eeg 1440 -> 1024.
    "atm": ((63, 250, 1024), 3_080_232),
    # EEGNet-8,2: 8*64 + 2*8 + 16*63 + 2*16 + 16*16 + 16*16 + 2*16 = 2,112; 16 x (250 // 4 // 8) = 112
    # features, then the residual head (112*1024+1024) + (1024*1024+1024) + 2*1024.
    "eegnet": ((63, 250, 1024), 1_169_472),
}


def test_every_encoder_has_a_parameter_count_row():
    assert set(EXPECTED_PARAMETERS) == set(encoders.names()), "add a row to EXPECTED_PARAMETERS"


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_parameter_count_of_a_known_configuration(name):
    shape, expected = EXPECTED_PARAMETERS[name]
    assert encoder_parameters(name, *shape) == expected


@pytest.mark.parametrize("name", encoders.names())
def test_parameter_helper_counts_one_built_model(name):
    assert encoder_parameters(name, *SHAPE, 16) == count_parameters(_build(name, [0, 1]), n_models=2)


@pytest.mark.parametrize(("name", "minimum"), [("tsconv", 75), ("atm", 73), ("eegnet", 32), ("eegproject", 1)])
def test_minimum_response_length(name, minimum):
    encoder = _build(name, [0], (4, minimum))
    assert encoder(torch.randn(1, 2, 4, minimum)).shape == (1, 2, 16)
    if minimum > 1:
        with pytest.raises(InvalidInputError, match=f"{name!r} encoder needs at least {minimum} time samples"):
            _build(name, [0], (4, minimum - 1))


def test_unknown_encoder_name_in_the_parameter_helper():
    with pytest.raises(InvalidInputError, match="Unknown encoder 'tsconf'. Did you mean 'tsconv'?"):
        encoder_parameters("tsconf", 17, 100, 16)


def test_encoder_chosen_in_the_task_file_is_trained_and_recorded(tmp_path):
    base = tiny_task()
    task = base.with_overrides(training={**base.training, "encoder": "tsconv", "epochs": 2})
    record = run(task, "final", results_dir=tmp_path, subjects=[1]).records[0]
    assert record.method.hyperparameters["encoder"] == "tsconv"
    details = record.report.details
    assert details["encoder"] == "tsconv"
    n_channels, n_times = len(record.dataset.channels), record.dataset.n_times
    assert details["encoder_parameters"] == encoder_parameters("tsconv", n_channels, n_times, 256)
    assert record.report.n_parameters > details["encoder_parameters"]


def test_encoder_option_of_the_command_line(tmp_path):
    data = yaml.safe_load(task_path("synthetic-intra").read_text())
    data["dataset"]["options"].update(TINY)
    data["chance"] = TINY_CHANCE
    task_file = tmp_path / "synthetic-intra.yaml"
    task_file.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["run", "--task", str(task_file), "--method", "final", "--encoder", "eegnet",
                                      "--epochs", "1", "--subjects", "1", "--results-dir", str(tmp_path / "res"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["hyperparameters"]["encoder"] == "eegnet" and summary["hp_tag"].startswith("hp-")
    (record,) = ResultStore(tmp_path / "res").records()
    assert record.report.details["encoder"] == "eegnet" and record.report.details["encoder_parameters"] > 0


def test_unknown_encoder_on_the_command_line_exits_2():
    result = CliRunner().invoke(app, ["run", "--encoder", "tsconf"])
    assert result.exit_code == 2
    assert "encoder: Unknown encoder 'tsconf'. Did you mean 'tsconv'?" in " ".join(result.output.split())
