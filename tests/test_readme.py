"""The README's generated parts match the code, and its quick start is what CI runs."""

from __future__ import annotations

import os
import re

import subprocess
import sys

from conftest import REPO

BEGIN, END = "<!-- activations:begin", "<!-- activations:end -->"


def fresh(expression: str) -> str:
    """Evaluated in a new interpreter: other tests register activations of their own."""
    code = f"import layers.activations as a; print({expression})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_activation_table_is_generated_from_the_registry():
    path = REPO / "README.md"
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    marker, _, tail = rest.partition("\n")
    body, _, after = tail.partition(END)
    table = fresh("a.activation_table_markdown()").strip()
    if os.environ.get("UPDATE_README") == "1":
        path.write_text(f"{head}{BEGIN}{marker}\n{table}\n{END}{after}", encoding="utf-8")
        return
    assert body.strip() == table, "the table is stale: UPDATE_README=1 pytest tests/test_readme.py"


def test_every_activation_is_in_the_readme_table():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for name in fresh("' '.join(a.activation_names())").split():
        assert f"| `{name}` |" in text, name


def test_quick_start_is_the_two_commands_ci_runs():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = re.search(r"## Quick start\n(.*?)\n## ", text, re.S).group(1)
    commands = [line for line in section.splitlines() if line.startswith("pip install")]
    assert commands == ["pip install -e . && python -m runner", "pip install -e '.[test]' && pytest"]
    assert commands[1] in (REPO / ".ci" / "run").read_text()


def test_load_run_is_importable_from_the_package_without_cost_at_start():
    probe = "import sys, runner; print('runner.results' in sys.modules); runner.load_run; print('runner.results' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO).stdout.split()
    assert out == ["False", "True"]


def test_package_version_matches_pyproject():
    import runner

    text = (REPO / "pyproject.toml").read_text()
    assert f'version = "{runner.__version__}"' in text
