"""The submission contract: what a method's code must return, and the one-line errors when it does not.

A method that raises is reported with the call that raised (``fit()``, ``embed_brain()``...), the
exception and the method; a method whose classes or outputs break the contract (not an Aligner,
embeddings that are not finite real ``(n, dim)`` floating-point arrays) gets an error that names
the call, what was expected and what it returned. The interface is checked when the method is
described, before any data is loaded; the embeddings are checked in the harness, whatever the
worker did. Each test writes a small hostile submission (see :mod:`test_integrity`).
"""

from __future__ import annotations

import json
import re
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from eegbench.cli import app
from eegbench.errors import InvalidInputError
from eegbench.metrics import check_embeddings
from eegbench.runner import run
from helpers import tiny_task, write_tiny_task_file
from test_integrity import probes, submission

#: an aligner that returns what ``brain_output`` and ``images_output`` (defined by each test) make of
#: the honest embeddings ``z``
RETURNING = '''
class Returning(Linear):
    def embed_brain(self, responses):
        return brain_output(super().embed_brain(responses))

    def embed_images(self, features):
        return images_output(super().embed_images(features))


class Method(Honest):
    def fit(self, data):
        linear = fit_linear(data)
        return Returning(linear.weights, linear.key)


def brain_output(z):
    return {brain}


def images_output(z):
    return {images}
'''


def returning(root, name, brain="z", images="z", code=""):
    """A submission whose embeddings are ``brain`` and ``images`` (expressions of the honest ``z``)."""
    return submission(root, name, RETURNING.format(brain=brain, images=images) + textwrap.dedent(code), cls="Method")


def _run(folder, results):
    return run(tiny_task(), str(folder), subjects=[1], seeds=[0], results_dir=results)


def _cli(*args):
    """The last line a command that must fail printed (it exits with 2, without a traceback or a pass)."""
    outcome = CliRunner().invoke(app, [str(a) for a in args])
    assert outcome.exit_code == 2, outcome.output
    assert "Traceback (most recent call last)" not in outcome.output and "Check passed" not in outcome.output
    return outcome.output.strip().splitlines()[-1]


# --- 1. a method that raises: one line naming the call, the exception and the method --------------------------

PLANTED = "\n\ndef planted(*args):\n    raise ValueError('planted')\n"
RAISING = {
    "fit": ("class Method(Honest):\n    fit = planted\n", "in fit() while fitting 1 unit(s)"),
    "fit_many": ("class Method(Honest):\n    fit_many = planted\n", "in fit_many() while fitting 1 unit(s)"),
    "embed_brain": (RETURNING.format(brain="planted()", images="z"), "in embed_brain() while embedding test responses"),
    "embed_images": (RETURNING.format(brain="z", images="planted()"), "in embed_images() while embedding the gallery"),
}


@pytest.mark.parametrize("call", sorted(RAISING))
def test_a_method_that_raises_fails_with_one_line_naming_the_call(tmp_path, call):
    code, where = RAISING[call]
    name = call.replace("_", "-")
    folder = submission(tmp_path, name, PLANTED + code, cls="Method")
    results = tmp_path / "results"
    line = _cli("run", "--task", write_tiny_task_file(tmp_path), "--method", folder, "--subjects", "1",
                "--seeds", "0", "--results-dir", results)
    assert line == f"Error: ValueError: planted [method '{name}', {where}]"
    # the unit's failure record keeps the method's own traceback, as for every failed unit
    (record,) = results.rglob(".*.failed.json")
    (attempt,) = json.loads(record.read_text())["errors"]
    assert attempt["error"] == f"SubmissionError: ValueError: planted [method '{name}', {where}]"
    assert str(folder / "method.py") in attempt["traceback"] and "ValueError: planted" in attempt["traceback"]


# --- 2. fit must return Aligners, embeddings must be numeric arrays ----------------------------------------------

@pytest.mark.parametrize("code, message", [
    ("class Method(Honest):\n    def fit(self, data):\n        return 42\n",
     "Method 'wrong': fit() must return an eegbench.submissions.Aligner for each unit; found 42 (int) for unit 1 "
     "of 1."),
    ("class Method(Honest):\n    def fit_many(self, units):\n        return None\n",
     "Method 'wrong': fit_many() must return a list of Aligners, one per unit (1); found None (NoneType)."),
    (RETURNING.format(brain="z.astype(object)", images="z"),
     "Method 'wrong': the output of embed_brain() must be real floating-point numbers; found dtype object (Python "
     "objects: return one numeric array)."),
    (RETURNING.format(brain="z.tolist()", images="z"),
     "Method 'wrong': the output of embed_brain() must be a numpy array or a torch tensor; found list."),
])
def test_what_a_method_returns_must_be_an_aligner_and_arrays(tmp_path, code, message):
    folder = submission(tmp_path, "wrong", code, cls="Method")
    with pytest.raises(InvalidInputError, match=f"^{re.escape(message)}$"):
        _run(folder, tmp_path / "results")


# --- 3. the interface is checked when the method is described, before any data is loaded -------------------------

