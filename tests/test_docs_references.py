"""The commands and files the documentation names exist: every `python -m package.module` of a Markdown file or a
Makefile is a module of this repository, and every backquoted repository path (`grading/harness.py`, or a bare
`setup.sh`) is a tracked file. Renaming or removing one without its mentions fails here."""

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE = re.compile(r"python3? -m ((?:homework|grading|bench|summarizer|tests|data)(?:\.[a-z_]+)+)")
PATH = re.compile(r"`([A-Za-z0-9_./-]+\.(?:py|toml|ipynb|sh|md|cfg))`")


def tracked(pattern: str) -> list[str]:
    return subprocess.run(["git", "ls-files", pattern], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.split()


FILES = set(tracked("*"))
NAMES = {Path(f).name for f in FILES}
DOCS = tracked("*.md") + sorted(f for f in FILES if Path(f).name == "Makefile")


@pytest.mark.parametrize("doc", DOCS)
def test_named_modules_and_files_exist(doc):
    text = (REPO / doc).read_text(encoding="utf-8")
    missing = [f"python -m {m}" for m in MODULE.findall(text) if f"{m.replace('.', '/')}.py" not in FILES]
    for path in PATH.findall(text):
        if path.startswith("build/") or "/" not in path and path in NAMES:
            continue
        relative = os.path.normpath(Path(doc).parent / path)
        if "/" in path and path not in FILES and relative not in FILES and not (REPO / path).is_dir():
            missing.append(path)
        elif "/" not in path and not path.endswith(".md"):      # a bare .md name: a written report
            missing.append(path)
    assert not missing, f"{doc} names what does not exist: {missing}"
