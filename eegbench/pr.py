"""The pull-request check that ``.github/workflows/pr.yml`` runs: which submission folders a pull request
adds or changes, their ``eegbench check`` in the sandbox, and the one PR comment that shows the results.

The workflow calls three steps, each a thin command over a function here::

    python -m eegbench.pr check --base BASE_SHA --head HEAD_SHA --out checks.json   # exit 1 if a check failed
    python -m eegbench.pr comment checks.json --out comment.md
    python -m eegbench.pr post comment.md --repo OWNER/NAME --pr NUMBER            # token in $GITHUB_TOKEN

``check`` runs submission code (hostile until reviewed) at the sandbox isolation level, in a job
whose token can only read; ``post`` runs in another job, from the base branch's code, and only
sends the rendered comment (it needs pydantic alone: the heavier imports of the other steps are
made where they are used). The comment starts with :data:`MARKER`, an HTML comment that GitHub
does not show, by which ``post`` finds and updates its own comment instead of adding one per push.
A pull request that adds or changes attestation files (:mod:`eegbench.attestation`) is flagged:
only maintainers attest reproductions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from eegbench._check import EegbenchError, InvalidInputError

__all__ = ["MARKER", "PullRequestChecks", "SubmissionCheck", "changed_files", "changed_submissions",
           "changed_attestations", "comment_body", "post_comment", "run_checks"]

#: the hidden first line of the check comment, by which later runs find it
MARKER = "<!-- eegbench-pr-check -->"
SUBMISSIONS_DIR = "submissions"
#: who posts the comment from a workflow (the GITHUB_TOKEN's user)
ACTIONS_BOT = "github-actions[bot]"


# --- what a pull request changes ------------------------------------------------------------------

def _git(repo: str | Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        raise InvalidInputError(f"git {' '.join(args)} could not run in {repo}: {err}") from None
    if done.returncode != 0:
        raise InvalidInputError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()} (fetch the full "
                                "history, e.g. actions/checkout with fetch-depth: 0).")
    return done.stdout


def changed_files(base: str, head: str, repo: str | Path = ".") -> list[str]:
    """The files a pull request from ``base`` to ``head`` adds, changes or deletes (``git diff base...head``:
    since the commit where head branched off, as GitHub shows a pull request)."""
    return [line for line in _git(repo, "diff", "--name-only", "--no-renames", f"{base}...{head}").splitlines()
            if line]


def changed_submissions(base: str, head: str, repo: str | Path = ".") -> list[str]:
    """The submission folders (``submissions/<id>``) in which a pull request changes a file and that exist at
    ``head``, sorted: those to check (a deleted submission has nothing to run)."""
    folders = {str(PurePosixPath(*parts[:2])) for parts in (PurePosixPath(name).parts
                                                            for name in changed_files(base, head, repo))
               if len(parts) > 2 and parts[0] == SUBMISSIONS_DIR}
    at_head = set(_git(repo, "ls-tree", "-d", "--name-only", head, f"{SUBMISSIONS_DIR}/").splitlines())
    return sorted(folders & at_head)


def changed_attestations(base: str, head: str, repo: str | Path = ".") -> list[str]:
    """Attestation files (under a results folder's ``_attestations/``) that a pull request adds, changes or
    deletes: maintainers write those, not pull requests."""
    from eegbench.results import ATTESTATIONS_DIR

    return [name for name in changed_files(base, head, repo) if ATTESTATIONS_DIR in PurePosixPath(name).parts[:-1]]


# --- the checks ------------------------------------------------------------------------------------

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubmissionCheck(_Model):
    """The outcome of ``eegbench check`` on one submission folder."""

    folder: str
    status: Literal["passed", "failed"]
    #: the submission's id, task, isolation level and duration (None where the check failed before)
    submission: str | None = None
    task: str | None = None
    isolation: str | None = None
    seconds: float | None = None
    #: the check's table: the submission's and the reference method's scores, and chance
    table: str = ""
    warnings: list[str] = []
    #: the one-line error of a failed check
    error: str | None = None


class PullRequestChecks(_Model):
    """What ``python -m eegbench.pr check`` found: the checks of the changed submissions, and the attestation
    files the pull request touches."""

    schema_version: Literal[1] = 1
    head: str
    checks: list[SubmissionCheck]
    attestations: list[str] = []


def run_checks(folders: Sequence[str | Path], *, isolation: str = "sandbox", **options: Any) -> list[SubmissionCheck]:
    """``eegbench check`` of each folder at ``isolation`` (``options`` go to
    :func:`~eegbench.check.check_submission`); an error a submission can cause fails its check, not the rest."""
    from eegbench.check import check_submission

    checks = []
    for folder in folders:
        try:
            report = check_submission(folder, isolation=isolation, **options)
        except EegbenchError as err:
            checks.append(SubmissionCheck(folder=str(folder), status="failed", error=" ".join(str(err).split())))
            continue
        checks.append(SubmissionCheck(folder=str(folder), status="passed", submission=report.submission.id,
                                      task=report.result.task.id, isolation=report.isolation,
                                      seconds=round(report.seconds), table=report.table(), warnings=report.warnings))
    return checks


# --- the comment -----------------------------------------------------------------------------------

def comment_body(results: PullRequestChecks) -> str:
    """The PR comment (markdown, opening with :data:`MARKER`) of the checks of a pull request. Text from
    submissions (errors, warnings) is escaped: it cannot add markup or links."""
    from eegbench.leaderboard import code_span, escape_markdown

    lines = [MARKER, "## eegbench check", "",
             f"`eegbench check` of every submission folder this pull request adds or changes, at commit "
             f"{code_span(results.head[:12])}.", ""]
    if not results.checks:
        lines += ["This pull request changes no submission folder.", ""]
    for check in results.checks:
        lines += [f"### {code_span(check.folder)}: {check.status}", ""]
        if check.status == "failed":
            lines += [f"> {escape_markdown(check.error)}", ""]
            continue
        lines += [f"{code_span(check.submission)} ran on {code_span(check.task)} in {check.seconds:.0f} s (isolation "
                  f"{code_span(check.isolation)}), beside the task's reference method:", "", check.table, ""]
        lines += [f"- Warning: {escape_markdown(warning)}" for warning in check.warnings]
        lines += [""] if check.warnings else []
    if results.attestations:
        lines += ["### Attestation files", "",
                  "This pull request adds or changes attestation files, which only maintainers write (`eegbench "
                  "reproduce --attest`); they must not be merged from a pull request:", "",
                  *[f"- {code_span(path)}" for path in results.attestations], ""]
    lines += ["The scores of a check on the synthetic task show that a method runs, learns and keeps to the "
              "protocol; they are no board numbers. Result files attached to a pull request are `self-reported` "
              "until a maintainer re-runs them with `eegbench reproduce --attest`."]
    return "\n".join(lines) + "\n"


# --- posting it ------------------------------------------------------------------------------------

def _request(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {token}",
                                              "Accept": "application/vnd.github+json",
                                              "X-GitHub-Api-Version": "2022-11-28",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def _own_comment(api: str, repo: str, number: int, token: str, author: str) -> int | None:
    """The id of the first comment of ``author`` on the pull request that opens with :data:`MARKER`."""
    page = 1
    while True:
        comments = _request("GET", f"{api}/repos/{repo}/issues/{number}/comments?per_page=100&page={page}", token)
        for comment in comments:
            if comment["user"]["login"] == author and comment["body"].startswith(MARKER):
                return comment["id"]
        if len(comments) < 100:
            return None
        page += 1


def post_comment(body: str, *, repo: str, number: int, token: str, api: str = "https://api.github.com",
                 author: str = ACTIONS_BOT) -> tuple[Literal["created", "updated"], int]:
    """Create the check comment on pull request ``number`` of ``repo``, or update the one posted before (by
    ``author``, opening with :data:`MARKER`); returns what was done and the comment's id."""
    if not body.startswith(MARKER):
        raise InvalidInputError(f"A check comment opens with {MARKER}; render it with `python -m eegbench.pr comment`.")
    existing = _own_comment(api, repo, number, token, author)
    if existing is None:
        created = _request("POST", f"{api}/repos/{repo}/issues/{number}/comments", token, {"body": body})
        return "created", created["id"]
    _request("PATCH", f"{api}/repos/{repo}/issues/comments/{existing}", token, {"body": body})
    return "updated", existing


# --- command line ----------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eegbench.pr", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="eegbench check of every submission folder a pull request changes")
    check.add_argument("--base", required=True, help="the pull request's base commit")
    check.add_argument("--head", required=True, help="the pull request's head commit")
    check.add_argument("--isolation", default="sandbox", help="isolation level of the checks (default: sandbox)")
    check.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    comment = commands.add_parser("comment", help="render the PR comment of a results file")
    comment.add_argument("results", type=Path)
    comment.add_argument("--out", type=Path, required=True, help="markdown file for the comment")
    post = commands.add_parser("post", help="create or update the check comment (token in $GITHUB_TOKEN)")
    post.add_argument("comment", type=Path)
    post.add_argument("--repo", required=True, help="OWNER/NAME")
    post.add_argument("--pr", type=int, required=True, help="the pull request's number")
    post.add_argument("--api", default=os.environ.get("GITHUB_API_URL", "https://api.github.com"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one step of the pull-request workflow; returns the exit status (1: a check failed)."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        folders = changed_submissions(args.base, args.head)
        head = _git(".", "rev-parse", "--verify", f"{args.head}^{{commit}}").strip()
        results = PullRequestChecks(head=head, checks=run_checks(folders, isolation=args.isolation),
                                    attestations=changed_attestations(args.base, args.head))
        args.out.write_text(results.model_dump_json(indent=2) + "\n", encoding="utf-8")
        failed = [check.folder for check in results.checks if check.status == "failed"]
        print(f"Checked {len(folders)} submission folders; failed: {', '.join(failed) or 'none'}.")
        return 1 if failed else 0
    if args.command == "comment":
        results = PullRequestChecks.model_validate_json(args.results.read_text(encoding="utf-8"))
        args.out.write_text(comment_body(results), encoding="utf-8")
        return 0
    token = os.environ.get("GITHUB_TOKEN")
    if not token:
        raise InvalidInputError("post needs a GitHub token in $GITHUB_TOKEN.")
    try:
        done, comment = post_comment(args.comment.read_text(encoding="utf-8"), repo=args.repo, number=args.pr,
                                     token=token, api=args.api)
    except urllib.error.HTTPError as err:
        if err.code != 403:
            raise
        # a pull request from a fork gets a read-only token: the comment is in the check job's summary instead
        print(f"Cannot comment on pull request {args.pr} with this token (HTTP 403); see the job summary.")
        return 0
    print(f"Comment {comment} {done}.")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EegbenchError as error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(2)
