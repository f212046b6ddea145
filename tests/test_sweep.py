"""Sweeps: planning, the local and submitit executors, claims under concurrency, failures and retries."""

import os
import signal
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eegbench._check import InvalidInputError
from eegbench.cli import app
from eegbench.records import UnitKey
from eegbench.results import ResultStore, UnitClaims, Worker
from eegbench.runner import run
from eegbench.submissions import list_submissions, load_submission
from eegbench.sweep import SweepSpec, load_sweep, plan_sweep, run_sweep, slurm_script, sweep_from_options
from helpers import write_tiny_task_file

submitit = pytest.importorskip("submitit")
REPO = Path(__file__).resolve().parent.parent

# A fast method (closed-form ridge to the final layer) that logs every fit as "<pid> <subject> <seed>" (pid:
# its worker process) to fits.log beside it, and obeys control files: `fail-seed` (raise for that seed),
# `hang-on` (block on that subject, to be killed), `barrier` (wait until that many processes have started fitting).
COUNTING_METHOD = '''
"""Closed-form ridge to the final layer; logs each fit and obeys the test's control files."""

import os
import time
from pathlib import Path

import numpy as np

from eegbench.submissions import Aligner, Method

HERE = Path(__file__).parent


class Linear(Aligner):
    def __init__(self, weights, key):
        self.weights, self.key = weights, key

    def embed_brain(self, responses):
        return responses.reshape(len(responses), -1) @ self.weights

    def embed_images(self, features):
        return features[self.key]


def _pids():
    lines = (HERE / "fits.log").read_text().splitlines()
    return {line.split()[0] for line in lines}


class Counting(Method):
    def feature_layers(self, backbone):
        return [backbone.resolve("final")]

    def fit(self, data):
        subject = str(data.train.subjects[0])
        with open(HERE / "fits.log", "a") as log:
            log.write(f"{os.getpid()} {subject} {data.seed}\\n")
        if (HERE / "fail-seed").exists() and data.seed == int((HERE / "fail-seed").read_text()):
            raise RuntimeError("planted failure")
        deadline = time.time() + 120
        while (HERE / "hang-on").exists() and (HERE / "hang-on").read_text() == subject and time.time() < deadline:
            time.sleep(0.1)
        while (HERE / "barrier").exists() and len(_pids()) < int((HERE / "barrier").read_text()) \\
                and time.time() < deadline:
            time.sleep(0.1)
        x = data.train.responses.reshape(len(data.train), -1).astype(np.float64)
        y = data.features[data.layers[0].key][data.train.image_index]
        weights = x.T @ np.linalg.solve(x @ x.T + 10.0 * np.eye(len(x)), y)
        return Linear(weights.astype(np.float32), data.layers[0].key)
'''


@pytest.fixture(scope="module")
def tiny_task_file(tmp_path_factory):
    path = write_tiny_task_file(tmp_path_factory.mktemp("tasks"))
    return str(path)


