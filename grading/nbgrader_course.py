"""Set up an nbgrader course folder for a Course and run nbgrader commands in it (as subprocesses, with timeouts)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from grading.course import BEGIN_HIDDEN, BEGIN_SCHEME, END_HIDDEN, END_SCHEME, GRADING_DIR, Course
from grading.strip import strip_instructor_only
from homework.markers import ANSWER_STUB, BEGIN_SOLUTION, CODE_STUB, END_SOLUTION, has_marker_line, is_marker_line
from homework.parts import nbgrader_meta

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", ".pytest_cache")


def nbgrader_env(settings_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for nbgrader: the venv's bin first on PATH (nbgrader runs alembic), offline hub, settings file."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["HW8_NBGRADER_SETTINGS"] = str(settings_path)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.update(extra or {})
    return env


def copy_entry(src_root: Path, rel: str, dest_root: Path) -> None:
    """Copy file or folder `rel` from src_root to dest_root (same relative path)."""
    src, dest = src_root / rel, dest_root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, ignore=IGNORED, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dest)


MARKERS = tuple(m.strip("#= ") for m in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN, BEGIN_SCHEME,
                                          END_SCHEME))


def drop_instructor_only(path: Path) -> None:
    """Remove the instructor-only regions of every cell of the notebook at `path` (in place): what nbgrader
    generates and grades against is what students receive."""
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        grade_id = nbgrader_meta(cell).get("grade_id", index)
        cell.source = strip_instructor_only(cell.source, f"{path.name} cell {grade_id}")
    nbformat.write(nb, path)


def protect_marker_mentions(path: Path) -> None:
    """nbgrader treats any line containing 'BEGIN SOLUTION' as a marker, even prose that quotes it. In markdown,
    a line that mentions a marker but is not a marker line gets a no-break space instead (renders the same);
    in code, such a line is an error with the cell named."""
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        lines = cell.source.split("\n")
        for i, line in enumerate(lines):
            mentions = [m for m in MARKERS if m in line]
            if not mentions or any(is_marker_line(line, m) for m in mentions):
                continue
            if cell.cell_type != "markdown":
                grade_id = nbgrader_meta(cell).get("grade_id", "?")
                raise ValueError(f"{path.name}, cell {grade_id}: line {line.strip()!r} quotes a marker; nbgrader "
                                 "would take it for one: rephrase it")
            for m in mentions:
                line = line.replace(m, m.replace(" ", "\u00a0"))
            lines[i], changed = line, True
        cell.source = "\n".join(lines)
    if changed:
        nbformat.write(nb, path)


GRADE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def check_notebooks(course: Course) -> None:
    """Refuse, with every problem listed, notebooks whose nbgrader metadata nbgrader would choke on or that break the
    conventions: bad or duplicated grade_id, a solution region outside a solution cell, a hidden-test block (graders
    run only the trusted checks), an autograded cell without points."""
    problems = []
    for rel in course.notebooks:
        nb = nbformat.read(course.root / rel, as_version=4)
        seen = set()
        for index, cell in enumerate(nb.cells):
            meta = cell.metadata.get("nbgrader")
            where = f"{rel} cell {index}"
            has_solution, has_hidden = (has_marker_line(cell.source, m) for m in (BEGIN_SOLUTION, BEGIN_HIDDEN))
            if meta is None:
                if has_solution or has_hidden:
                    problems.append(f"{where}: has a solution/hidden-test region but no nbgrader metadata")
                continue
            grade_id = meta.get("grade_id", "")
            where += f" ({grade_id})"
            if not GRADE_ID.match(grade_id):
                problems.append(f"{where}: grade_id must use letters, digits, '_' or '-' only (snake_case)")
            if grade_id in seen:
                problems.append(f"{where}: grade_id used twice")
            seen.add(grade_id)
            if has_solution and not meta.get("solution"):
                problems.append(f"{where}: solution region in a cell that is not a solution cell")
            if has_hidden:
                problems.append(f"{where}: '{BEGIN_HIDDEN}' block: neither grader runs notebook code, so it "
                                f"would change no grade; write it as a trusted check in {course.cases_path.name} "
                                f"(nbgrader_cell={grade_id!r}) or make it a visible test")
            if meta.get("grade") and not meta.get("points"):
                problems.append(f"{where}: graded cell without points")
    if problems:
        raise ValueError("notebook metadata problems (fix them in the instructor notebooks):\n  "
                         + "\n  ".join(problems))


def make_course_dir(course: Course, course_dir: Path, support: list[str]) -> Path:
    """Fresh nbgrader course folder with source/<id>/ = the instructor notebooks + `support` files; returns its
    settings path. The instructor's copies of the student modules are never put in source/ (so autograde cannot
    copy them over the student's)."""
    check_notebooks(course)
    if course_dir.exists():
        shutil.rmtree(course_dir)
    source = course_dir / "source" / course.assignment_id
    source.mkdir(parents=True)
    for rel in [*course.notebooks, *support]:
        if not (course.root / rel).exists():
            raise FileNotFoundError(f"{course.root / rel} is listed in the course file but does not exist")
        if rel in course.student_modules:
            raise ValueError(f"{rel} is a student module: it must not be in nbgrader's source folder")
        copy_entry(course.root, rel, source)
    for rel in course.notebooks:
        drop_instructor_only(source / rel)
        protect_marker_mentions(source / rel)
    shutil.copy2(GRADING_DIR / "nbgrader_config.py", course_dir / "nbgrader_config.py")
    settings = {"course_dir": str(course_dir), "assignment_id": course.assignment_id,
                "student_files": [*course.student_modules, *([course.checkpoint] if course.checkpoint else [])],
                "code_stub": CODE_STUB, "text_stub": ANSWER_STUB}
    settings_path = course_dir / "grading_settings.json"
    settings_path.write_text(json.dumps(settings, indent=1))
    return settings_path


def run_nbgrader(course_dir: Path, settings_path: Path, args: list[str], timeout: float,
                 extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `nbgrader ARGS` in the course folder; kill its whole process group after `timeout` seconds.

    Returns the CompletedProcess (returncode -9 and a note in stderr on timeout); never raises for nbgrader errors.
    """
    cmd = [str(Path(sys.executable).parent / "nbgrader"), *args]
    proc = subprocess.Popen(cmd, cwd=course_dir, env=nbgrader_env(settings_path, extra_env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_die_with_parent)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, "")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        return subprocess.CompletedProcess(cmd, -9, out, f"timed out after {timeout:.0f} s")


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the one that started it dies (an autograde worker killed for its memory or
    time must not leave its nbgrader running)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, 9)      # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass
