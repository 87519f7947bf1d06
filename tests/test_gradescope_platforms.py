"""The Gradescope bundle on the Pythons it claims (3.10-3.13): no newer-Python code on the grading path, grading
requirements that pip resolves for each, a setup.sh that stops naming what is missing. The bundle graded in an
emulated Gradescope container is in tests/test_grading_hw8.py; the whole corpus on Debian trixie's Python 3.13 is
`make gradescope-check` (grading/gradescope_check.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

from grading.gradescope import GRADING_REQUIREMENTS, grading_requirements, harness_files  # noqa: E402
from grading.gradescope_check import PYTHON_VERSIONS, resolution_problems  # noqa: E402

# What the Gradescope harness runs: its own files, the cases, and the instructor's code it imports as the reference.
GRADING_PATH = [*harness_files(REPO / "grading" / "cases_hw8.py"), "grading/cases_hw8.py", "kernel_attention.py",
                "run_flags.py", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "summarizer").glob("*.py"))]


def test_the_grading_path_runs_on_python_3_10():
    """vermin finds no module, function or syntax newer than Python 3.10 on the grading path (a `# novermin` line
    is a guarded import with a fallback, e.g. tomllib -> tomli)."""
    vermin = Path(sys.executable).parent / "vermin"
    done = subprocess.run([str(vermin), "-t=3.10-", "--violations", "--no-tips", "--eval-annotations",
                           *GRADING_PATH], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]


def test_grading_requirements_name_what_the_harness_imports_and_leave_torch_to_setup():
    pins = grading_requirements()
    assert "torch" not in pins and "tomli==" in pins and "numpy==" in pins
    bad = GRADING_REQUIREMENTS.parent / "requirements-bad.txt"
    try:
        bad.write_text(pins.replace("tomli==", "tomlkit=="))
        with pytest.raises(ValueError, match="tomli"):
            grading_requirements(bad)
    finally:
        bad.unlink()


@pytest.mark.skipif(os.environ.get("HW8_OFFLINE") == "1", reason="HW8_OFFLINE=1: no package index to resolve against")
def test_grading_requirements_resolve_for_every_python_claimed():
    """pip install --dry-run of requirements-grading.txt with wheels for each of Python 3.10-3.13 (manylinux)."""
    assert PYTHON_VERSIONS == ("3.10", "3.11", "3.12", "3.13")
    assert resolution_problems(GRADING_REQUIREMENTS) == {}
    unresolvable = GRADING_REQUIREMENTS.parent / "requirements-unresolvable.txt"
    try:
        unresolvable.write_text("numpy==2.4.6\n")                     # no wheel for Python 3.10
        assert set(resolution_problems(unresolvable, ("3.10",))) == {"3.10"}
    finally:
        unresolvable.unlink()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_setup_stops_naming_what_is_missing(tmp_path):
    """setup.sh on an image without python3 (HW8_SKIP_APT=1, an empty PATH) stops with a message, exit 1."""
    script = REPO / "grading" / "gradescope_bundle" / "setup.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    done = subprocess.run(["/bin/bash", str(script)], env={"PATH": str(bin_dir), "HW8_SKIP_APT": "1"},
                          capture_output=True, text=True)
    assert done.returncode == 1 and "setup.sh: python3 is missing" in done.stderr, done.stderr