@pytest.fixture(scope="module")
def counting(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions") / "counting"
    folder.mkdir()
    (folder / "submission.yaml").write_text(textwrap.dedent("""\
        id: counting
        name: Counting ridge
        authors: [eegbench tests]
        description: Closed-form ridge to the final layer that logs its fits.
        citation: none
        license: MIT
        features: final
        entrypoint: "method:Counting"
    """))
    (folder / "method.py").write_text(COUNTING_METHOD)
    return folder


@pytest.fixture
def control(counting):
    """The counting method's control files, reset before and after each test."""
    names = ("fits.log", "fail-seed", "hang-on", "barrier")

    def reset():
        for name in names:
            (counting / name).unlink(missing_ok=True)
        (counting / "fits.log").touch()

    reset()
    yield counting
    reset()


@pytest.fixture
def subprocess_env(monkeypatch):
    """Jobs started by submitit import this checkout of eegbench, not an installed one."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def _local_executor(folder):
    executor = submitit.LocalExecutor(folder)
    executor.update_parameters(timeout_min=20)  # the default (2 min) is short on a busy machine
    return executor


def _fits(folder):
    """(pid, subject, seed) of every fit the counting method logged."""
    return [(pid, subject, int(seed)) for pid, subject, seed in
            (line.split() for line in (folder / "fits.log").read_text().splitlines())]


def _spec(task, method, results, **settings) -> SweepSpec:
    return sweep_from_options(tasks=[task], methods=[str(method)], subjects=[1, 2], seeds=[0, 1], results_dir=results,
                              device="cpu", **settings)


def _scores(results):
    """Every result of a store by unit, without timing and provenance that differ between runs."""
    return {record.key: (record.scores, record.per_trial) for record in ResultStore(results).records()}


def _hidden_files(results):
    return sorted(p.name for p in Path(results).rglob(".*") if p.is_file() and ".sweeps" not in p.parts)


def test_local_sweep_equals_direct_runs_and_skips_finished_units(tiny_task_file, control, tmp_path):
    spec = SweepSpec(name="mixed", results_dir=tmp_path / "sweep", device="cpu", grids=[
        {"tasks": [tiny_task_file], "methods": ["final"], "subjects": [1], "seeds": [0],
         "hp": {"epochs": [2], "hidden_dim": [32]}},
        {"tasks": [tiny_task_file], "methods": [str(control)], "subjects": [1, 2], "seeds": [0]},
    ])
    plan = plan_sweep(spec)
    assert plan.counts() == {"done": 0, "running": 0, "failed": 0, "todo": 3}
    assert len(plan.jobs) == 1  # one backbone: features extracted once, for both methods
    outcome = run_sweep(spec)
    assert [(r.computed, r.failed) for r in outcome.reports] == [(3, [])]
    direct = run(tiny_task_file, "final", subjects=[1], seeds=[0], hyperparameters={"epochs": 2, "hidden_dim": 32},
                 device="cpu", results_dir=tmp_path / "direct")
    swept = [r for r in ResultStore(tmp_path / "sweep").records() if r.method.id == "final"]
    assert [r.scores for r in swept] == [r.scores for r in direct.records]
    assert sorted((s, seed) for _, s, seed in _fits(control)) == [("sub-01", 0), ("sub-02", 0)]

    again = run_sweep(spec)  # re-submitting is idempotent
    assert again.plan.counts()["done"] == 3 and again.plan.jobs == [] and len(_fits(control)) == 2
    assert _hidden_files(tmp_path / "sweep") == []  # no claims left behind


def test_a_failing_unit_is_recorded_retried_and_never_stops_the_sweep(tiny_task_file, control, tmp_path):
    (control / "fail-seed").write_text("1")
    spec = _spec(tiny_task_file, control, tmp_path, max_attempts=2)
    outcome = run_sweep(spec)
    assert outcome.reports[0].computed == 2 and len(outcome.reports[0].failed) == 2
    fits = [(s, seed) for _, s, seed in _fits(control)]
    assert sorted(set(fits)) == [("sub-01", 0), ("sub-01", 1), ("sub-02", 0), ("sub-02", 1)]
    assert fits.count(("sub-01", 1)) == fits.count(("sub-02", 1)) == 2  # max_attempts
    plan = plan_sweep(spec)
    assert plan.counts() == {"done": 2, "running": 0, "failed": 2, "todo": 0} and plan.remaining() == 0
    failure = plan.failures()[0][1].failure
    assert failure.attempts == 2 and "RuntimeError: planted failure" in failure.last["traceback"]
    assert failure.last["log"].endswith(".log") and Path(failure.last["log"]).is_file()
    assert "planted failure" in plan.details() and "--retry-failed" in plan.details()

    (control / "fail-seed").unlink()
    retried = run_sweep(spec, retry_failed=True)
    assert retried.reports[0].computed == 2 and plan_sweep(spec).counts()["done"] == 4
    assert _hidden_files(tmp_path) == []  # results supersede failure records


def _harness_of(worker: int) -> int:
    """The process that runs the harness of a method's worker (whose parent is eegbench's fork server)."""
    def parent(pid: int) -> int:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])

    return parent(parent(worker))


def test_killed_job_resubmitted_equals_an_uninterrupted_sweep(tiny_task_file, control, tmp_path, subprocess_env):
    reference = _spec(tiny_task_file, control, tmp_path / "reference")
    run_sweep(reference)
    expected = _scores(tmp_path / "reference")
    assert len(expected) == 4
    (control / "fits.log").write_text("")

    (control / "hang-on").write_text("sub-02")
    spec = _spec(tiny_task_file, control, tmp_path / "killed")
    [job] = run_sweep(spec, executor=_local_executor(tmp_path / "jobs")).jobs
    deadline = time.time() + 300
    while not any(subject == "sub-02" for _, subject, _ in _fits(control)):
        assert time.time() < deadline and not job.done(), job.stderr()
        time.sleep(0.2)
    [(pid, _, seed)] = [fit for fit in _fits(control) if fit[1] == "sub-02"]
    assert plan_sweep(spec).counts() == {"done": 2, "running": 1, "failed": 0, "todo": 1}
    os.kill(_harness_of(int(pid)), signal.SIGKILL)  # the job, mid-unit: its claim stays behind
    while not job.done():
        time.sleep(0.2)
    assert plan_sweep(spec).counts() == {"done": 2, "running": 0, "failed": 0, "todo": 2}  # the dead claim is stale
    (control / "hang-on").unlink()

    [resubmitted] = run_sweep(spec, executor=submitit.DebugExecutor(tmp_path / "debug")).jobs
    assert resubmitted.result().computed == 2
    assert _scores(tmp_path / "killed") == expected
    fits = [(s, seed) for _, s, seed in _fits(control)]
    assert sorted(fits) == sorted([("sub-01", 0), ("sub-01", 1), ("sub-02", 0), ("sub-02", 1), ("sub-02", seed)])
    assert _hidden_files(tmp_path / "killed") == []


def test_two_concurrent_sweeps_compute_each_unit_once(tiny_task_file, control, tmp_path, subprocess_env):
    (control / "barrier").write_text("2")  # neither sweep fits past its first unit before the other started
    spec = _spec(tiny_task_file, control, tmp_path / "results")
    [job] = run_sweep(spec, executor=_local_executor(tmp_path / "jobs")).jobs
    here = run_sweep(spec)
    job.result()
    fits = _fits(control)
    assert sorted((s, seed) for _, s, seed in fits) == [("sub-01", 0), ("sub-01", 1), ("sub-02", 0), ("sub-02", 1)]
    assert len({pid for pid, _, _ in fits}) == 2  # both sweeps did part of the work
    assert here.reports[0].computed + job.result().computed == 4
    assert plan_sweep(spec).counts()["done"] == 4 and _hidden_files(tmp_path / "results") == []


def test_run_respects_claims_of_other_processes(tiny_task_file, control, tmp_path, monkeypatch):
    monkeypatch.setattr("eegbench.runner._WAIT_POLL_SECONDS", 0.2)
    store = ResultStore(tmp_path)
    key = UnitKey("synthetic-intra", 1, "counting", "efficientnet_lite0", "final", "default", "sub-01", 0)
    common = {"subjects": [1, 2], "seeds": [0], "device": "cpu", "results_dir": tmp_path}
    with UnitClaims(store, Worker("other-host", 1, job="42_0")) as other:
        assert other.acquire(key)
        left = run(tiny_task_file, str(control), wait=False, **common)
        assert left.elsewhere == [key] and left.computed == 1 and not store.exists(key)
        assert store.status(key).state == "running" and store.status(key).claim.worker.job == "42_0"
        timer = threading.Timer(1.0, other.release, [key])
        timer.start()
        waited = run(tiny_task_file, str(control), **common)  # waits, then computes the released unit
        timer.join()
    assert waited.computed == 1 and waited.elsewhere == [] and store.exists(key)
    assert sorted((s, seed) for _, s, seed in _fits(control)) == [("sub-01", 0), ("sub-02", 0)]


def test_claims_heartbeat_staleness_and_takeover(tmp_path):
    store = ResultStore(tmp_path, heartbeat_seconds=0.05, stale_seconds=0.5)
    key = UnitKey("t", 1, "m", "b", "final", "default", "sub-01", 0)
    me = Worker.here()
    with UnitClaims(store, Worker("other-host", 1)) as other:
        assert other.acquire(key)
        time.sleep(1.0)  # ten stale periods: the heartbeat keeps the claim alive
        assert store.try_claim(key, me) is None
    assert store.holder(key) is None  # released on exit

    foreign = store.try_claim(key, Worker("other-host", 1))
    assert store.try_claim(key, me) is None
    time.sleep(0.6)  # no heartbeat: stale
    mine = store.try_claim(key, me)
    assert mine and mine != foreign and store.holder(key).token == mine
    assert not store.refresh(key, foreign)
    store.release(key, foreign)  # a taken-over claim cannot release the new owner's
    assert store.holder(key).token == mine
    store.release(key, mine)

    finished = subprocess.Popen(["true"])
    finished.wait()
    assert store.try_claim(key, Worker(me.host, finished.pid))  # a dead process on this host: stale at once
    assert store.try_claim(key, me)


def test_unit_failures_are_counted_and_cleared_by_a_result(tmp_path):
    store = ResultStore(tmp_path)
    key = UnitKey("t", 1, "m", "b", "final", "default", "sub-01", 0)
    for attempt in (1, 2):
        try:
            raise ValueError(f"bad {attempt}")
        except ValueError as error:
            record = store.record_failure(key, error, Worker.here(log="/logs/job.err"))
    assert record.attempts == 2 and record.last["error"] == "ValueError: bad 2" and record.last["log"] == "/logs/job.err"
    assert store.status(key).state == "failed" and list(store.records()) == []
    store.clear_failure(key)
    assert store.status(key).state == "todo"


def test_official_sweep_file_is_valid():
    spec = load_sweep(REPO / "sweeps" / "official-synthetic.yaml")
    assert spec.name == "official-synthetic" and spec.results_dir == Path("leaderboard/results")
    assert "eegbench sweep run sweeps/official-synthetic.yaml" in (REPO / "leaderboard" / "official.sh").read_text()


def test_bad_sweep_files_and_options_get_clear_errors(tmp_path, tiny_task_file):
    path = tmp_path / "bad.yaml"
    path.write_text("grids:\n  - tasks: [synthetic-intra]\n    methods: [final]\n    hp: {epochs: 3}\n")
    with pytest.raises(InvalidInputError, match=r"bad.yaml is invalid: grids.0.hp.epochs: Input should be a valid list"):
        load_sweep(path)
    with pytest.raises(InvalidInputError, match="Unknown executor 'pbs'"):
        run_sweep(load_sweep(REPO / "sweeps" / "official-synthetic.yaml"), executor="pbs")
    with pytest.raises(InvalidInputError, match="has no hyperparameter 'probe_layers'"):
        plan_sweep(sweep_from_options(tasks=[tiny_task_file], methods=["final"], hp={"probe_layers": [3]},
                                      results_dir=tmp_path))


def test_slurm_executor_submits_the_dry_run_script(tiny_task_file, control, tmp_path, monkeypatch):
    """With stand-ins for srun and sbatch, the job array submitit submits is the script --dry-run prints."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 4242"\n')
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    spec = _spec(tiny_task_file, control, tmp_path / "results", executor="slurm", units_per_job=2,
                 slurm={"partition": "gpu", "max_concurrent": 4, "mem_gb": 16, "sbatch": {"qos": "high"},
                        "setup": ["module load cuda"]})
    outcome = run_sweep(spec)
    assert [job.job_id for job in outcome.jobs] == ["4242_0", "4242_1"]
    submitted = (tmp_path / "submitted.sh").read_text()
    assert submitted == slurm_script(outcome.plan)
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --partition=gpu", "#SBATCH --mem=16GB", "#SBATCH --qos=high",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --time=240", "module load cuda"):
        assert line in submitted
    assert plan_sweep(spec).counts()["todo"] == 4  # submitted, not run