@pytest.mark.parametrize("code, problem", [
    ("class Method(Honest):\n    class Hyperparameters:\n        lr = 0.1\n",
     "Hyperparameters must be a subclass of pydantic.BaseModel, not class Method.Hyperparameters"),
    ("from eegbench.submissions import Method as Base\n\n\nclass Method(Base):\n"
     "    def fit(self, data):\n        return fit_linear(data)\n", "Method does not implement feature_layers()"),
    ("from eegbench.submissions import Method as Base\n\n\nclass Method(Base):\n"
     "    def feature_layers(self, backbone):\n        return [backbone.resolve('final')]\n",
     "Method implements neither fit() nor fit_many()"),
])
def test_run_checks_the_interface_before_loading_any_data(tmp_path, monkeypatch, code, problem):
    from eegbench import plan

    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded before the method was checked")

    monkeypatch.setattr(plan, "resolve_task", no_data)
    folder = submission(tmp_path, "broken", code, cls="Method")
    with pytest.raises(InvalidInputError, match=f"^Submission 'broken' \\({re.escape(str(folder.resolve()))}\\): "
                                                f"{re.escape(problem)}\\.$"):
        _run(folder, tmp_path / "results")


# --- 4. the contract of embeddings, one check for harness, worker and metrics -----------------------------------

NAN_ROWS = "np.where(np.isin(np.arange(len(z)), [3, 7])[:, None], np.nan, z)"


@pytest.mark.parametrize("embeddings, message", [
    (np.zeros((4, 2), complex), "found dtype complex128 (complex values are never cast: return their real part or "
                                "magnitude yourself)"),
    (np.zeros((4, 2), int), "found dtype int64 (cast them with .astype(np.float32) if they are meant as numbers)"),
    (np.zeros((4, 2), bool), "found dtype bool (cast them with .astype(np.float32) if they are meant as numbers)"),
    (np.zeros((4, 2), object), "found dtype object (Python objects: return one numeric array)"),
    (np.zeros((4, 1, 2)), "must be a 2-d (4, dim) array; found shape (4, 1, 2)"),
    (np.zeros(4), "must be a 2-d (4, dim) array; found shape (4,)"),
    (np.zeros((3, 2)), "must have one row per input, (4, dim); found shape (3, 2)"),
    (np.zeros((4, 0)), "must have at least one row and one column, (4, dim); found shape (4, 0)"),
    (np.array([[0.0], [np.nan], [np.inf], [np.nan]]), "must be finite; found NaN in 2 rows (1, 3) and inf in 1 row "
                                                      "(2) of the 4 rows"),
    ([[0.0]] * 4, "must be a numpy array or a torch tensor; found list"),
])
def test_embeddings_that_break_the_contract_are_named_precisely(embeddings, message):
    with pytest.raises(InvalidInputError, match=f"^the output: .*{re.escape(message)}"):
        check_embeddings(embeddings, "the output:", 4)


def test_embeddings_that_honour_the_contract_are_float64():
    import torch

    for embeddings in (np.ones((4, 2), np.float16), torch.ones(4, 2, dtype=torch.bfloat16), np.ones((4, 2))):
        checked = check_embeddings(embeddings, "the output", 4)
        assert checked.dtype == np.float64 and checked.shape == (4, 2) and (checked == 1).all()


# --- 6. ... and eegbench check fails on each of them ---------------------------------------------------------

@pytest.mark.parametrize("brain, images, found", [
    ("z + 1j", "z", "embed_brain() must be real floating-point numbers; found dtype complex"),
    ("z", "np.round(z).astype(int)", "embed_images() must be real floating-point numbers; found dtype int64"),
    ("z[:, :0]", "z[:, :0]", "embed_images() must have at least one row and one column, (50, dim); found shape "
                             "(50, 0)"),
    (NAN_ROWS, "z", "embed_brain() must be finite; found NaN in 2 rows (3, 7) of the 50 rows"),
])
def test_check_fails_on_embeddings_that_break_the_contract(tmp_path, brain, images, found):
    folder = returning(tmp_path, "contract", brain, images)
    line = _cli("check", folder, "--task", write_tiny_task_file(tmp_path), "--subjects", "1")
    assert line.startswith(f"Error: Method 'contract': the output of {found}"), line


def test_the_harness_checks_embeddings_even_when_the_worker_does_not(tmp_path):
    """A method that disables its worker's check of its outputs is refused by the harness's own check."""
    folder = returning(tmp_path, "unchecked", NAN_ROWS, "z", code='''
        import sys


        def unchecked(embedded, label, n_rows):
            write_probe(bypassed=label)
            return np.asarray(embedded, dtype=np.float64)


        sys.modules["__main__"].check_embeddings = unchecked  # the worker runs as python -m eegbench._worker
    ''')
    with pytest.raises(InvalidInputError, match=re.escape(
            "Method 'unchecked': the output of embed_brain() must be finite; found NaN in 2 rows (3, 7) of the 50 "
            "rows")):
        _run(folder, tmp_path / "results")
    assert {"bypassed": "Method 'unchecked': the output of embed_brain()"} in probes(folder)
