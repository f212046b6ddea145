"""Malformed command-line input: exit code 2, one clear message, no traceback, and no heavy work first.

Every case runs with heavy work forbidden (:func:`no_heavy_work`): starting a submission's workers,
loading a dataset, building a backbone with weights or using the network raises :class:`HeavyWork`. A
malformed value must be refused before any of that. :func:`test_every_numeric_option_is_swept` keeps
the table complete: a new number option of any command must get a malformed case here.
"""

from __future__ import annotations

import dataclasses
import typing

import pytest
import typer
from typer.testing import CliRunner

from eegbench.cli import app
from eegbench.errors import InvalidInputError
from helpers import isolated_registries

runner = CliRunner()


class HeavyWork(Exception):
    """Raised by the guards of :func:`no_heavy_work`: a command got past its input checks."""


def _refuse(what: str):
    def guard(*args, **kwargs):
        raise HeavyWork(what)
    return guard


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Make every expensive step raise :class:`HeavyWork` (architectures on the meta device stay allowed)."""
    from eegbench.backbones import registry as backbones
    from eegbench.data import download
    from eegbench.data import registry as datasets
    from eegbench.isolation import MethodPlanner, SubmissionSession

    monkeypatch.setattr(SubmissionSession, "__enter__", _refuse("submission workers started"))
    monkeypatch.setattr(MethodPlanner, "__enter__", _refuse("submission workers started"))
    monkeypatch.setattr(download, "_request", _refuse("the network was used"))
    monkeypatch.setattr(download, "_fetch_huggingface", _refuse("the network was used"))

    def structure_only(loader):
        def load(spec, *, device, **kwargs):
            if device != "meta":
                raise HeavyWork(f"backbone {spec.name} was built on {device}")
            return loader(spec, device=device, **kwargs)
        return load

    with isolated_registries():
        for name, spec in list(backbones.backbones._entries.items()):
            backbones.backbones._entries[name] = dataclasses.replace(spec, loader=structure_only(spec.loader))
        for name, spec in list(datasets.datasets._entries.items()):
            datasets.datasets._entries[name] = dataclasses.replace(spec, loader=_refuse(f"dataset {name} was loaded"))
        yield


@pytest.fixture
def places(tmp_path):
    """A file where a folder is expected, and a task file whose only fault is its time window."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    return {"FILE": str(a_file), "MISSING": str(tmp_path / "missing" / "x.json"), "TMP": str(tmp_path)}


SWEEP = "sweep run --tasks synthetic-intra --methods final"

