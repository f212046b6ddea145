"""CONTRIBUTING.md's walkthrough, followed literally: an empty folder to a checked submission."""

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eegbench.cli import app

GUIDE = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


def _walkthrough_steps():
    text = GUIDE.read_text().split("## Walkthrough", 1)[1].split("\n## ", 1)[0]
    return re.findall(r'```(\w+)(?: title="([^"]+)")?\n(.*?)```', text, flags=re.S)


@pytest.mark.slow
def test_walkthrough_works_literally(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    steps = _walkthrough_steps()
    kinds = [(lang, bool(title)) for lang, title, _ in steps]
    assert ("yaml", True) in kinds and ("python", True) in kinds
    checked = False
    for lang, title, body in steps:
        if title:  # a file to create, exactly as shown
            Path(title).write_text(body)
        elif lang == "bash":
            for line in body.strip().splitlines():
                words = shlex.split(line)
                if words[:2] == ["mkdir", "-p"]:
                    Path(words[2]).mkdir(parents=True)
                else:
                    assert words[0] == "eegbench", f"unexpected command {line!r}"
                    result = CliRunner().invoke(app, words[1:])
                    assert result.exit_code == 0, result.output
                    assert "Check passed." in result.stdout and "mid-depth" in result.stdout
                    assert "final (reference)" in result.stdout
                    checked = True
    assert checked
