"""Evaluation integrity: hostile submissions are refused, fail cleanly, or score at chance.

Each test writes a small submission that tries one way of cheating the harness, runs it on the
tiny synthetic task, and checks the harness's verdict; where the submission probes what it can
reach, it writes what it found into a probe file that the test reads.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from eegbench.errors import InvalidInputError, SubmissionError, TransductiveMethodError
from eegbench.isolation import sandbox_available
from eegbench.results import ResultStore
from eegbench.runner import run
from helpers import tiny_task

#: an honest, fast method (closed-form ridge in its dual form) that exploits build on
HONEST = '''
import json, os, sys
import numpy as np
from eegbench.submissions import Aligner, Method

PROBE = {probe!r}


def write_probe(**found):
    with open(PROBE, "a") as probe:
        probe.write(json.dumps(found) + "\\n")


class Linear(Aligner):
    def __init__(self, weights, key):
        self.weights, self.key = weights, key

    def embed_brain(self, responses):
        return np.asarray(responses).reshape(len(responses), -1) @ self.weights

    def embed_images(self, features):
        return np.asarray(features[self.key])


def fit_linear(data):
    x = data.train.responses.reshape(len(data.train), -1).astype(np.float64)
    y = data.features[data.layers[0].key][data.train.image_index]
    weights = x.T @ np.linalg.solve(x @ x.T + 10.0 * np.eye(len(x)), y)
    return Linear(weights.astype(np.float32), data.layers[0].key)


class Honest(Method):
    def feature_layers(self, backbone):
        return [backbone.resolve("final")]

    def fit(self, data):
        return fit_linear(data)
'''


def submission(root: Path, name: str, code: str = "", cls: str = "Honest") -> Path:
    """Write submission ``name`` (the honest method plus ``code``) under ``root``; return its folder."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "submission.yaml").write_text(textwrap.dedent(f"""\
        id: {name}
        name: {name}
        authors: [Mallory]
        description: test submission
        citation: none
        license: MIT
        features: final
        entrypoint: "method:{cls}"
    """))
    probe = root / f"{name}.probe"
    (folder / "method.py").write_text(HONEST.format(probe=str(probe)) + textwrap.dedent(code))
    return folder


def probes(folder: Path) -> list[dict]:
    path = folder.parent / f"{folder.name}.probe"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _run(folder: Path, results: Path, **options):
    options = {"subjects": [1], "seeds": [0], "results_dir": results, **options}
    return run(tiny_task(options.pop("base", "synthetic-intra")), str(folder), **options)


def _top1(result) -> float:
    return result.summary()["metrics"]["top1"]["mean"]


@pytest.fixture(scope="module")
def honest_top1(tmp_path_factory):
    root = tmp_path_factory.mktemp("subs")
    return _top1(_run(submission(root, "honest"), root / "results"))


def test_the_honest_baseline_decodes(honest_top1):
    assert honest_top1 > 3 * 0.02


def test_recomputing_the_harness_orders_from_the_seed_scores_chance(tmp_path, monkeypatch):
    """The old harness drew its orders from the unit's seed; now they come from the OS and stay secret."""
    folder = submission(tmp_path, "seed-orders", '''
        class ByOrder(Aligner):
            def __init__(self, seed):
                self.seed = seed

            def _one_hot(self, n, which):
                rng = np.random.default_rng([self.seed, 0xE7A1])
                orders = rng.permutation(n), rng.permutation(n)
                return np.eye(n)[orders[which]]

            def embed_brain(self, responses):
                return self._one_hot(len(responses), 0)

            def embed_images(self, features):
                return self._one_hot(len(next(iter(features.values()))), 1)


        class SeedOrders(Honest):
            def fit(self, data):
                return ByOrder(data.seed)
    ''', cls="SeedOrders")
    with pytest.raises(TransductiveMethodError):  # its rows depend on the batch, which is refused too
        _run(folder, tmp_path / "results")
    # and with the inductive check off, the secret orders alone leave it at chance
    from eegbench import scoring

    monkeypatch.setattr(scoring.HiddenScorer, "_check_inductive", lambda *args: None)
    assert _top1(_run(folder, tmp_path / "results")) < 0.12


