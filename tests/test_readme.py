"""The README's two quickstart commands stay runnable and CI runs the documented test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quickstart_commands():
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quickstart, flags=re.S)


def test_quickstart_has_exactly_two_one_line_commands():
    commands = _quickstart_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    main, tests = commands
    assert "eegbench run" in main and "eegbench leaderboard" in main
    assert "-c constraints.txt" in main and "-c constraints.txt" in tests
    assert "pytest" in tests and "HF_HUB_OFFLINE=1" in tests


def test_ci_runs_the_readme_test_command():
    assert _quickstart_commands()[1] in (ROOT / ".ci" / "run").read_text()


def test_constraints_pin_the_cpu_stack():
    pins = (ROOT / "constraints.txt").read_text()
    assert "torch==2.13.0" in pins and "torchvision==0.28.0" in pins
