import json
from pathlib import Path

import pytest
import yaml

from eegbench._check import InvalidInputError, UnknownNameError
from eegbench.tasks import list_tasks, load_task, task_path

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list_tasks())
def test_every_shipped_task_is_valid(name):
    task = load_task(name)
    assert task.id == name
    assert task.seeds and set(task.metrics) <= set(task.chance)
    assert len(task.content_hash) == 64


def test_the_synthetic_tasks_exist_and_differ_only_in_protocol():
    intra, inter = load_task("synthetic-intra"), load_task("synthetic-inter")
    assert (intra.protocol, inter.protocol) == ("intra", "inter")
    assert intra.dataset == inter.dataset and intra.training == inter.training
    assert intra.content_hash != inter.content_hash


def _write(tmp_path, **changes):
    data = yaml.safe_load(task_path("synthetic-intra").read_text())
    data.update(changes)
    path = tmp_path / f"{data['id']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_task_loads_from_a_path(tmp_path):
    path = _write(tmp_path, id="my-task", seeds=[0, 1, 2])
    assert load_task(path).seeds == [0, 1, 2]


@pytest.mark.parametrize("changes, message", [
    ({"colour": "blue"}, r"colour: unknown field"),
    ({"protocol": "sideways"}, r"protocol: Input should be 'intra', 'inter', 'joint' or 'cross'"),
    ({"protocol": "cross"}, r"protocol: cross needs test_dataset"),
    ({"time_window": [1.0, 0.0]}, r"time_window: time_window must be \[start, end\)"),
    ({"seeds": []}, r"seeds: List should have at least 1 item"),
    ({"chance": {"top1": 0.005}}, r"chance must give a level for every metric; missing \['top5'\]"),
    ({"version": 0}, r"version: Input should be greater than or equal to 1"),
    ({"seeds": [-5]}, r"seeds.0: Input should be greater than or equal to 0 \(got -5\)"),
    ({"seeds": [0, 1, 0]}, r"seeds: entries must not repeat; given more than once: 0 \(got \[0, 1, 0\]\)\."),
    ({"subjects": [1, 2, 1]}, r"subjects: entries must not repeat; given more than once: 1 \(got \[1, 2, 1\]\)\."),
    ({"subjects": [0]}, r"subjects: subject numbers start at 1 \(got \[0\]\)"),
    ({"channels": ["O1", "O1", "O1"]},
     r"channels: entries must not repeat; given more than once: O1 \(got \['O1', 'O1', 'O1'\]\)\."),
])
def test_malformed_task_files_name_the_problem(tmp_path, changes, message):
    path = _write(tmp_path, **changes)
    with pytest.raises(InvalidInputError, match=rf"Task file .*synthetic-intra\.yaml is invalid: .*{message}"):
        load_task(path)


