import shutil

import pytest

from eegbench._check import InvalidInputError, UnknownNameError
from eegbench.submissions import list_submissions, load_submission


def test_reference_submissions_are_discovered():
    assert {"final", "shallow"} <= set(list_submissions())
    final = load_submission("final")
    assert final.meta.name and final.meta.license and final.meta.citation
    assert final.supports("synthetic-intra") and len(final.code_sha256) == 64


def test_unknown_method_suggests():
    with pytest.raises(UnknownNameError, match=r"Unknown method 'shalow'\. Did you mean 'shallow'\?"):
        load_submission("shalow")


def describe(name, training=None, overrides=None, layer=None):
    """What the method's worker answers for a configuration (its code never runs in this process)."""
    from eegbench.backbones import load_backbone
    from eegbench.isolation import SubmissionSession

    layout = load_backbone("efficientnet_lite0", pretrained=False, device="meta").layout()
    with SubmissionSession(load_submission(name), timeout=120) as session:
        return session.describe(training or {}, overrides or {}, layer, layout)


def test_hyperparameters_merge_task_then_overrides():
    plan = describe("shallow", {"epochs": 20, "lr": 1e-3, "not_mine": 1}, {"epochs": 3}, layer="blocks.3")
    assert (plan.hyperparameters["epochs"], plan.hyperparameters["lr"], plan.hyperparameters["batch_size"]) == \
        (3, 1e-3, 1024)
    assert [ref.name for ref in plan.layers] == ["blocks.3"] and plan.layer_setting == "blocks.3"
    with pytest.raises(InvalidInputError, match=r"Method 'shallow' has no hyperparameter 'epochz'\. Its "
                                                r"hyperparameters: epochs, batch_size"):
        describe("shallow", overrides={"epochz": 3})
    with pytest.raises(InvalidInputError, match=r"epochs: Input should be greater than or equal to 1"):
        describe("shallow", overrides={"epochs": 0})
    with pytest.raises(InvalidInputError, match="Method 'final' chooses its own layers and takes no --layer"):
        describe("final", layer="3")


def _copy_final(tmp_path, name="mine"):
    folder = tmp_path / name
    shutil.copytree(load_submission("final").folder, folder)
    meta = (folder / "submission.yaml").read_text().replace("id: final", f"id: {name}")
    (folder / "submission.yaml").write_text(meta)
    return folder


def test_a_folder_can_be_loaded_by_path_and_changes_its_code_hash(tmp_path):
    folder = _copy_final(tmp_path)
    first = load_submission(folder)
    assert first.id == "mine"
    (folder / "method.py").write_text((folder / "method.py").read_text() + "\n# a change\n")
    assert load_submission(folder).code_sha256 != first.code_sha256


@pytest.mark.parametrize("edit, message", [
    (lambda f: (f / "submission.yaml").write_text((f / "submission.yaml").read_text().replace("license: MIT\n", "")),
     "license: required field is missing"),
    (lambda f: (f / "submission.yaml").write_text((f / "submission.yaml").read_text().replace("id: mine", "id: other")),
     "declares id 'other'; it must match the folder name 'mine'"),
    (lambda f: (f / "submission.yaml").write_text((f / "submission.yaml").read_text().replace(
        "method:FinalAlignment", "nomodule:FinalAlignment")), "nomodule.py does not exist"),
    (lambda f: (f / "submission.yaml").unlink(), "has no submission.yaml"),
])
def test_broken_submissions_get_clear_errors(tmp_path, edit, message):
    folder = _copy_final(tmp_path)
    edit(folder)
    with pytest.raises(InvalidInputError, match=message):
        load_submission(folder)


@pytest.mark.parametrize("edit, message", [
    (lambda f: (f / "submission.yaml").write_text((f / "submission.yaml").read_text().replace(
        "method:FinalAlignment", "method:Nope")), "must name a subclass of eegbench.submissions.Method"),
    (lambda f: (f / "method.py").write_text("raise RuntimeError('boom')\n"), "RuntimeError: boom"),
])
def test_broken_code_is_reported_by_its_worker(tmp_path, edit, message):
    """Loading reads metadata only; the code is imported in the method's worker, which reports errors."""
    folder = _copy_final(tmp_path)
    edit(folder)
    with pytest.raises(InvalidInputError, match=message):
        describe(str(load_submission(folder).folder))


def test_a_folder_may_not_shadow_a_registered_id_with_other_code(tmp_path):
    folder = tmp_path / "final"
    shutil.copytree(load_submission("final").folder, folder)
    assert load_submission(folder).id == "final"  # the same code: the same method
    (folder / "method.py").write_text((folder / "method.py").read_text() + "\n# changed\n")
    with pytest.raises(InvalidInputError, match="registered submission .* with other code"):
        load_submission(folder)


def test_extra_search_path(tmp_path, monkeypatch):
    _copy_final(tmp_path, "extra-method")
    monkeypatch.setenv("EEGBENCH_SUBMISSIONS_PATH", str(tmp_path))
    assert "extra-method" in list_submissions()
    assert load_submission("extra-method").folder == (tmp_path / "extra-method").resolve()
