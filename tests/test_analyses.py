"""Analyses: statistics against known values, data and backbone scaling, RSA, leaderboard sections."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from typer.testing import CliRunner

from eegbench._check import InvalidInputError, MissingDataError
from eegbench import plan
from eegbench.analyses import RSAResult, backbone_scaling, data_scaling
from eegbench.analyses.rsa import compare_spearman
from eegbench.backbones import BackboneSpec
from eegbench.backbones.registry import backbones
from eegbench.cli import app
from eegbench.leaderboard import build_leaderboard
from eegbench.protocols import nested_training_images
from eegbench.records import AnalysisRecord
from eegbench.results import ResultStore
from eegbench.stats import (
    loglinear_fit,
    paired_spearman,
    pearson,
    rsa_permutation_test,
    split_half_noise_ceiling,
)
from helpers import tiny_task, write_tiny_task_file

cli = CliRunner()
FRACTIONS = (1 / 8, 1 / 2, 1.0)
REPETITIONS = (1, 8, 40)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Small eigendecompositions spin for seconds with 2 threads on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    path = write_tiny_task_file(tmp_path_factory.mktemp("tasks"))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def scaling(store):
    return data_scaling(tiny_task(), "ridge", layer="blocks.3", fractions=FRACTIONS, repetitions=REPETITIONS,
                        device="cpu", results_dir=store)


@pytest.fixture(scope="module")
def rsa_run(store, task_file):
    result = cli.invoke(app, ["rsa", "--task", str(task_file), "--permutations", "200", "--splits", "3",
                              "--device", "cpu", "--results-dir", str(store), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- statistics against known values ---------------------------------------------------------------


def test_loglinear_fit_matches_the_textbook_regression():
    # x = log2(amounts) = 1..5, y = (2, 4, 5, 4, 5): slope 0.6, intercept 2.2, SSE 2.4, s^2 = 0.8, Sxx = 10
    fit = loglinear_fit([2, 4, 8, 16, 32], [2, 4, 5, 4, 5])
    assert (fit.slope, fit.intercept, fit.r2) == pytest.approx((0.6, 2.2, 0.6))
    t = 3.182446305284263  # t(0.975, df 3)
    assert fit.slope_ci == pytest.approx((0.6 - t * math.sqrt(0.08), 0.6 + t * math.sqrt(0.08)))
    low, high = fit.band([8])  # at the mean of x the half-width is t * s / sqrt(n) = t * 0.4
    assert (low[0], high[0]) == pytest.approx((4 - 0.4 * t, 4 + 0.4 * t))
    assert fit.band([2])[1][0] - fit.band([2])[0][0] > high[0] - low[0]  # wider away from the centre
    exact = loglinear_fit([1, 2, 4, 8], [0.1, 0.2, 0.3, 0.4])
    assert exact.slope == pytest.approx(0.1) and np.allclose(exact.band([3]), exact.predict([3]))
    assert exact.to_dict() == type(exact).from_dict(json.loads(json.dumps(exact.to_dict()))).to_dict()
    with pytest.raises(InvalidInputError, match="at least 3 points"):
        loglinear_fit([1, 2], [0.1, 0.2])
    with pytest.raises(InvalidInputError, match="must be positive"):
        loglinear_fit([0, 1, 2], [0.1, 0.2, 0.3])


def test_pearson_matches_known_values():
    # r = 6 / sqrt(10 * 6); t = r sqrt(3) / sqrt(1 - r^2) = 2.1213 on 3 df -> p = 0.1240
    r, p = pearson([1, 2, 3, 4, 5], [2, 4, 5, 4, 5])
    assert r == pytest.approx(6 / math.sqrt(60)) and p == pytest.approx(0.124027, abs=1e-6)
    r, p = pearson([1, 2, 3], [2, 4, 3])  # r = 0.5; with 1 df, p = 1 - (2 / pi) arctan(1 / sqrt(3)) = 2 / 3
    assert (r, p) == pytest.approx((0.5, 2 / 3))
    assert all(math.isnan(v) for v in pearson([1, 2], [3, 4]))


def test_spearman_and_split_half_noise_ceiling_known_values():
    # one swap in each pair of neighbours: rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert paired_spearman(np.array([1, 2, 3, 4, 5.0]), np.array([2, 1, 4, 3, 5.0])) == pytest.approx([0.8])
    assert split_half_noise_ceiling(0.6) == pytest.approx(math.sqrt(1.2 / 1.6))  # Spearman-Brown 0.75
    assert split_half_noise_ceiling(1.0) == 1.0 and split_half_noise_ceiling(-0.2) == 0.0
    assert split_half_noise_ceiling(np.array([0.0, 0.8])) == pytest.approx([0.0, math.sqrt(1.6 / 1.8)])


def test_permutation_test_is_exact_for_few_items_and_agrees_with_rsatoolbox():
    rng = np.random.default_rng(0)
    model = pdist(rng.normal(size=(5, 3)))[None]
    observed, p = rsa_permutation_test(model, model, 5)  # 5! = 120 permutations, all enumerated
    assert observed == pytest.approx(np.array([[1.0]])) and p == pytest.approx(np.array([[1 / 120]]))
    data = np.stack([pdist(rng.normal(size=(12, 4))) for _ in range(6)])  # (time points, pairs)
    models = np.stack([pdist(rng.normal(size=(12, 8))) for _ in range(3)])
    observed, p = rsa_permutation_test(models, np.stack([data, data[::-1]]), 12, n_permutations=99, seed=1)
    expected = (compare_spearman(models, data) + compare_spearman(models, data[::-1])) / 2
    assert observed == pytest.approx(expected)
    assert p.min() >= 1 / 100 and (p > 0.05).all()  # unrelated RDMs: nothing survives the correction
    with pytest.raises(InvalidInputError, match="66 entries"):
        rsa_permutation_test(models[:, :10], data, 12)


# --- data scaling ----------------------------------------------------------------------------------


def test_training_subsets_are_nested_and_keep_a_validation_share(tiny_dataset):
    from eegbench.protocols import validation_mask

    task = tiny_task()
    masks = [nested_training_images(task, tiny_dataset, f, seed=0) for f in (1 / 16, 1 / 4, 1.0)]
    assert masks[-1].all()
    assert (masks[0] <= masks[1]).all() and masks[0].sum() < masks[1].sum()
    val = validation_mask(task, tiny_dataset)
    assert masks[0][val].sum() == math.ceil(val.sum() / 16) and masks[0][~val].sum() == math.ceil((~val).sum() / 16)
    assert not np.array_equal(masks[0], nested_training_images(task, tiny_dataset, 1 / 16, seed=1))
    with pytest.raises(InvalidInputError, match=r"in \(0, 1\]"):
        nested_training_images(task, tiny_dataset, 1.5, seed=0)


def test_accuracy_rises_with_training_data_and_repetitions(scaling):
    points = scaling.record.results["points"]
    assert [p["n_train_images"] for p in points] == [50, 200, 400]
    top1 = [p["top1"]["mean"] for p in points]
    assert top1[0] < top1[1] < top1[2] and top1[2] > top1[0] + 0.1
    fit = scaling.record.results["fit"]["top1"]
    assert fit["slope_ci"][0] > 0
    curve = scaling.record.results["repetitions"]
    assert [p["n"] for p in curve] == list(REPETITIONS)
    assert curve[-1]["top1"]["mean"] > curve[0]["top1"]["mean"] + 0.1
    assert scaling.record.results["repetition_fit"]["top1"]["slope"] > 0
    # all repetitions at the full fraction is the ordinary score of the same models
    assert curve[-1]["top1"]["mean"] == pytest.approx(points[-1]["top1"]["mean"])
    assert "| 400 " in scaling.table() and "| 40 " in scaling.repetition_table()
    assert "points per doubling of training images" in scaling.summary()


def test_data_scaling_records_stay_out_of_the_main_tables(scaling, store):
    main = ResultStore(store)
    assert list(main.records()) == []  # the unit results live under _analyses/.../runs/
    assert scaling.path == store / "_analyses/synthetic-intra/v1/data-scaling/ridge_efficientnet_lite0_blocks.3_default.json"
    assert main.read_analysis(scaling.path) == scaling.record
    runs = ResultStore(store / scaling.record.inputs["runs"]["0.125"])
    unit = next(runs.records())
    assert unit.task.train_fraction == 0.125 and unit.task.n_train_images == 50
    assert set(unit.test_repetitions) == {1, 8, 40}


def test_data_scaling_loads_its_dataset_once_for_every_run(scaling, store, monkeypatch):
    loads = []
    original = plan.load_dataset
    monkeypatch.setattr(plan, "load_dataset", lambda *args, **kwargs: loads.append(args) or original(*args, **kwargs))
    again = data_scaling(tiny_task(), "ridge", layer="blocks.3", fractions=FRACTIONS, repetitions=REPETITIONS,
                         device="cpu", results_dir=store)
    assert loads == [("synthetic",)] and again.record.results == scaling.record.results


def test_scaling_data_cli_reuses_finished_runs(scaling, store, task_file, tmp_path):
    args = ["scaling", "data", "--task", str(task_file), "--method", "ridge", "--layer", "blocks.3",
            "--fractions", "1/8,0.5,1", "--repetitions", "1,8,40", "--device", "cpu", "--results-dir", str(store)]
    result = cli.invoke(app, [*args, "--plot", str(tmp_path / "scaling.png"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"] == scaling.record.results
    assert (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    bad = cli.invoke(app, [*args, "--fractions", "1/0"])
    assert bad.exit_code == 2 and "fractions such as 0.25 or 1/4" in bad.output
    bad = cli.invoke(app, [*args[:-2], "--repetitions", "1,41", "--results-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "must be in 1..40" in bad.output


# --- backbone scaling ------------------------------------------------------------------------------


@pytest.fixture()
def sized_backbones(monkeypatch):
    """Three registered backbones of 10, 100 and 1000 million parameters."""
    for name, params in (("test_small", 10.0), ("test_mid", 100.0), ("test_big", 1000.0)):
        spec = BackboneSpec(name, "timm", name, None, params, "pre-logits", "test", loader=None)
        monkeypatch.setitem(backbones._entries, name, spec)


def _fake_results(scaling, root):
    """Copies of one real unit record, relabelled as final / auto runs of the three backbones."""
    unit = json.loads(next((scaling.path.parent / "runs").rglob("sub-01_seed-0.json")).read_text())
    top1 = {("final", "test_small"): 0.1, ("final", "test_mid"): 0.2, ("final", "test_big"): 0.3,
            ("auto", "test_small"): 0.2, ("auto", "test_mid"): 0.4, ("auto", "test_big"): 0.3}
    layer = unit["backbone"]["layers"][0]
    final = layer | {"name": "final", "module": "final", "pooling": "embedding", "index": None, "relative_depth": None}
    for (setting, backbone), score in top1.items():
        for subject, shift in (("sub-01", 0.01), ("sub-02", -0.01)):
            record = json.loads(json.dumps(unit))
            record["task"] = {k: v for k, v in record["task"].items() if k not in ("train_fraction", "n_train_images")}
            record["backbone"] |= {"name": backbone, "layer_setting": setting,  # final: one layer; auto: several
                                   "layers": [final] if setting == "final" else [layer, final]}
            record["report"]["layers"] = [{"layer": final if setting == "final" else layer}]
            record["subject"], record["scores"]["top1"] = subject, score + shift
            path = root / "synthetic-intra/v1/ridge" / backbone / setting / "default" / f"{subject}_seed-0.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record))


def test_backbone_scaling_correlates_accuracy_with_log_parameters(scaling, sized_backbones, tmp_path):
    _fake_results(scaling, tmp_path)
    result = backbone_scaling(tmp_path, "synthetic-intra")
    final, auto = (next(s for s in result.series if s["layer"] == kind) for kind in ("final", "validation-selected"))
    assert [p["params_millions"] for p in final["points"]] == [10.0, 100.0, 1000.0]
    assert [p["mean"] for p in final["points"]] == pytest.approx([0.1, 0.2, 0.3])
    assert final["pearson_r"] == pytest.approx(1.0)
    assert final["fit"]["slope"] == pytest.approx(0.1 * math.log10(2))  # 0.1 per decade, per doubling
    assert (auto["pearson_r"], auto["pearson_p"]) == pytest.approx((0.5, 2 / 3), abs=1e-6)  # as in the known case
    assert result.path == tmp_path / "_analyses/synthetic-intra/v1/backbone-scaling/all.json"
    assert "test_big" in result.table() and "Pearson r = 1.00" in result.summary()
    with pytest.raises(MissingDataError, match="No result files of task 'synthetic-inter'"):
        backbone_scaling(tmp_path, "synthetic-inter")


# --- RSA -------------------------------------------------------------------------------------------


def test_rsa_peaks_at_the_planted_layer_and_erp_latencies(rsa_run, tiny_dataset):
    source = tiny_dataset.metadata["source"]
    result = RSAResult(AnalysisRecord.model_validate(rsa_run))
    assert result.peak["layer"] == source["planted_layer"]["name"] == "blocks.3"
    components = [s["components"] for s in source["subjects"]]

    def near(time, names):  # within one kernel width of a component's mean latency
        return any(abs(time - np.mean([c[n]["latency"] for c in components]))
                   <= np.mean([c[n]["width"] for c in components]) for n in names)

    assert near(result.peak["time"], ("P1", "N1", "P2"))  # the kernels that carry the planted layer
    final_course = result.similarity[result.layers.index("final")]
    assert near(result.times[np.argmax(final_course)], ("late",))  # the kernel that carries the final layer
    pvalues, ceiling = np.asarray(rsa_run["results"]["pvalues"]), np.asarray(rsa_run["results"]["noise_ceiling"])
    onset = int(np.argmin(np.abs(result.times)))
    assert result.peak["p"] < 0.01 and (pvalues[:, onset] > 0.05).all()  # nothing at image onset
    assert ceiling[onset] < 0.25 < result.peak["similarity"] < result.peak["noise_ceiling"]
    assert "blocks.3 (peak)" in result.table() and "Peak: layer blocks.3" in result.summary()


def test_rsa_cli_rejects_bad_input(task_file, tmp_path):
    bad = cli.invoke(app, ["rsa", "--task", str(task_file), "--backbone", "efficientnet_lite9", "--results-dir",
                           str(tmp_path)])
    assert bad.exit_code == 2 and "Did you mean 'efficientnet_lite0'" in bad.output
    bad = cli.invoke(app, ["rsa", "--task", str(task_file), "--permutations", "0", "--results-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "at least 1" in bad.output


# --- leaderboard sections --------------------------------------------------------------------------


def test_leaderboard_pages_gain_analysis_sections(scaling, rsa_run, sized_backbones, store, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(store, results)
    _fake_results(scaling, results)
    plain = tmp_path / "plain"
    shutil.copytree(results, plain, ignore=shutil.ignore_patterns("_analyses"))
    before = build_leaderboard(plain, tmp_path / "before")["synthetic-intra-v1"].read_text()
    assert "## Data scaling" not in before
    backbone_scaling(results, "synthetic-intra")
    pages = build_leaderboard(results, tmp_path / "board")
    page = pages["synthetic-intra-v1"].read_text()
    # the sections are added before the published numbers; everything else is unchanged
    head = before.split("## Backbone size")[0]
    assert page.startswith(head)
    for title in ("## Data scaling", "## Backbone scaling", "## Brain similarity (RSA)"):
        assert page.count(title) == 1
    assert "### ridge / efficientnet_lite0 / layer blocks.3" in page and "Peak: layer blocks.3" in page
    assert "result files changed" not in page
    for png in ("data-scaling-ridge_efficientnet_lite0_blocks.3_default", "backbone-scaling", "rsa-efficientnet_lite0"):
        assert f"(synthetic-intra-v1-{png}.png)" in page
        assert (tmp_path / "board" / f"synthetic-intra-v1-{png}.png").is_file()
    assert build_leaderboard(results, tmp_path / "again")["synthetic-intra-v1"].read_bytes() == page.encode()
    # a changed result file marks the backbone-scaling section as out of date
    changed = next((results / "synthetic-intra").rglob("sub-01_seed-0.json"))
    record = json.loads(changed.read_text())
    record["scores"]["top1"] += 0.05
    changed.write_text(json.dumps(record))
    assert "result files changed" in build_leaderboard(results, tmp_path / "stale")["synthetic-intra-v1"].read_text()


def test_a_task_with_only_analyses_gets_a_page(rsa_run, store, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(store / "_analyses", results / "_analyses", ignore=shutil.ignore_patterns("runs", "data-scaling"))
    pages = build_leaderboard(results, tmp_path / "board")
    page = pages["synthetic-intra-v1"].read_text()
    assert "only analyses" in page and "## Brain similarity (RSA)" in page
    assert "[synthetic-intra](synthetic-intra-v1.md) | 1 | 0 | 0 |" in pages["index"].read_text()