def test_missing_field_and_bad_yaml_and_id_mismatch(tmp_path):
    data = yaml.safe_load(task_path("synthetic-intra").read_text())
    del data["protocol"]
    (tmp_path / "synthetic-intra.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(InvalidInputError, match="protocol: required field is missing"):
        load_task(tmp_path / "synthetic-intra.yaml")
    (tmp_path / "broken.yaml").write_text("id: [unclosed")
    with pytest.raises(InvalidInputError, match="is not valid YAML"):
        load_task(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(InvalidInputError, match="must hold a mapping of fields, got list"):
        load_task(tmp_path / "list.yaml")
    renamed = _write(tmp_path, id="other-name")
    renamed.rename(tmp_path / "file-name.yaml")
    with pytest.raises(InvalidInputError, match="declares id 'other-name'; the id must match the file name"):
        load_task(tmp_path / "file-name.yaml")


def test_a_key_given_twice_is_an_error_not_last_wins(tmp_path):
    text = task_path("synthetic-intra").read_text()
    path = tmp_path / "synthetic-intra.yaml"
    path.write_text(text.replace("seeds: [0]", "seeds: [0]\nseeds: [1]"))
    line = text.splitlines().index("seeds: [0]") + 2
    with pytest.raises(InvalidInputError, match=rf"is not valid YAML \(line {line}, column 1: key 'seeds' appears "
                                                r"twice \(first on line \d+\); keep one\)"):
        load_task(path)
    nested = tmp_path / "nested" / "synthetic-intra.yaml"
    nested.parent.mkdir()
    nested.write_text(text.replace("  lr: 1.0e-3", "  lr: 1.0e-3\n  lr: 5.0"))
    with pytest.raises(InvalidInputError, match="key 'lr' appears twice"):
        load_task(nested)


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match=r"Unknown task 'synthetic-intro'\. Did you mean 'synthetic-intra'\?"):
        load_task("synthetic-intro")


def test_chance_is_checked_against_the_gallery():
    task = load_task("synthetic-intra")
    task.check_chance(200)
    with pytest.raises(InvalidInputError, match=r"declares chance top1 = 0\.005, but its gallery has 50 images"):
        task.check_chance(50)


def test_overrides_merge_dataset_options():
    task = load_task("synthetic-intra").with_overrides(dataset_options={"n_subjects": 2}, seeds=[3])
    assert task.dataset.options == {"planted_layer": "blocks.3", "n_subjects": 2}
    assert task.seeds == [3]


#: content hashes of the committed tasks: results record them, so a schema change must leave them as they are
COMMITTED_HASHES = {
    "synthetic-inter": "fc5683fed1dcd0b6b2f149715f02ebdfb37e99df64710097cbf54e548e0b330e",
    "synthetic-intra": "1ffb8e202d5688fc942c194f57e3990fa1f588de4f1f9b5c8294b44448f3a0ca",
    "things-eeg-inter": "c7653af567b471a4f381c8e5b74341ce64cc0fcc609e9399b1fde77b4ec4513e",
    "things-eeg-intra": "8414984ad37cbbaff3716f59ec532ebf59d3c76545d8dbc1efe8f1114dac3e5f",
    "things-meg-inter": "6689fd8de3790018e6f1e954d9a18a314f60173b459da6f90094bd5aa3d0f439",
    "things-meg-intra": "3a5229ec8dac22ea619b367fe5395df4f556841bb74d4b46b2921f87e7613815",
}


@pytest.mark.parametrize("name", sorted(COMMITTED_HASHES))
def test_committed_task_hashes_are_unchanged(name):
    assert load_task(name).content_hash == COMMITTED_HASHES[name]


def test_committed_results_match_their_task_hash():
    for path in sorted((REPO / "leaderboard" / "results").rglob("*.json")):
        recorded = json.loads(path.read_text())["task"]
        task = load_task(recorded["id"])
        if task.version == recorded["version"]:
            assert recorded["hash"] == task.content_hash, path


def test_main_score_and_reference_method_enter_the_hash_only_when_set(tmp_path):
    task = load_task("synthetic-intra")
    assert (task.main_score, task.reference_method) == ("top1", "final")
    assert task.with_overrides(main_score="top1", reference_method="final").content_hash == task.content_hash
    changed = {task.with_overrides(main_score="top5").content_hash,
               task.with_overrides(reference_method="shallow").content_hash}
    assert len(changed) == 2 and task.content_hash not in changed
    assert load_task(_write(tmp_path, main_score="top5")).main_score == "top5"


@pytest.mark.parametrize("changes, message", [
    ({"main_score": "top5", "metrics": ["top1"]}, r"main_score must be one of the task's metrics \['top1'\]"),
    ({"main_score": "mean_rank"}, r"main_score: String should match pattern '\^top"),
    ({"reference_method": "../final"}, r"reference_method: String should match pattern"),
])
def test_main_score_and_reference_method_are_validated(tmp_path, changes, message):
    with pytest.raises(InvalidInputError, match=message):
        load_task(_write(tmp_path, **changes))