#: (command line, text the one-line error must contain); FILE, MISSING and TMP are replaced by paths
CASES: list[tuple[str, str]] = [
    # run
    ("run --seeds -1", "Seeds must be non-negative integers, got -1."),
    ("run --seeds ,", "No seeds given"),
    ("run --seeds 0,0", "Seeds must not repeat; given more than once: 0."),
    ("run --seeds x", "Expected a comma-separated list of int, got 'x'"),
    ("run --subjects ,", "No subjects given"),
    ("run --subjects 1,1,sub-01", "Subjects must not repeat; given more than once: sub-01."),
    ("run --epochs 0", "epochs must be at least 1, got 0"),
    ("run --batch-units 0", "batch_units must be at least 1, got 0"),
    ("run --timeout -1", "The time limit must be positive, got -1.0 seconds."),
    ("run --timeout nan", "The time limit must be positive, got nan seconds."),
    ("run --task nope", "Unknown task 'nope'"),
    ("run --method nope", "Unknown method 'nope'"),
    ("run --backbone nope", "Unknown backbone 'nope'"),
    ("run --device tpu", "--device must be cpu, cuda, cuda:N or auto, got 'tpu'."),
    ("run --overwrite sometimes", "--overwrite must be one of missing, always, never, got 'sometimes'."),
    ("run --isolation jail", "Invalid value 'jail' for isolation"),
    ("run --hp lr=[1", "--hp expects KEY=VALUE"),
    ("run --results-dir FILE", "it is a file"),
    ("run --weights MISSING", "does not exist (or is not a file)"),
    # check and reproduce
    ("check final --epochs 0", "epochs must be at least 1, got 0"),
    ("check final --subjects ,", "No subjects given"),
    ("reproduce MISSING", "does not exist"),
    ("reproduce FILE --tolerance -1", "tolerance must be a non-negative number of points, got -1"),
    ("reproduce FILE --tolerance nan", "tolerance must be a non-negative number of points, got nan"),
    # analyses
    ("rsa --permutations 0", "n_permutations and n_splits must be at least 1"),
    ("rsa --splits 0", "n_permutations and n_splits must be at least 1"),
    ("rsa --seed -1", "seed must be at least 0, got -1."),
    ("rsa --subjects ,", "No subjects given"),
    ("scaling data --fractions 0,2", "Training fractions must be in (0, 1], got [0.0, 2.0]."),
    ("scaling data --repetitions 0", "Each number of test repetitions must be at least 1, got 0."),
    ("scaling data --epochs 0", "epochs must be at least 1, got 0"),
    ("pitfalls --epochs 0", "epochs must be at least 1, got 0"),
    ("scaling data --seeds ,", "No seeds given"),
    ("scaling backbones --version 0", "version must be at least 1, got 0"),
    # features
    ("features extract --images TMP --batch-size 0", "batch_size must be at least 1, got 0"),
    ("features extract --images TMP --workers -1", "num_workers must be at least 0, got -1."),
    ("features extract --images TMP --image-size 0", "image_size must be at least 16, got 0"),
    ("features extract --images TMP --precision fp8", "Invalid value 'fp8' for precision"),
    ("features extract --images TMP --pooling max", "Unknown pooling 'max'; use one of"),
    ("features layers efficientnet_lite0 --image-size 0", "image_size must be at least 16, got 0"),
    # data
    ("data download nope --root TMP", "Unknown downloadable dataset 'nope'."),
    ("data download things-eeg2 --root TMP --subjects 0", "subjects"),
    ("data download things-eeg2 --root TMP --subjects ,", "No subjects given"),
    ("data verify things-eeg2 --root TMP --variant nope", "Unknown things-eeg2 variant 'nope'"),
    ("data info things-meg --root FILE", "it is a file. Pass the folder that `eegbench data download things-meg` fills."),
    # sweeps
    (f"{SWEEP} --seeds -1 --dry-run", "Seeds must be non-negative integers, got -1."),
    (f"{SWEEP} --epochs 0 --dry-run", "epochs must be at least 1"),
    (f"{SWEEP} --batch-units 0 --dry-run", "batch_units: Input should be greater than or equal to 1 (got 0)"),
    (f"{SWEEP} --max-attempts 0 --dry-run", "max_attempts: Input should be greater than or equal to 1"),
    (f"{SWEEP} --units-per-job 0 --dry-run", "units_per_job: Input should be greater than or equal to 1"),
    (f"{SWEEP} --gpus-per-job -1 --dry-run", "gpus_per_job: Input should be greater than or equal to 0"),
    (f"{SWEEP} --cpus-per-job 0 --dry-run", "cpus_per_job: Input should be greater than or equal to 1"),
    (f"{SWEEP} --mem-gb -1 --dry-run", "mem_gb: Input should be greater than 0"),
    (f"{SWEEP} --time-limit 0 --dry-run", "time_limit: Input should be greater than or equal to 1"),
    (f"{SWEEP} --max-concurrent 0 --dry-run", "max_concurrent: Input should be greater than or equal to 1"),
    (f"{SWEEP} --executor cloud --dry-run", "Unknown executor 'cloud'. Valid executors: local, slurm."),
    ("sweep status --tasks synthetic-intra --methods final --max-attempts 0",
     "max_attempts: Input should be greater than or equal to 1"),
    ("leaderboard --results-dir FILE", "is a file, not a folder; run `eegbench run` first or pass the folder"),
]


@pytest.mark.parametrize("line, message", CASES, ids=[line for line, _ in CASES])
def test_malformed_input_exits_2_with_one_clear_line_before_any_work(line, message, places, no_heavy_work):
    args = [places.get(word, word) for word in line.split()]
    result = runner.invoke(app, args)
    assert not isinstance(result.exception, HeavyWork), f"{line!r} was accepted: {result.exception}"
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert message in " ".join(result.output.split()), result.output


def _commands(command, path=()):
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


def _base_type(annotation):
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    members = [a for a in typing.get_args(annotation) if a is not type(None)]
    return members[0] if members else annotation


def test_every_numeric_option_is_swept():
    swept = {(line.split()[0], word) for line, _ in CASES for word in line.split() if word.startswith("--")}
    swept |= {(" ".join(line.split()[:2]), word) for line, _ in CASES for word in line.split() if word.startswith("--")}
    missing = []
    for path, command in _commands(typer.main.get_command(app)):
        hints = typing.get_type_hints(command.callback, include_extras=True)
        for parameter in command.params:
            if _base_type(hints[parameter.name]) in (int, float) and parameter.opts[0].startswith("--"):
                if (" ".join(path), parameter.opts[0]) not in swept:
                    missing.append(f"{' '.join(path)} {parameter.opts[0]}")
    assert not missing, f"numeric options without a malformed-value case in CASES: {missing}"


