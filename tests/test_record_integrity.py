"""Result files are untrusted: identifiers are validated, only registered code is re-run, only
files at the path of their own key make the board, strings are escaped, rows computed with other
code than the registered submission's are flagged, and a corrupt result file is computed again."""

import json
import logging
import re
import shutil
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eegbench._check import DataError, InvalidInputError
from eegbench._progress import logger
from eegbench.cli import app
from eegbench.leaderboard import build_leaderboard
from eegbench.reproduction import reproduce
from eegbench.records import ResultRecord
from eegbench.results import ResultStore
from eegbench.runner import run
from helpers import tiny_task, write_tiny_task_file

COMMITTED = Path(__file__).resolve().parents[1] / "leaderboard" / "results"
#: 8 records: final and shallow (validation-selected layer), 4 subjects, one seed
INTER = "synthetic-inter"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged():
    """The warnings eegbench logs (caught on its own logger, which stops propagating once the CLI set up logging)."""
    handler = _Collect()
    logger.addHandler(handler)
    yield lambda: handler.messages
    logger.removeHandler(handler)


@pytest.fixture
def results(tmp_path):
    """A copy of the committed synthetic-inter results of final and shallow."""
    root = tmp_path / "results"
    for method in ("final", "shallow"):
        shutil.copytree(COMMITTED / INTER / "v1" / method, root / INTER / "v1" / method)
    return root


def _committed(task: str = INTER) -> dict:
    """The committed record of final on sub-01, seed 0."""
    path = next((COMMITTED / task).glob("v1/final/*/*/default/sub-01_seed-0.json"))
    return json.loads(path.read_text())


def _file(root: Path, data: dict) -> Path:
    """Write ``data`` where the store files its unit."""
    path = root / ResultRecord.from_disk(data).key.relative_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _main_table(page: str) -> list[str]:
    return page.split("## Main table")[1].split("\n\n")[1].splitlines()


@pytest.mark.parametrize("section, field, value", [
    ("method", "id", "../../evil"),
    ("method", "id", "final/x"),
    ("task", "id", "../synthetic-inter"),
    ("task", "version", "1/../../x"),
    ("backbone", "name", "timm:../../x"),
    ("backbone", "layer_setting", "../blocks.3"),
    ("method", "hp_tag", "default/.."),
    (None, "subject", "sub-01/../../x"),
    (None, "subject", "sub-01\n| evil |"),
])
def test_identifiers_that_could_leave_their_folder_fail_validation(tmp_path, section, field, value):
    data = _committed()
    ResultRecord.from_disk(data)  # the committed record is valid
    (data[section] if section else data)[field] = value
    path = tmp_path / "crafted.json"
    path.write_text(json.dumps(data))
    where = f"{section}.{field}" if section else field
    with pytest.raises(DataError, match=f"crafted.json is invalid: {re.escape(where)}: "):
        ResultStore(tmp_path).read(path)


