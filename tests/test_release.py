"""The student release of the real course gives no written answer away.

Instructor-only regions (docstring paragraphs, comments, markdown sentences, whole files) stay in the instructor
source and out of the release; every written question has answer fingerprints (grading/answer_fingerprints.toml)
that occur in the instructor's worked answer and nowhere in the release.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]

from grading.course import load_course  # noqa: E402
from grading.leakcheck import fingerprint_key, load_fingerprints, scan_fingerprints  # noqa: E402
from grading.strip import strip_instructor_only  # noqa: E402
from homework.pdf import answer_cells, question_heading  # noqa: E402

COURSE = load_course(REPO / "grading" / "course.toml")


def _release_files(release_dir: Path, zip_path: Path) -> list[tuple[str, bytes]]:
    files = [(p.relative_to(release_dir).as_posix(), p.read_bytes()) for p in release_dir.rglob("*") if p.is_file()]
    return [*files, (zip_path.name, zip_path.read_bytes())]


def _instructor_text() -> str:
    """Everything the instructor source says: notebook cells, released and hidden files (not the fingerprints)."""
    parts = []
    for rel in COURSE.notebooks:
        parts += [cell.source for cell in nbformat.read(COURSE.root / rel, as_version=4).cells]
    fingerprint_file = COURSE.root / COURSE.answer_fingerprints
    for rel in [*COURSE.release_files, *COURSE.student_modules, *COURSE.instructor_only, *COURSE.hidden_paths]:
        path = COURSE.root / rel
        for file in ([path] if path.is_file() else sorted(path.rglob("*.py")) + sorted(path.rglob("*.md"))):
            if file != fingerprint_file:
                parts.append(file.read_text(errors="replace"))
    return fingerprint_key("\n".join(parts))


def test_every_written_question_has_fingerprints_from_its_worked_answer():
    fingerprints = load_fingerprints(COURSE)
    questions = set()
    for rel in COURSE.notebooks:
        nb = nbformat.read(COURSE.root / rel, as_version=4)
        for _, cell in answer_cells(nb):
            questions.add(question_heading(cell.metadata["nbgrader"]["grade_id"]).removeprefix("Question ")
                          .replace(" ", ""))
    from grading.points import Points
    written = Points.load(COURSE.root).written
    graded_by_hand = {p for p, points in written.items() if points}
    part_of = {q: max((p for p in graded_by_hand if q.startswith(p)), key=len, default=None) for q in questions}
    assert set(part_of.values()) == graded_by_hand, part_of           # every part graded by hand has its questions
    assert questions == set(fingerprints), questions ^ set(fingerprints)
    source = _instructor_text()
    missing = [(q, p) for q, phrases in fingerprints.items() for p in phrases if fingerprint_key(p) not in source]
    assert not missing, f"fingerprints that occur nowhere in the instructor source (stale): {missing}"


def test_release_holds_no_answer_fingerprint(real_release):
    release_dir, zip_path = real_release
    assert scan_fingerprints(_release_files(release_dir, zip_path), load_fingerprints(COURSE)) == []


def test_fingerprint_scan_finds_a_planted_answer(real_release, tmp_path):
    """The scan is not vacuous: an answer phrase planted in a docstring, in a notebook and in the zip is found."""
    release_dir, _ = real_release
    fingerprints = load_fingerprints(COURSE)
    phrase = fingerprints["1(c)"][0]
    module = (release_dir / "kernel_attention.py").read_text().replace('"""', f'"""{phrase.upper()}\n', 1)
    nb = json.loads((release_dir / "Summarization.ipynb").read_text())
    nb["cells"][0]["source"] = ["Note: " + fingerprints["3(b)"][0].replace(" ", "  ")]
    found = scan_fingerprints([("kernel_attention.py", module.encode()),
                               ("Summarization.ipynb", json.dumps(nb).encode())], fingerprints)
    assert {(leak.where, leak.origin) for leak in found} >= {("kernel_attention.py", "answer 1(c)"),
                                                             ("Summarization.ipynb", "answer 3(b)")}


def test_instructor_only_text_stays_in_the_source_and_out_of_the_release(real_release):
    release_dir, _ = real_release
    for rel in COURSE.instructor_only:
        assert (COURSE.root / rel).is_file() and not (release_dir / rel).exists()
    source = (COURSE.root / "kernel_attention.py").read_text()
    released = (release_dir / "kernel_attention.py").read_text()
    assert "INSTRUCTOR ONLY" in source and "INSTRUCTOR ONLY" not in released
    assert "2x2 blocks" in source and "2x2 blocks" not in released
    assert "BEGIN SOLUTION" not in released and "### " not in released      # no marker the student's copy lacks
    helper = (release_dir / "helper.py").read_text()
    assert "Measured results" not in helper and "def approximation_error_experiment" in helper


def test_released_1a_leaves_the_sums_to_the_student(real_release):
    """1(a) asks along which axis the weights sum to 1: no released cell prints or computes a sum of the weights
    (the instructor's solution region does, so the worked answer can point at printed numbers)."""
    release_dir, _ = real_release
    cells = {c.metadata["nbgrader"]["grade_id"]: c.source for c in
             nbformat.read(release_dir / "Summarization.ipynb", as_version=4).cells}
    instructor = {c.metadata["nbgrader"]["grade_id"]: c.source for c in
                  nbformat.read(REPO / "Summarization.ipynb", as_version=4).cells}
    assert "A.sum(1)" in instructor["q1a_code"]
    for grade_id in ("q1a_code", "q1a_plot"):
        assert ".sum(" not in cells[grade_id] and "sum over the" not in cells[grade_id], cells[grade_id]
    assert "A = attention_weights(Q, K)" in cells["q1a_code"] and "raise NotImplementedError" in cells["q1a_code"]


def test_the_student_tools_know_the_course_as_course_toml_states_it():
    """homework/ ships without grading/course.toml, so it names the notebooks, modules and checkpoint itself: they
    must be the course file's."""
    from homework import parts, submission

    assert list(parts.NOTEBOOKS) == COURSE.notebooks
    assert submission.MODULES == COURSE.student_modules
    assert str(submission.CHECKPOINT) == COURSE.checkpoint


def test_strip_instructor_only_regions_in_code_docstrings_and_markdown():
    text = "\n".join([
        "def f():",
        '    """Doc.',
        "    === BEGIN INSTRUCTOR ONLY ===",
        "    the derivation",
        "    === END INSTRUCTOR ONLY ===",
        '    """',
        "    # === BEGIN INSTRUCTOR ONLY ===",
        "    # a narrating comment",
        "    # === END INSTRUCTOR ONLY ===",
        "    return 1",
        "<!-- BEGIN INSTRUCTOR ONLY -->",
        "a markdown conclusion",
        "<!-- END INSTRUCTOR ONLY -->",
        "prose that mentions BEGIN INSTRUCTOR ONLY stays",
    ])
    out = strip_instructor_only(text, "f.py")
    assert out.split("\n") == ["def f():", '    """Doc.', '    """', "    return 1",
                               "prose that mentions BEGIN INSTRUCTOR ONLY stays"]


@pytest.mark.parametrize("text, problem", [
    ("# === BEGIN INSTRUCTOR ONLY ===\nx = 1\n", "never closed"),
    ("x = 1\n# === END INSTRUCTOR ONLY ===\n", "without a matching begin"),
    ("# === BEGIN INSTRUCTOR ONLY ===\n# === BEGIN INSTRUCTOR ONLY ===\n", "opened again"),
])
def test_bad_instructor_only_regions_name_the_file_and_line(text, problem):
    with pytest.raises(ValueError, match=f"m.py:[12]: .*{problem}"):
        strip_instructor_only(text, "m.py")