def _broken(text: str, change: str) -> str:
    old, new = change.split(" -> ")
    assert old in text
    return text.replace(old, new)


#: (task file, "old -> new" edit, message): each a mistake the dataset's declaration reveals without data
BROKEN_TASKS = [
    ("synthetic-intra", "time_window: [0.0, 1.0] -> time_window: [-10, 50]",
     "Task 'synthetic-intra': time_window [-10, 50] s is not within dataset 'synthetic', which spans [-0.1, 1) s."),
    ("synthetic-intra", "channels: all -> channels: [O1, Oz, P08]",
     "Task 'synthetic-intra': channels ['P08'] are not in dataset 'synthetic'. Did you mean 'P8'? Its channels: Pz,"),
    ("synthetic-intra", "channels: all -> channels: [O1, O1, O1]",
     "channels: entries must not repeat; given more than once: O1 (got"),
    ("synthetic-intra", "seeds: [0] -> seeds: [0]\nseeds: [1]", "key 'seeds' appears twice"),
    ("synthetic-intra", "seeds: [0] -> seeds: [-5]", "seeds.0: Input should be greater than or equal to 0"),
    ("synthetic-intra", "planted_layer: blocks.3 -> planted_layr: blocks.3", "planted_layr: unknown field"),
    ("things-eeg-intra", "variant: 17ch-250hz -> variant: 17ch-250Hz",
     "Unknown things-eeg2 variant '17ch-250Hz'. Did you mean '17ch-250hz'?"),
    ("things-eeg-intra", "time_window: [0.0, 1.0] -> time_window: [-0.2, 0.8]",
     "time_window [-0.2, 0.8] s is not within dataset 'things-eeg2' (variant '17ch-250hz'), which spans [0, 1) s."),
    ("things-meg-intra", "time_window: [0.0, 1.0] -> time_window: [0.0, 1.2]",
     "is not within dataset 'things-meg' (variant 'official-271ch-200hz'), which spans [0, 1) s."),
]


@pytest.mark.parametrize("task, change, message", BROKEN_TASKS, ids=[c for _, c, _ in BROKEN_TASKS])
def test_a_broken_task_file_fails_before_anything_is_started_or_loaded(task, change, message, tmp_path,
                                                                        no_heavy_work):
    from eegbench._paths import cache_home
    from eegbench.tasks import task_path

    path = tmp_path / f"{task}.yaml"
    path.write_text(_broken(task_path(task).read_text(), change))
    before = sorted(cache_home().rglob("*")) if cache_home().exists() else []
    result = runner.invoke(app, ["run", "--task", str(path), "--data-root", str(tmp_path),
                                 "--results-dir", str(tmp_path / "results")])
    assert not isinstance(result.exception, HeavyWork), f"{change!r} was accepted: {result.exception}"
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert message in " ".join(result.output.split()), result.output
    assert (sorted(cache_home().rglob("*")) if cache_home().exists() else []) == before  # nothing generated
    assert not (tmp_path / "results").exists()  # and no result or failure record


def test_a_bad_planted_layer_fails_before_the_synthetic_data_is_generated(monkeypatch):
    from eegbench.data import synthetic

    monkeypatch.setattr(synthetic, "_build", _refuse("the synthetic dataset was generated"))
    with pytest.raises(InvalidInputError, match=r"Synthetic dataset option planted_layer: Invalid layer 'block\.3' "
                                                 r"for backbone 'efficientnet_lite0'\. Did you mean 'blocks\.3'\?"):
        synthetic.synthetic_dataset(planted_layer="block.3")


@pytest.mark.parametrize("grid, message", [
    ("seeds: [0, -1]", "grids.0.seeds: Seeds must be non-negative integers, got -1 (got [0, -1])"),
    ("seeds: [1, 1]", "grids.0.seeds: Seeds must not repeat; given more than once: 1 (got [1, 1])"),
    ("subjects: [1, sub-01]",
     "grids.0.subjects: Subjects must not repeat; given more than once: sub-01 (got [1, 'sub-01'])"),
])
def test_a_sweep_file_with_bad_seeds_or_subjects_fails_before_planning(grid, message, tmp_path, no_heavy_work):
    path = tmp_path / "sweep.yaml"
    path.write_text(f"grids:\n  - tasks: [synthetic-intra]\n    methods: [final]\n    {grid}\n")
    result = runner.invoke(app, ["sweep", "run", str(path), "--dry-run"])
    assert not isinstance(result.exception, HeavyWork), f"{grid!r} was accepted: {result.exception}"
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
