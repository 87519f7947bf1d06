"""Two students live in copies of the real release: `make run` (fast mode), `make pdf`, `make submission`.

* the model student: the release with every solution of the instructor source filled in;
* the partial student: every required part solved, every optional part (1(c), 1(g), 3(b)) left as the stub.

Both runs must reach the end of every notebook, the partial student's required outputs and checkpoint must exist,
the PDFs must be written and both submission zips accepted (fast mode is allowed here with --allow-fast, the
course staff's switch; a student's fast run is refused, which is checked too).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbformat.sign import NotebookNotary

REPO = Path(__file__).resolve().parents[1]

from grading.course import load_course  # noqa: E402
from grading.strip import _enclosing_name, strip_instructor_only  # noqa: E402
from homework.markers import BEGIN_SOLUTION, END_SOLUTION, is_marker_line  # noqa: E402
from homework.parts import PARTS, part_of_cell, part_of_function  # noqa: E402
from homework.view_images import view_outputs  # noqa: E402

COURSE = load_course(REPO / "grading" / "course.toml")
VENV = REPO / ".venv"
OPTIONAL = {p.name for p in PARTS if p.optional}


def solved_module(source: str, keep_optional: bool) -> str:
    """The instructor module with the regions of optional functions stubbed when keep_optional is False."""
    lines, out, inside, stub = source.split("\n"), [], False, False
    for i, line in enumerate(lines):
        if is_marker_line(line, BEGIN_SOLUTION):
            name = _enclosing_name(lines, i)
            part = part_of_function(name)
            inside, stub = True, (not keep_optional and part is not None and part.optional)
            if stub:
                indent = re.match(r"\s*", lines[i + 1]).group(0)
                out.append(f"{indent}raise NotImplementedError({name!r} + ' in kernel_attention.py: write your code')")
            continue
        if is_marker_line(line, END_SOLUTION):
            inside = False
            continue
        if not (inside and stub):
            out.append(line)
    return "\n".join(out)


def make_student(release: Path, home: Path, keep_optional: bool) -> Path:
    """A copy of the release whose solution cells and module hold the instructor's solutions (optional ones too, if
    keep_optional)."""
    shutil.copytree(release, home)
    module = solved_module((COURSE.root / "kernel_attention.py").read_text(), keep_optional)
    (home / "kernel_attention.py").write_text(module)
    for rel in COURSE.notebooks:
        instructor = {c.metadata.get("nbgrader", {}).get("grade_id"): c
                      for c in nbformat.read(COURSE.root / rel, as_version=4).cells}
        nb = nbformat.read(home / rel, as_version=4)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            part = part_of_cell(meta.get("grade_id"))
            if meta.get("solution") and (keep_optional or part is None or not part.optional):
                source = strip_instructor_only(instructor[meta["grade_id"]].source, rel).split("\n")
                cell.source = "\n".join(line for line in source                  # a student's cell has no markers
                                         if not any(is_marker_line(line, m) for m in (BEGIN_SOLUTION, END_SOLUTION)))
        nbformat.write(nb, home / rel)
    (home / ".venv").symlink_to(VENV)
    return home


def pdf_images(path: Path) -> int:
    listing = subprocess.run(["pdfimages", "-list", str(path)], check=True, capture_output=True, text=True).stdout
    return sum(1 for line in listing.splitlines()[2:] if line.split()[2] == "image")


def make(home: Path, target: str, timeout: int, *args: str) -> subprocess.CompletedProcess:
    # one torch thread each: the two students run side by side on the CI's two cores
    env = {**os.environ, "HW8_FAST": "1", "HF_HUB_OFFLINE": "1", "HW8_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(["make", "-C", str(home), target, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def live_a_student(home: Path, kind: str) -> dict:
    """`make run`, `make pdf` and `make submission` (then the staff's --allow-fast) in one student's home."""
    run = make(home, "run", 1500)
    pdf = make(home, "pdf", 900)
    refused = make(home, "submission", 300)
    accepted = subprocess.run([str(VENV / "bin" / "python"), "-m", "homework.submission", "--allow-fast"], cwd=home,
                              capture_output=True, text=True, timeout=300)
    return {"kind": kind, "home": home, "run": run, "pdf": pdf, "refused": refused, "accepted": accepted}


@pytest.fixture(scope="module")
def students(real_release, tmp_path_factory):
    """Both students, at the same time (each command is a subprocess; one thread each)."""
    homes = {kind: make_student(real_release[0], tmp_path_factory.mktemp(kind) / "hw8", keep_optional=kind == "model")
             for kind in ("model", "partial")}
    with ThreadPoolExecutor(max_workers=len(homes)) as pool:
        futures = {kind: pool.submit(live_a_student, home, kind) for kind, home in homes.items()}
        return {kind: future.result() for kind, future in futures.items()}


@pytest.fixture(scope="module", params=["model", "partial"])
def student(request, students):
    """One student's home after `make run`, `make pdf` and `make submission` (with the staff's --allow-fast)."""
    return students[request.param]


def test_make_run_reaches_the_end_of_every_notebook(student):
    run, home = student["run"], student["home"]
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    for rel in COURSE.notebooks:
        nb = nbformat.read(home / rel, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
        assert all(c.get("execution_count") for c in code), f"{rel}: a code cell was not run"
        assert NotebookNotary().check_signature(nb), f"{rel}: not signed, so Jupyter would not trust its outputs"
        failed = {c.metadata.get("nbgrader", {}).get("grade_id") for c in code
                  if any(o.get("output_type") == "error" for o in c.get("outputs", []))}
        if student["kind"] == "model":
            assert not failed, f"{rel}: failed cells {failed}"
        else:
            parts = {part_of_cell(g).name if part_of_cell(g) else g for g in failed}
            assert parts <= OPTIONAL, f"{rel}: required cells failed: {failed}"
    assert (home / "build" / "checkpoints" / "summarizer_fast.pt").is_file()       # the fast run's checkpoint


def test_the_summary_names_the_skipped_optional_parts(student):
    out = student["run"].stdout
    if student["kind"] == "partial":
        for name in ("1(c)", "3(b)"):
            assert re.search(re.escape(name) + r".*NotImplementedError.*optional", out), out[-3000:]
    else:
        assert "NotImplementedError" not in out


def test_make_pdf_writes_one_pdf_per_notebook(student):
    pdf, home = student["pdf"], student["home"]
    assert pdf.returncode == 0, pdf.stdout[-3000:] + pdf.stderr[-3000:]
    for rel in COURSE.notebooks:
        path = home / "build" / "pdf" / f"{Path(rel).stem}.pdf"
        assert path.is_file() and path.stat().st_size > 20_000, path
        text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True).stdout
        assert "Instructor answer." not in text and "BEGIN SOLUTION" not in text      # the student's label: "Answer."
        nb = nbformat.read(home / rel, as_version=4)
        figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
        views = len(view_outputs(nb))
        assert pdf_images(path) == figures + views, f"{path.name}: {figures} figures + {views} bertviz views"


def test_submission_refuses_a_fast_run_and_accepts_it_for_staff(student):
    refused, accepted, home = student["refused"], student["accepted"], student["home"]
    assert refused.returncode != 0 and "fast" in (refused.stdout + refused.stderr).lower()
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    zips = list((home / "build" / "submission").glob("*.zip"))
    assert len(zips) == 1
    names = set(zipfile.ZipFile(zips[0]).namelist())
    assert {*COURSE.notebooks, "kernel_attention.py", "checkpoints/summarizer.pt"} <= names
    if student["kind"] == "partial":
        listed = accepted.stdout + accepted.stderr
        assert "1(c)" in listed and "3(b)" in listed, listed


def test_solved_module_stubs_exactly_the_optional_functions():
    source = (COURSE.root / "kernel_attention.py").read_text()
    partial = solved_module(source, keep_optional=False)
    stubbed = set(re.findall(r"raise NotImplementedError\('([\w.]+)'", partial))
    assert stubbed == {"positional_shift_matrix", "causal_linear_attention_reference", "causal_linear_attention"}
    markers = (BEGIN_SOLUTION, END_SOLUTION)
    without_markers = [line for line in source.split("\n") if not any(is_marker_line(line, m) for m in markers)]
    assert solved_module(source, keep_optional=True) == "\n".join(without_markers)
    compile(partial, "kernel_attention.py", "exec")
