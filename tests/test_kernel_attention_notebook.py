"""Kernel_Attention.ipynb: nbgrader structure is valid, and the notebook executes headless (HW8_FAST=1) without errors.

The executed copy is written to build/notebooks/Kernel_Attention.fast.ipynb with metadata hw8.fast = True: the fast
copy that homework/pdf.py reuses for a fast PDF (and refuses for a full one); `make run` writes Kernel_Attention.ipynb.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from support import nbgrader

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "Kernel_Attention.ipynb"
EXECUTED = ROOT / "build" / "notebooks" / "Kernel_Attention.fast.ipynb"


def test_nbgrader_metadata(notebook):
    """Test cells: locked, graded, points, a hidden section; answer cells: markdown, solution markers; ids unique."""
    graded = [c for c in notebook.cells if nbgrader(c)]
    ids = [nbgrader(c)["grade_id"] for c in graded]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z0-9_]+", i) for i in ids), ids
    tests = [c for c in graded if nbgrader(c)["grade"] and not nbgrader(c)["solution"]]
    answers = [c for c in graded if nbgrader(c)["grade"] and nbgrader(c)["solution"]]
    assert len(tests) == 5 and len(answers) == 4
    for cell in tests:
        meta = nbgrader(cell)
        assert cell.cell_type == "code" and meta["locked"] and meta["points"] > 0
        assert "HIDDEN TESTS" not in cell.source           # graders run trusted checks only (grading/cases_hw8.py)
        assert f"[{meta['points']} point" in cell.source.splitlines()[0]
    for cell in answers:
        meta = nbgrader(cell)
        assert cell.cell_type == "markdown" and not meta["locked"] and meta["points"] > 0
        body = cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
        assert len(body.strip()) > 200 and "PLACEHOLDER" not in body
    for cell in graded:
        assert nbgrader(cell)["schema_version"] == 3 and nbgrader(cell)["task"] is False
    assert {nbgrader(c)["grade_id"] for c in answers} == {"answer_3a_i", "answer_3a_ii", "answer_3a_iii", "answer_3b"}
    question_4 = [c for c in notebook.cells if c.source.startswith(("**4(a)", "**4(b)", "**4(c)"))]
    assert len(question_4) == 3 and all(not nbgrader(c) and "YOUR ANSWER HERE" in c.source for c in question_4)


def test_nbgrader_release_strips_answers_and_hidden_tests(notebook):
    """nbgrader's own ClearSolutions / ClearHiddenTests (what the release runs) accept the notebook and remove every
    instructor answer and hidden test."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    released, resources = ClearSolutions().preprocess(nbformat.from_dict(notebook), {})
    released, _ = ClearHiddenTests().preprocess(released, resources)
    text = nbformat.writes(released)
    for secret in ("BEGIN SOLUTION", "HIDDEN TESTS", "Expand the squared distance", "sigma^{-2} I_D", "S_{i-1}",
                   "Measured with the default run", "big = 12"):
        assert secret not in text, secret
    answers = [c for c in released.cells if nbgrader(c).get("solution")]
    assert len(answers) == 4 and all(c.source.strip().endswith("YOUR ANSWER HERE") for c in answers)
    tests = [c for c in released.cells if nbgrader(c).get("grade") and not nbgrader(c).get("solution")]
    assert all("assert" in c.source for c in tests)                     # the visible checks stay


def test_answers_carry_the_key_results(notebook):
    answers = {nbgrader(c).get("grade_id"): c.source for c in notebook.cells}
    assert "N(0, \\sigma^{-2} I_D)" in answers["answer_3a_ii"].replace("\\mathcal ", "")
    assert "O(N D_{random} D)" in answers["answer_3a_ii"] and "O(N D_{random} M)" in answers["answer_3a_ii"]
    assert "S_{i-1}" in answers["answer_3b"] and "O(N D_r M)" in answers["answer_3b"]
    assert re.search(r"-0\.\d\d", answers["answer_3a_iii"])                 # measured slopes are quoted


def test_notebook_executes_headless(fast_notebooks):
    notebook = fast_notebooks[NOTEBOOK.name].result()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, f"expected the error curves, the heat map and the real-q/k plot, got {len(images)} images"
    passed = [o.get("text", "") for o in outputs if o.output_type == "stream"]
    assert sum("matches" in t or " = " in t for t in passed) >= 4