def test_fit_cannot_reach_the_harness_state_or_test_data(tmp_path):
    """Walking frames and the garbage collector from fit finds no dataset, gallery or run context."""
    folder = submission(tmp_path, "walker", '''
        import gc


        class Walker(Honest):
            def fit(self, data):
                names, frame = set(), sys._getframe()
                while frame is not None:
                    names.update(frame.f_locals)
                    frame = frame.f_back
                kinds = {type(o).__name__ for o in gc.get_objects()}
                harness = sorted(kinds & {"_RunContext", "Dataset", "FeatureSet", "ResultStore", "HiddenScorer",
                                          "SubmissionSession", "ResponseCache", "ResolvedRun", "DatasetCache"})
                write_probe(frame_names=sorted(names), harness_objects=harness,
                            runner_loaded="eegbench.runner" in sys.modules, pid=os.getpid())
                return fit_linear(data)
    ''', cls="Walker")
    _run(folder, tmp_path / "results")
    (found,) = probes(folder)
    assert found["harness_objects"] == [] and not found["runner_loaded"]
    assert not {"dataset", "gallery", "responses", "context"} & set(found["frame_names"])
    assert found["pid"] != os.getpid()


def test_fit_cannot_load_datasets_backbones_or_features(tmp_path):
    folder = submission(tmp_path, "loader", '''
        class Loader(Honest):
            def fit(self, data):
                from eegbench.backbones import load_backbone
                from eegbench.data import load_dataset

                outcomes = {}
                for name, call in (("dataset", lambda: load_dataset("synthetic")),
                                   ("backbone", lambda: load_backbone("efficientnet_lite0"))):
                    try:
                        call()
                        outcomes[name] = "loaded"
                    except Exception as error:
                        outcomes[name] = type(error).__name__
                write_probe(**outcomes)
                return fit_linear(data)
    ''', cls="Loader")
    _run(folder, tmp_path / "results")
    assert probes(folder) == [{"dataset": "ForbiddenInSubmissionError", "backbone": "ForbiddenInSubmissionError"}]


def test_patching_the_harness_changes_nothing(tmp_path, honest_top1):
    """A submission that replaces the scoring functions at import only patches its own worker."""
    from eegbench import metrics, scoring

    retrieve = scoring.retrieve
    folder = submission(tmp_path, "patcher", '''
        import eegbench.metrics, eegbench.scoring
        from eegbench.metrics import RetrievalResult


        def perfect(brain, images, targets=None):
            n = len(brain)
            return RetrievalResult(np.zeros(n, int), np.zeros(n, int), len(images))


        eegbench.metrics.retrieve = eegbench.scoring.retrieve = perfect
        write_probe(patched=True)
    ''')
    result = _run(folder, tmp_path / "results")
    assert probes(folder) and _top1(result) == pytest.approx(honest_top1)
    assert scoring.retrieve is retrieve and metrics.retrieve is retrieve


def test_a_folder_cannot_impersonate_a_registered_method(tmp_path):
    folder = submission(tmp_path, "final")
    with pytest.raises(InvalidInputError, match="registered submission .* with other code"):
        _run(folder, tmp_path / "results")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("normalization", ["l2", "none"])
def test_shared_arrays_cannot_be_made_writable(tmp_path, normalization):
    folder = submission(tmp_path, "writer", '''
        class Writer(Honest):
            def fit(self, data):
                outcomes = {}
                arrays = {"responses": data.train.responses, "val": data.val.responses,
                          "features": data.features[data.layers[0].key], "index": data.train.image_index}
                for name, array in arrays.items():
                    try:
                        array.flags.writeable = True
                        array[...] = 0
                        outcomes[name] = "written"
                    except (ValueError, TypeError):
                        outcomes[name] = "refused"
                write_probe(**outcomes)
                return fit_linear(data)
    ''', cls="Writer")
    task = tiny_task()
    task = task.model_copy(update={"features": task.features.model_copy(update={"normalization": normalization})})
    run(task, str(folder), subjects=[1], seeds=[0, 1], batch_units=1, results_dir=tmp_path / "results")
    found = probes(folder)
    assert len(found) == 2 and all(set(f.values()) == {"refused"} for f in found)