runner = CliRunner()


def test_cli_dry_run_prints_the_plan_and_the_slurm_script(tiny_task_file, control, tmp_path):
    result = runner.invoke(app, ["sweep", "run", "--tasks", tiny_task_file, "--methods", f"final,{control}",
                                 "--subjects", "1", "--seeds", "0,1", "--epochs", "2", "--results-dir", str(tmp_path),
                                 "--executor", "slurm", "--partition", "gpu", "--max-concurrent", "4",
                                 "--units-per-job", "2", "--dry-run"])
    assert result.exit_code == 2  # --epochs applies to every method of the grid: counting has none
    assert "Method 'counting' has no hyperparameter 'epochs'" in " ".join(result.output.split())

    result = runner.invoke(app, ["sweep", "run", "--tasks", tiny_task_file, "--methods", f"final,{control}",
                                 "--subjects", "1", "--seeds", "0,1", "--results-dir", str(tmp_path),
                                 "--executor", "slurm", "--partition", "gpu", "--max-concurrent", "4",
                                 "--units-per-job", "2", "--dry-run"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "2 configurations, 4 units: 0 done, 0 running, 0 failed, 4 to do; 4 units in 2 jobs" in text
    assert "#SBATCH --array=0-1%2" in text and "#SBATCH --partition=gpu" in text and "#SBATCH --gpus-per-node=1" in text
    assert "# job 1 (array task 1): 2 units" in text
    assert "Estimates of the 2 jobs to run, at H100 SXM" in text and "Total: " in text  # the synthetic data is loaded
    assert "Planned without data" not in text
    assert f"eegbench run --task {tiny_task_file} --method final --backbone efficientnet_lite0 --subjects sub-01 " \
           f"--seeds 0,1 --device auto --results-dir {tmp_path.resolve()}" in text
    assert list(tmp_path.iterdir()) == []  # a dry run changes nothing

    both = runner.invoke(app, ["sweep", "run", str(REPO / "sweeps" / "official-synthetic.yaml"), "--tasks", "x"])
    assert both.exit_code == 2 and "either a sweep file or grid options" in both.output


def test_cli_status_shows_done_failed_and_remaining(tiny_task_file, control, tmp_path):
    (control / "fail-seed").write_text("1")
    args = ["--tasks", tiny_task_file, "--methods", str(control), "--subjects", "1", "--seeds", "0,1",
            "--results-dir", str(tmp_path)]
    result = runner.invoke(app, ["sweep", "run", *args, "--device", "cpu", "--max-attempts", "1"])
    assert result.exit_code == 1, result.output  # a unit failed; the others ran
    status = runner.invoke(app, ["sweep", "status", *args, "--max-attempts", "1"])
    assert status.exit_code == 0, status.output
    text = " ".join(status.stdout.split())
    assert "done 1 | running 0 | failed 1 | remaining 0" in text
    assert "RuntimeError: planted failure" in text and "sub-01 seed 1" in text and ".log" in text


def _available_board(name: str, tmp_path: Path) -> Path:
    """An official real-board sweep file on two of its backbones, a CNN and a ViT.

    Planning all eight costs minutes of meta-device forward passes (InternViT-6B's alone is about
    12 s) for no more coverage: the file's full lists are asserted by the caller.
    """
    import yaml

    data = yaml.safe_load((REPO / "sweeps" / f"official-things-{name}.yaml").read_text())
    for grid in data["grids"]:
        grid["backbones"] = [b for b in grid["backbones"] if b in ("rn50", "vit_b")]
    path = tmp_path / f"official-things-{name}.yaml"
    path.write_text(yaml.safe_dump({**data, "results_dir": str(tmp_path / "results")}))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name, dataset, n_subjects", [("eeg", "things-eeg2", 10), ("meg", "things-meg", 4)])
def test_real_board_dry_run_plans_and_estimates_with_no_data_on_disk(name, dataset, n_subjects, tmp_path):
    """Both official real-board files list every reference method x the seed paper's backbones x intra/inter
    x 5 seeds, the joint protocol for the methods that train across subjects, plus the shallow depth curve,
    and dry-run offline, from the dataset's declaration."""
    spec = load_sweep(REPO / "sweeps" / f"official-things-{name}.yaml")
    board, joint, depth = spec.grids
    # every method that runs inductive tasks (tta belongs to the transductive track)
    assert set(board.methods) == {m for m in list_submissions() if load_submission(m).supports(f"things-{name}-intra")}
    assert board.backbones == ["rn50", "rn101", "vit_b", "vit_h", "dinov2_g", "vit_bigg", "eva02_e", "internvit_6b"]
    assert board.tasks == depth.tasks == [f"things-{name}-intra", f"things-{name}-inter"]
    assert joint.tasks == [f"things-{name}-joint"] and "samga" in joint.methods and joint.backbones == board.backbones
    assert depth.methods == ["shallow"] and len(depth.layers) == 10 and depth.backbones == board.backbones
    plan = plan_sweep(load_sweep(_available_board(name, tmp_path)), declared=True)
    assert plan.declared == (dataset,)
    assert {key.seed for config in plan.configs for key in config.keys} == {0, 1, 2, 3, 4}
    assert len({key.subject for config in plan.configs for key in config.keys}) == n_subjects
    estimates = plan.estimates()
    assert len(estimates) == len(plan.jobs)
    assert all(spec.estimate.gpu_hours(e) > 0 and e.cache_bytes > 0 for e in estimates)
    report = plan.estimate_report()
    assert "GPU hours" in report and "peak 989.4 TFLOP/s, reaching 40% of it in extraction" in report
    assert f"Planned without data for {dataset}" in report


def test_dry_run_estimates_recomputed_from_their_definitions(tmp_path):
    """One THINGS-EEG2 unit of `final` on RN50, planned with no data on disk: each estimate by hand."""
    from eegbench.backbones import flops_per_image, load_backbone
    from eegbench.estimates import training_memory

    spec = sweep_from_options(tasks=["things-eeg-intra"], methods=["final"], backbones=["rn50"], subjects=[1],
                              seeds=[0], results_dir=tmp_path)
    plan = plan_sweep(spec, declared=True)
    (estimate,) = plan.estimates()
    workload = plan.configs[0].workload
    n_images, n_train, n_inputs, width = 16540 + 200, 16540, 17 * 250, 1024  # RN50's final embedding is 1024-d
    rn50 = load_backbone("rn50", pretrained=False, device="meta")
    assert estimate.extraction_flops == flops_per_image(rn50, list(workload.layers)) * n_images
    assert estimate.cache_bytes == n_images * width * 2  # float16 cache

    def step(batch: int) -> int:  # 2 FLOPs per multiply-add; no input gradient for the responses and features
        brain = 2 * batch * (2 * n_inputs * 1024 + 3 * 1024 * 1024 + 3 * 1024 * 512)
        return brain + 2 * 2 * batch * width * 512 + 3 * 2 * batch * batch * 512  # image head, logits

    assert estimate.training_flops == 50 * (16 * step(1024) + step(n_train - 16 * 1024))
    trainer_params = (n_inputs + 1) * 1024 + (1024 + 1) * 1024 + 2 * 1024 + 2 * (1024 + 1) * 512
    trainer = trainer_params * 16 + n_train * (n_inputs + width) * 4  # weights, grads, AdamW moments; arrays
    assert training_memory(workload, (width,)) == trainer and estimate.peak_memory_bytes >= trainer
    assert estimate.peak_memory_bytes >= rn50.n_params * 4
    hours = (estimate.extraction_flops / (989.4e12 * 0.4) + estimate.training_flops / (989.4e12 * 0.1)) / 3600
    assert spec.estimate.gpu_hours(estimate) == pytest.approx(hours)
    slower = spec.with_settings(estimate={"peak_tflops": 312.0, "extraction_utilisation": 0.5})
    assert slower.estimate.gpu_hours(estimate) == pytest.approx(
        (estimate.extraction_flops / (312e12 * 0.5) + estimate.training_flops / (312e12 * 0.1)) / 3600)


def test_declared_dataset_plans_without_files_and_a_real_run_still_needs_them(tmp_path):
    from eegbench._check import MissingDataError
    from eegbench.data import get_dataset_spec

    declared = get_dataset_spec("things-meg").declared_dataset()
    assert declared.subjects == ("sub-01", "sub-02", "sub-03", "sub-04")
    assert (declared.info.n_channels, declared.info.n_times, declared.info.sfreq) == (271, 200, 200.0)
    assert (len(declared.train_images), len(declared.test_images)) == (19848, 200)
    with pytest.raises(MissingDataError, match="'things-meg' is only declared here .no data on disk.. Get it with"):
        declared.load_subject(1)
    with pytest.raises(InvalidInputError, match="'synthetic' does not declare its subjects, sizes and layout"):
        get_dataset_spec("synthetic").declared_dataset()
    spec = sweep_from_options(tasks=["things-meg-intra"], methods=["final"], results_dir=tmp_path)
    with pytest.raises(MissingDataError, match="need the dataset on disk: pass --data-root DIR"):
        plan_sweep(spec)  # only a dry run plans from the declaration
