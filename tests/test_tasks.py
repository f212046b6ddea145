import pytest
import yaml

from eegbench._check import InvalidInputError, UnknownNameError
from eegbench.tasks import list_tasks, load_task, task_path


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
    ({"protocol": "sideways"}, r"protocol: Input should be 'intra' or 'inter'"),
    ({"time_window": [1.0, 0.0]}, r"time_window: Value error, time_window must be \[start, end\)"),
    ({"seeds": []}, r"seeds: List should have at least 1 item"),
    ({"chance": {"top1": 0.005}}, r"chance must give a level for every metric; missing \['top5'\]"),
    ({"version": 0}, r"version: Input should be greater than or equal to 1"),
])
def test_malformed_task_files_name_the_problem(tmp_path, changes, message):
    path = _write(tmp_path, **changes)
    with pytest.raises(InvalidInputError, match=rf"Task file .*synthetic-intra\.yaml is invalid:\n(.|\n)*{message}"):
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
