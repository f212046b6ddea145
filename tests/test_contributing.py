"""CONTRIBUTING.md's walkthroughs, followed literally: a method, a dataset and a backbone.

Each walkthrough's code blocks run in order in an empty folder: a block with a ``title`` is a file to
create, an untitled ``bash`` block holds commands, an untitled ``python`` block runs, and a ``text``
block is the exact output of the ``python`` block before it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eegbench.backbones import list_backbones
from eegbench.backbones import registry as backbone_registry
from eegbench.cli import app
from eegbench.data import list_datasets
from helpers import isolated_registries

GUIDE = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


def _steps(heading: str) -> list[tuple[str, str, str]]:
    """(language, title, body) of each code block of the section starting ``## <heading>``."""
    text = GUIDE.read_text().split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r'```(\w+)(?: title="([^"]+)")?\n(.*?)```', text, flags=re.S)


@contextlib.contextmanager
def _isolated(folder: Path) -> Iterator[None]:
    """Run in ``folder`` (importable); afterwards forget every dataset, backbone and module registered there."""
    modules, cwd = set(sys.modules), Path.cwd()
    os.chdir(folder)
    sys.path.insert(0, str(folder))
    try:
        with isolated_registries():
            yield
    finally:
        os.chdir(cwd)
        sys.path.remove(str(folder))
        for name in set(sys.modules) - modules:
            if str(getattr(sys.modules[name], "__file__", None) or "").startswith(str(folder)):
                del sys.modules[name]


def _follow_python(steps: list[tuple[str, str, str]]) -> int:
    """Write the titled files, run the python blocks and compare their output; return how many ran."""
    ran, output = 0, None
    for lang, title, body in steps:
        if title:
            Path(title).write_text(body)
        elif lang == "python":
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                exec(compile(body, f"{GUIDE.name}, python block {ran + 1}", "exec"), {"__name__": "__main__"})
            output, ran = buffer.getvalue(), ran + 1
        elif lang == "text":
            assert output == body, f"the guide shows\n{body}\nbut the code printed\n{output}"
            output = None
        else:
            raise AssertionError(f"unexpected {lang} block")
    return ran


@pytest.mark.slow
def test_walkthrough_works_literally(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    steps = _steps("Walkthrough")
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


def test_adding_a_dataset_works_literally(tmp_path):
    steps = _steps("Adding a dataset")
    assert [(lang, title) for lang, title, _ in steps] == [
        ("python", ""), ("python", "my_eeg.py"), ("python", ""), ("text", "")]
    with _isolated(tmp_path):
        assert _follow_python(steps) == 2
        assert "my-eeg" in list_datasets()
    assert "my-eeg" not in list_datasets() and "my_eeg" not in sys.modules


def test_adding_a_backbone_works_literally(tmp_path):
    steps = _steps("Adding a backbone")
    assert [(lang, title) for lang, title, _ in steps] == [("python", "my_backbones.py"), ("python", ""), ("text", "")]
    with _isolated(tmp_path):
        assert _follow_python(steps) == 1
        assert "resnet18" in list_backbones()
    assert "resnet18" not in list_backbones() and "my_backbones" not in sys.modules
    assert not any(key[0] == "resnet18" for key in backbone_registry._LOADED)
