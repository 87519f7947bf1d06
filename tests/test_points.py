"""Each point value has one home, and grading/points.py writes every copy of it.

A check's points live in grading/cases_hw8.py, a written answer's in its answer cell; the test cells' nbgrader points
and labels, each notebook's points cell and both READMEs' tables are written from them. Editing one check (or adding
one) in a copy of the course and running the generator changes every copy together, and the graders' maxima (each
result's max_score is its check's points) follow.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]

from grading.course import load_course  # noqa: E402
from grading.harness import load_cases, run_course  # noqa: E402
from grading.points import POINTS_BEGIN, Points, points_table, update_all  # noqa: E402
from homework.parts import PARTS, part_of_cell  # noqa: E402

COURSE = load_course(REPO / "grading" / "course.toml")


def _cells(path: Path) -> dict:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nbformat.read(path, as_version=4).cells
            if c.metadata.get("nbgrader", {}).get("grade_id")}


def test_every_copy_equals_its_home():
    assert update_all(REPO, write=False) == [], "run: python -m grading.points"
    points = Points.load(REPO)
    for rel in COURSE.notebooks:
        for grade_id, cell in _cells(REPO / rel).items():
            meta = cell.metadata["nbgrader"]
            if meta.get("grade"):
                part = part_of_cell(grade_id)
                assert part is not None and part.notebook == rel, f"{rel}: graded cell {grade_id} is in no part"
                assert meta["points"] > 0, grade_id
    listed = 0.0
    for rel in COURSE.notebooks:
        text = _cells(REPO / rel)["points"].source
        listed += sum(float(line.rsplit("|", 2)[1]) for line in text.splitlines()
                      if line.startswith("| ") and "graded by hand" not in line and not line.startswith("| part"))
    assert listed == sum(c.points for c in points.cases)          # every autograded point is listed somewhere
    assert {c.part for c in points.cases} <= {p.name for p in PARTS}
    for readme in ("README.md", "grading/student/README.md"):
        assert points_table(points) in (REPO / readme).read_text()


CHANGED = ('Case("linear_attention (eq. 2) with a key padding mask", 1,',
           'Case("linear_attention (eq. 2) with a key padding mask", 2,')
CHANGED_CELL = ('Case("3(a)iii linear_attention with positive features, 3-D inputs", 1,',
                'Case("3(a)iii linear_attention with positive features, 3-D inputs", 2,')
ADDED = '''    Case("3(a)iii linear_attention on a single head", 1, f"{KA}:linear_attention",
         lambda g: {"args": [randn(g, 5, 6).exp(), randn(g, 7, 6).exp(), randn(g, 7, 3)]},
         nbgrader_cell="test_linear_attention", atol=1e-4),
]
'''


def _course_copy(tmp: Path) -> Path:
    root = tmp / "course"
    for rel in [*COURSE.notebooks, "README.md", "grading/student/README.md", "grading/course.toml",
                "grading/cases_hw8.py"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    return root


def test_one_edited_and_one_added_check_change_every_copy_together(tmp_path):
    root = _course_copy(tmp_path)
    before = Points.load(root)
    cases_file = root / "grading" / "cases_hw8.py"
    text = cases_file.read_text()
    for old, new in (CHANGED, CHANGED_CELL):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    head, sep, tail = text.rpartition("\n]\n")
    cases_file.write_text(head + "\n" + ADDED + tail)

    check = [sys.executable, "-m", "grading.points", "--root", str(root), "--check"]
    stale = subprocess.run(check, capture_output=True, text=True, cwd=REPO)
    assert stale.returncode == 1
    for copy in ("Kernel_Attention.ipynb: test cell test_linear_attention should have 4 points",
                 "Kernel_Attention.ipynb: points cell", "README.md: points table"):
        assert copy in stale.stdout, stale.stdout
    assert "Summarization.ipynb" not in stale.stdout
    subprocess.run(check[:-1], check=True, capture_output=True)                       # rewrite the copies
    assert subprocess.run(check, capture_output=True, text=True).returncode == 0

    after = Points.load(root)
    assert after.code("3(a)iii") == before.code("3(a)iii") + 3
    assert after.totals(False)[0] == before.totals(False)[0] + 3
    for readme in ("README.md", "grading/student/README.md"):
        table = (root / readme).read_text().split(POINTS_BEGIN)[1]
        assert f"| 3(a)iii | Kernel_Attention.ipynb | {after.code('3(a)iii'):g} |" in table
        assert f"| **required** | | **{after.totals(False)[0]:g}** |" in table
    cells = _cells(root / "Kernel_Attention.ipynb")
    assert cells["test_linear_attention"].metadata["nbgrader"]["points"] == 4
    assert re.match(r"# \[4 points\]", cells["test_linear_attention"].source)
    assert "linear_attention on a single head (test cell `test_linear_attention`) | 1 |" in cells["points"].source
    assert "with a key padding mask (`kernel_attention.py`, autograder only) | 2 |" in cells["points"].source

    # The graders' maxima (Gradescope's max_score, grades.csv's max) are the checks' points: an empty submission
    # scores 0 of the new total.
    cases = load_cases(cases_file)
    empty = tmp_path / "empty"
    empty.mkdir()
    results = run_course(COURSE, empty, hide=[], cases=cases)
    assert sum(r.max_score for r in results) == sum(c.points for c in before.cases) + 3
    assert sum(r.score for r in results) == 0
