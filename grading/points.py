"""Every copy of a point value, written from its one home.

Homes: a check's points are in the trusted checks (grading/cases_hw8.py, `Case.points`); a written answer's in its
answer cell's nbgrader metadata; which part is optional in homework/parts.py. Copies this writes:
- each notebook test cell's nbgrader points and the "[N points" label of its first line (the sum of the trusted
  checks that name the cell: nbgrader's gradebook maximum adds these and the answer cells up);
- each notebook's "points" cell: every autograded check of its parts, test cell or not;
- the parts-and-points table of both READMEs (between POINTS_BEGIN and POINTS_END).
Gradescope's max_score and the run summaries read the checks themselves.

    python -m grading.points          # rewrite every copy (`make points`)
    python -m grading.points --check  # exit 1, naming each copy that differs
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from homework.parts import NOTEBOOKS, PARTS, cell_grade_id, nbgrader_meta, optional_parts, part_of_cell

REPO = Path(__file__).resolve().parents[1]

GRADE_ID = "points"                      # each notebook's generated points cell
AFTER = "intro"                          # the cell it follows (else the first cell)
READMES = ("README.md", "grading/student/README.md")
POINTS_BEGIN = "<!-- points table: written by grading/points.py from the trusted checks and the notebooks -->"
POINTS_END = "<!-- end of points table -->"
LABEL = re.compile(r"^# \[(\d+(?:\.\d+)?) points?")


def _number(x: float) -> str:
    return f"{x:g}"


@dataclass
class Points:
    """The point values of the course, from their homes."""
    cases: list                            # the trusted checks (each with .part, .points, .nbgrader_cell)
    written: dict[str, float]              # part -> points of its answer cells

    @classmethod
    def load(cls, root: Path = REPO, cases=None) -> "Points":
        if cases is None:
            from grading.course import load_course
            from grading.harness import load_cases
            cases = load_cases(load_course(root / "grading" / "course.toml").cases_path)
        written = {p.name: 0.0 for p in PARTS}
        for notebook in NOTEBOOKS:
            for cell in nbformat.read(root / notebook, as_version=4).cells:
                meta = nbgrader_meta(cell)
                if meta.get("grade") and meta.get("solution") and cell.cell_type == "markdown":
                    written[part_of_cell(meta["grade_id"]).name] += meta["points"]
        return cls(list(cases), written)

    def code(self, part: str) -> float:
        return sum(c.points for c in self.cases if c.part == part)

    def test_cell(self, grade_id: str) -> float:
        return sum(c.points for c in self.cases if c.nbgrader_cell == grade_id)

    def totals(self, optional: bool) -> tuple[float, float]:
        chosen = [p.name for p in PARTS if p.optional == optional]
        return sum(self.code(p) for p in chosen), sum(self.written[p] for p in chosen)


def points_table(points: Points) -> str:
    """The Markdown table of parts and points that both READMEs show."""
    rows = ["| part | notebook | autograded | written | |", "|---|---|---:|---:|---|"]
    for p in PARTS:
        code, written = points.code(p.name), points.written[p.name]
        rows.append(f"| {p.name} | {p.notebook} | {_number(code) if code else ''} | "
                    f"{_number(written) if written else ''} | {'**optional**' if p.optional else ''} |")
    (req_code, req_written), (opt_code, opt_written) = points.totals(False), points.totals(True)
    rows.append(f"| **required** | | **{_number(req_code)}** | **{_number(req_written)}** | |")
    rows.append(f"| **optional (bonus)** | | {_number(opt_code)} | {_number(opt_written)} | "
                f"{', '.join(p.name for p in optional_parts())} |")
    return "\n".join(rows)


def points_markdown(notebook: str, points: Points) -> str:
    """The Markdown of `notebook`'s points cell."""
    rows = ["| part | autograded check | points |", "|---|---|---:|"]
    code = written = 0.0
    for part in (p for p in PARTS if p.notebook == notebook):
        label = part.name + (" (optional)" if part.optional else "")
        for case in (c for c in points.cases if c.part == part.name):
            name = case.name.removeprefix(part.name + " ")
            where = (f"test cell `{case.nbgrader_cell}`" if case.nbgrader_cell
                     else f"`{case.path}`" if hasattr(case, "path") else "`kernel_attention.py`, autograder only")
            rows.append(f"| {label} | {name} ({where}) | {_number(case.points)} |")
            code += case.points
        if points.written[part.name]:
            rows.append(f"| {label} | written answer, graded by hand | {_number(points.written[part.name])} |")
            written += points.written[part.name]
    return "\n".join([
        "### Points in this notebook",
        "",
        "Autograded points come from the autograder's checks, which call your functions and cells with their own "
        "inputs. A test cell's first line shows the points of the checks it stands for; checks marked "
        "*autograder only* have no test cell (check that code with the visible tests, `make test`).",
        "",
        *rows,
        "",
        f"This notebook: {_number(code)} autograded and {_number(written)} written points, optional parts included.",
        "",
        "<!-- written by grading/points.py from homework/parts.py, the trusted checks and the answer cells -->",
    ])