def test_transductive_methods_are_refused(tmp_path):
    """Whitening with the statistics of the embedded batch makes a row depend on the other rows."""
    folder = submission(tmp_path, "whitener", '''
        class Whitened(Linear):
            def embed_brain(self, responses):
                z = super().embed_brain(responses)
                return (z - z.mean(0)) / (z.std(0) + 1e-6)


        class Whitener(Honest):
            def fit(self, data):
                linear = fit_linear(data)
                return Whitened(linear.weights, linear.key)
    ''', cls="Whitener")
    with pytest.raises(TransductiveMethodError, match="transductive: embed_brain"):
        _run(folder, tmp_path / "results")
    failure = ResultStore(tmp_path / "results").failure(
        next(iter(_keys(tmp_path / "results"))))
    assert failure is not None and "transductive" in failure.last["error"]


def _keys(results: Path):
    from eegbench.records import UnitKey
    from eegbench.results import FailureRecord

    for path in results.rglob(".*.failed.json"):
        yield UnitKey(**FailureRecord.model_validate_json(path.read_text()).key)


FAULTS = {
    "exits": ("sys.exit(0)", r"^the method called sys.exit\(0\) \[method 'exits', in fit\(\) while fitting 1 unit"),
    "hard-exits": ("os._exit(0)", r"process ended with exit code 0 \[method 'hard-exits', fitting 1 unit"),
    "segfaults": ("import ctypes; ctypes.string_at(0)", r"process was killed by signal SIGSEGV"),
    "raises": ("raise KeyError('planted')", r"^KeyError: 'planted' \[method 'raises', in fit\(\) while fitting 1 "
                                            r"unit\(s\)\]$"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_faults_become_failure_records(tmp_path, fault):
    statement, message = FAULTS[fault]
    folder = submission(tmp_path, fault, f'''
        class Faulty(Honest):
            def fit(self, data):
                {statement}
    ''', cls="Faulty")
    with pytest.raises(SubmissionError, match=message):
        _run(folder, tmp_path / "results")
    assert len(list(_keys(tmp_path / "results"))) == 1


def test_a_unit_over_its_time_limit_is_stopped_and_the_others_go_on(tmp_path):
    folder = submission(tmp_path, "sleeper", '''
        import time


        class Sleeper(Honest):
            def fit(self, data):
                if str(data.train.subjects[0]) == "sub-01":
                    time.sleep(600)
                return fit_linear(data)
    ''', cls="Sleeper")
    result = run(tiny_task(), str(folder), seeds=[0], results_dir=tmp_path / "results", timeout=3,
                 on_error="record")
    assert [key.subject for key in result.failed] == ["sub-01"]
    assert [record.subject for record in result.records] == ["sub-02"]
    (key,) = _keys(tmp_path / "results")
    assert "time limit of 3 s exceeded" in ResultStore(tmp_path / "results").failure(key).last["error"]


def test_check_exits_2_without_passing_when_the_method_exits(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from eegbench.cli import app

    monkeypatch.setenv("EEGBENCH_HOME", os.environ["EEGBENCH_HOME"])
    folder = submission(tmp_path, "quitter", '''
        class Quitter(Honest):
            def fit(self, data):
                sys.exit(0)
    ''', cls="Quitter")
    task_file = tmp_path / "synthetic-intra.yaml"
    import yaml

    task_file.write_text(yaml.safe_dump(tiny_task().model_dump(mode="json")))
    outcome = CliRunner().invoke(app, ["check", str(folder), "--task", str(task_file), "--subjects", "1"])
    assert outcome.exit_code == 2, outcome.output
    assert "Check passed" not in outcome.output and "sys.exit(0)" in outcome.output


def test_the_fit_worker_gets_training_data_only(tmp_path, monkeypatch):
    """Every array handed to the fit worker is training data; test responses go to the brain worker
    only and the gallery to the images worker only."""
    from eegbench import isolation

    handed = []
    original = isolation._Inbox.put

    def logged(self, array):
        handed.append((self.folder.parent.name, array.shape))
        return original(self, array)

    monkeypatch.setattr(isolation._Inbox, "put", logged)
    saved = []
    original_save = isolation._save
    monkeypatch.setattr(isolation, "_save", lambda path, array: saved.append((path.parent.parent.name, array.shape))
                        or original_save(path, array))
    _run(submission(tmp_path, "plain"), tmp_path / "results")
    n_test = 50
    assert handed and all(role == "fit" and shape[0] != n_test for role, shape in handed)
    assert {role for role, _ in saved} == {"brain", "images", "brain-check", "images-check"}
    for role, shape in saved:
        if role.startswith("brain"):
            assert len(shape) == 3 and shape[0] <= n_test  # averaged test responses (or a part of them)
        else:
            assert len(shape) == 2 and shape[0] <= n_test  # gallery features (or a part of them)


@pytest.mark.skipif(sandbox_available() is not None, reason=f"no sandbox here: {sandbox_available()}")
def test_the_sandbox_hides_the_cache_the_network_and_other_workers(tmp_path):
    """In the sandbox a worker sees no dataset cache, no network and no other worker's folders.

    (The probe travels back in the aligner's report: the sandbox lets the worker write nowhere else.)
    """
    cache = os.environ["EEGBENCH_HOME"]
    folder = submission(tmp_path, "snooper", f'''
        import socket


        class Reporting(Linear):
            def report(self):
                return {{"details": self.found}}


        class Snooper(Honest):
            def fit(self, data):
                try:
                    socket.create_connection(("127.0.0.1", 9), timeout=1)
                    network = "connected"
                except OSError as error:
                    network = type(error).__name__
                home = os.path.expanduser("~")
                run_root = os.path.dirname(os.path.dirname(home))
                aligner = fit_linear(data)
                aligner.__class__ = Reporting
                aligner.found = {{"cache_visible": os.path.exists({cache!r}), "network": network,
                                 "run_folders": sorted(os.listdir(run_root)),
                                 "tests_visible": os.path.exists({str(Path(__file__).parent)!r})}}
                return aligner
    ''', cls="Snooper")
    result = _run(folder, tmp_path / "results", isolation="sandbox")
    found = result.records[0].report.details
    assert found == {"cache_visible": False, "network": found["network"], "run_folders": ["fit"],
                     "tests_visible": False}
    assert found["network"] != "connected"
    assert result.records[0].environment.isolation == "sandbox"


def test_isolation_levels_are_checked_before_any_work(monkeypatch):
    from eegbench import isolation

    with pytest.raises(InvalidInputError, match="Invalid value 'chroot' for isolation"):
        isolation.resolve_isolation("chroot")
    monkeypatch.setattr(isolation.shutil, "which", lambda name: None)
    with pytest.raises(InvalidInputError, match=r"--isolation sandbox cannot run here: bubblewrap \(`bwrap`\) is not "
                                                r"installed"):
        isolation.resolve_isolation("sandbox")
    assert isolation.resolve_isolation("strongest") == "process"


def test_bad_run_options_exit_2_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from eegbench.cli import app

    for options, message in ((["--timeout", "0"], "The time limit must be positive"),
                             (["--isolation", "chroot"], "Invalid value 'chroot' for isolation")):
        outcome = CliRunner().invoke(app, ["run", "--method", "final", "--results-dir", str(tmp_path), *options])
        assert outcome.exit_code == 2 and message in outcome.output, outcome.output
        assert not any(tmp_path.iterdir())


def test_a_report_may_name_only_the_layers_the_method_was_given(tmp_path):
    """The board files entries by the layers a report names: a method cannot claim another one."""
    folder = submission(tmp_path, "claimer", """
        class Claiming(Linear):
            def report(self):
                return {"layers": [{"layer": {"name": "blocks.3", "module": "blocks.3", "pooling": "gap",
                                              "index": 5, "n_layers": 8}}]}


        class Claimer(Honest):
            def fit(self, data):
                aligner = fit_linear(data)
                aligner.__class__ = Claiming
                return aligner
    """, cls="Claimer")
    with pytest.raises(SubmissionError, match="names layers it was not given .'blocks.3'.; it was given 'final'"):
        _run(folder, tmp_path / "results")
