"""The Colab set-up cell (homework/colab.py): the first code cell of every notebook, inert off Colab; on Colab (a
stand-in `google.colab` here) it changes into the homework folder and installs only what is missing, pinned as in
requirements.txt, with the installed torch as a constraint. The cell on a Colab-like machine (trixie, /content, a
Drive stand-in) is run by `make trixie-check` (bench/trixie_student.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from homework import colab
from homework.parts import NOTEBOOKS

REPO = Path(__file__).resolve().parents[1]


def first_code_cell(notebook: str) -> str:
    cells = json.loads((REPO / notebook).read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_notebook_starts_with_the_setup_cell(notebook):
    assert first_code_cell(notebook) == colab.SETUP_CELL.rstrip("\n")


def run_cell(tmp_path, env_extra, stand_in: bool):
    """The cell in a fresh Python started in tmp_path (optionally with a stand-in google.colab whose drive.mount
    records its folder); the finished process (stdout ends with the final working directory) and the mounts."""
    mounts = tmp_path / "mounts.txt"
    if stand_in:
        package = tmp_path / "site" / "google" / "colab"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "drive.py").write_text(f"def mount(path):\n    open({str(mounts)!r}, 'a').write(path + '\\n')\n")
    program = colab.SETUP_CELL + "\nimport os\nprint('CWD=' + os.getcwd())\n"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), **env_extra}
    env = {k: v for k, v in env.items() if v is not None}
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    return done, mounts.read_text().split() if mounts.exists() else []


def test_off_colab_the_cell_does_nothing(tmp_path):
    done, mounts = run_cell(tmp_path, {}, stand_in=False)
    assert done.returncode == 0 and done.stdout == f"CWD={tmp_path}\n" and mounts == []


def test_on_colab_the_cell_changes_into_hw8_dir_and_installs_nothing_present(tmp_path):
    done, mounts = run_cell(tmp_path, {"HW8_DIR": str(REPO)}, stand_in=True)
    assert done.returncode == 0, done.stderr
    assert f"homework folder: {REPO} (NOT on Google Drive" in done.stdout
    assert "installed: nothing (all present)" in done.stdout and f"CWD={REPO}\n" in done.stdout
    assert mounts == []                                      # HW8_DIR given: Drive is not mounted


def test_on_colab_without_a_folder_it_mounts_drive_then_names_the_problem(tmp_path):
    assert not Path("/content").exists(), "this test needs a machine without /content"
    done, mounts = run_cell(tmp_path, {"HW8_DIR": None}, stand_in=True)
    assert done.returncode != 0 and mounts == ["/content/drive"]
    assert "found 0 homework folders" in done.stderr and "HW8_DIR" in done.stderr


def test_pins_are_read_from_requirements(tmp_path):
    (tmp_path / "requirements.txt").write_text("# c\nrouge-score==0.1.2\nBertViz == 1.4.1  # views\nfoo>=1\n")
    assert colab.pins(tmp_path / "requirements.txt") == {"rouge-score": "rouge-score==0.1.2",
                                                         "bertviz": "BertViz==1.4.1"}


def test_only_what_is_missing_is_installed_with_torch_held(tmp_path, monkeypatch):
    (tmp_path / "requirements.txt").write_text("hw8-absent-package==1.2.3\ntorch==9.9\n")
    monkeypatch.setattr(colab, "NEEDED", {"json": "json", "hw8_absent_package": "hw8-absent-package"})
    assert colab.missing_requirements(tmp_path) == ["hw8-absent-package==1.2.3"]
    calls = []

    def fake_run(argv, check):
        constraint = Path(argv[argv.index("-c") + 1]).read_text()
        calls.append((argv[argv.index("-c") + 2:], constraint))

    monkeypatch.setattr(colab.subprocess, "run", fake_run)
    assert colab.set_up(tmp_path) == ["hw8-absent-package==1.2.3"]
    import torch

    assert calls == [(["hw8-absent-package==1.2.3"], f"torch=={colab.importlib.metadata.version('torch')}\n")]
    assert torch.__version__.startswith(colab.importlib.metadata.version("torch").split("+")[0])