def test_reproduce_runs_registered_submissions_only(tmp_path, monkeypatch):
    """A record naming a method that is no registered submission is refused before any import,
    even when a folder of that name (here in the working directory) holds code."""
    probe = tmp_path / "imported"
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "submission.yaml").write_text(textwrap.dedent("""\
        id: evil
        name: Evil
        authors: [nobody]
        description: Writes a file when imported.
        citation: none
        license: MIT
        features: final
        entrypoint: "method:Evil"
    """))
    (evil / "method.py").write_text(f"from pathlib import Path\nPath({str(probe)!r}).write_text('imported')\n")
    monkeypatch.chdir(tmp_path)
    data = _committed("synthetic-intra")  # of the registered task: only the method is wrong
    data["method"]["id"] = "evil"
    given = tmp_path / "given.json"
    given.write_text(json.dumps(data))

    with pytest.raises(InvalidInputError, match="Unknown method 'evil'.*registered submissions only"):
        reproduce(given)
    result = CliRunner().invoke(app, ["reproduce", str(given)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "Unknown method 'evil'" in result.output
    assert not probe.exists()


def test_a_record_dropped_elsewhere_makes_no_row(results, tmp_path, warnings_logged):
    """An impostor: a record of a new entry (final with other hyperparameters), dropped in a
    folder of its own choosing, plus a file that is no record at all."""
    data = _committed()
    data["method"]["hp_tag"] = "hp-0123456789"
    dropped = results / INTER / "v1" / "final" / "mine.json"
    dropped.write_text(json.dumps(data))
    broken = results / INTER / "v1" / "notes.json"
    broken.write_text('{"scores": ')

    page = build_leaderboard(results, tmp_path / "board")[f"{INTER}-v1"].read_text()
    assert "hp-0123456789" not in page and "8 result files" in page
    (warning,) = warnings_logged()
    assert "Skipped 2 files" in warning and str(dropped) in warning and str(broken) in warning


def test_two_files_of_one_key_make_one_row_of_one_record(results, tmp_path, warnings_logged):
    original = next(results.glob(f"{INTER}/v1/final/*/*/default/sub-01_seed-0.json"))
    copy = original.with_name("sub-01_seed-0 (copy).json")
    shutil.copy(original, copy)

    page = build_leaderboard(results, tmp_path / "board")[f"{INTER}-v1"].read_text()
    assert "8 result files" in page
    assert [line.split("|")[1].strip() for line in _main_table(page)[2:]] == ["shallow", "final"]
    (warning,) = warnings_logged()
    assert str(copy) in warning


def test_strings_from_records_are_escaped_in_tables(results, tmp_path):
    crafted = "<script>alert(1)</script> | `x` *y* [link](http://e)\n| row |"
    for path in results.glob(f"{INTER}/v1/shallow/**/*.json"):
        data = json.loads(path.read_text())
        data["report"]["layers"][0]["layer"]["name"] = crafted
        path.write_text(json.dumps(data))

    page = build_leaderboard(results, tmp_path / "board")[f"{INTER}-v1"].read_text()
    assert "<script>" not in page and "[link](" not in page
    assert r"val-selected: &lt;script&gt;alert(1)&lt;/script&gt; \| \`x\` \*y\* \[link\](http://e) \| row \|" in page
    table = _main_table(page)
    cells = {len(re.findall(r"(?<!\\)\|", line)) for line in table}
    assert len(table) == 4 and cells == {len(re.findall(r"\|", table[0]))}  # no cell broke out


def test_rows_of_other_code_than_the_registered_submission_are_flagged(results, tmp_path):
    for path in results.glob(f"{INTER}/v1/final/**/*.json"):
        data = json.loads(path.read_text())
        data["method"]["code_sha256"] = "0" * 64
        path.write_text(json.dumps(data))
    for path in results.glob(f"{INTER}/v1/shallow/**/*.json"):
        data = json.loads(path.read_text())
        data["method"]["id"] = "impostor"
        _file(results, data)
        path.unlink()

    page = build_leaderboard(results, tmp_path / "board")[f"{INTER}-v1"].read_text()
    assert [line.split("|")[1].strip() for line in _main_table(page)[2:]] == ["impostor †", "final †"]
    assert "† computed with code that differs from the registered submission `final`." in page
    assert "† computed with unregistered code: no submission is called `impostor`." in page


@pytest.fixture(scope="module")
def ridge_unit(tmp_path_factory):
    """One finished ridge unit (closed form: fast) on the tiny intra task."""
    root = tmp_path_factory.mktemp("ridge")
    result = run(tiny_task(), "ridge", subjects=[1], seeds=[0], results_dir=root, device="cpu")
    return root, result.records[0].key


def _truncated_copy(ridge_unit, tmp_path):
    root, key = ridge_unit
    copy = tmp_path / "results"
    shutil.copytree(root, copy)
    path = ResultStore(copy).path(key)
    text = path.read_text()
    path.write_text(text[:len(text) // 2])
    return copy, key, text[:len(text) // 2]


def test_a_truncated_result_is_set_aside_and_computed_again(ridge_unit, tmp_path, warnings_logged):
    root, key, truncated = _truncated_copy(ridge_unit, tmp_path)
    store = ResultStore(root)
    again = run(tiny_task(), "ridge", subjects=[1], seeds=[0], results_dir=root, device="cpu")
    assert (again.computed, again.skipped) == (1, 0)
    assert again.records[0].key == key and store.exists(key)
    assert store.corrupt_path(key).read_text() == truncated
    assert store.corrupt_path(key) == store.path(key).with_name("sub-01_seed-0.json.corrupt")
    (warning,) = warnings_logged()
    assert "is unreadable" in warning and "computed again" in warning


def test_sweep_status_shows_units_whose_result_was_corrupt(ridge_unit, tmp_path):
    root, key, _ = _truncated_copy(ridge_unit, tmp_path)
    task_file = write_tiny_task_file(tmp_path)
    status = CliRunner().invoke(app, ["sweep", "status", "--tasks", str(task_file), "--methods", "ridge",
                                      "--subjects", "1", "--seeds", "0", "--results-dir", str(root)])
    assert status.exit_code == 0, status.output
    text = " ".join(status.stdout.split())
    assert "0 done" in text and "1 to do (1 of the units not done had a corrupt result file)" in text
    assert "Units whose result file was corrupt" in text and "sub-01_seed-0.json.corrupt" in text
    assert "remaining 1" in text