def _cell(nb: nbformat.NotebookNode, grade_id: str):
    return next((c for c in nb.cells if cell_grade_id(c) == grade_id), None)


def update_notebook(path: Path, points: Points, write: bool) -> list[str]:
    """What differs in `path` (its points cell, test cells' points and labels); with `write`, mend it."""
    nb = nbformat.read(path, as_version=4)
    stale = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        value = points.test_cell(meta["grade_id"])
        label = LABEL.match(cell.source)
        word = "point" if value == 1 else "points"
        if meta.get("points") != value or not label or float(label[1]) != value:
            stale.append(f"{path.name}: test cell {meta['grade_id']} should have {_number(value)} {word}")
            meta["points"] = value
            first, _, rest = cell.source.partition("\n")
            first = LABEL.sub(f"# [{_number(value)} {word}", first) if label else f"# [{_number(value)} {word}] {first}"
            cell.source = first + ("\n" + rest if rest else "")
    text = points_markdown(path.name, points)
    cell = _cell(nb, GRADE_ID)
    if cell is None or cell.source != text:
        stale.append(f"{path.name}: points cell")
        if cell is None:
            cell = nbformat.v4.new_markdown_cell(text, metadata={"nbgrader": {
                "grade": False, "grade_id": GRADE_ID, "locked": True, "schema_version": 3, "solution": False,
                "task": False}})
            after = _cell(nb, AFTER)
            nb.cells.insert(nb.cells.index(after) + 1 if after is not None else 1, cell)
        cell.source = text
    if stale and write:
        nbformat.write(nb, path)
    return stale


def update_readme(path: Path, points: Points, write: bool) -> list[str]:
    text = path.read_text()
    if POINTS_BEGIN not in text or POINTS_END not in text:
        raise ValueError(f"{path}: no points table markers ({POINTS_BEGIN} ... {POINTS_END})")
    head, rest = text.split(POINTS_BEGIN, 1)
    _, tail = rest.split(POINTS_END, 1)
    new = f"{head}{POINTS_BEGIN}\n{points_table(points)}\n{POINTS_END}{tail}"
    if new == text:
        return []
    if write:
        path.write_text(new)
    return [f"{path}: points table"]


def update_all(root: Path = REPO, write: bool = True, cases=None) -> list[str]:
    """Every copy under `root` that differs from its home (rewritten when `write`)."""
    points = Points.load(root, cases)
    stale = []
    for notebook in NOTEBOOKS:
        stale += update_notebook(root / notebook, points, write)
    for readme in READMES:
        stale += update_readme(root / readme, points, write)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report the copies that differ")
    parser.add_argument("--root", type=Path, default=REPO, help="the course's repository (default: this one)")
    args = parser.parse_args(argv)
    stale = update_all(args.root, write=not args.check)
    for line in stale:
        print(f"{line}: {'differs (run python -m grading.points)' if args.check else 'rewritten'}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
