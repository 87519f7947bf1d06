"""Summarization.ipynb: committed clean with valid nbgrader cells, and executes headless in fast mode (HW8_FAST=1).

The executed copy is written to build/notebooks/Summarization.fast.ipynb; the fast checkpoint goes to build/.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from support import nbgrader

import run_flags
from bench.time_to_quality import load_results
from grading.notebooks import execute
from summarizer.settings import FAST, results_path
from summarizer.train import autocast_dtype

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "Summarization.ipynb"
EXECUTED = ROOT / "build" / "notebooks" / "Summarization.fast.ipynb"
EXPECTED_FIGURES = 18  # 1(a) 1, 1(b) 3, 1(c) 3, training 1, ROUGE 1, 1(e) 5, 1(g) 4
ANSWERS = {f"answer_1{q}" for q in "abcdefg"}


def test_nbgrader_metadata(notebook):
    """Solution cells have regions; test cells are locked with points and hidden tests; one answer per question."""
    ids = [nbgrader(c)["grade_id"] for c in notebook.cells if nbgrader(c)]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z0-9_]+", i) for i in ids), ids
    for cell in notebook.cells:
        meta = nbgrader(cell)
        assert meta.get("schema_version") == 3 and meta.get("task") is False, cell.source[:60]
        begins, ends = cell.source.count("### BEGIN SOLUTION"), cell.source.count("### END SOLUTION")
        assert begins == ends and (begins > 0) == meta["solution"], meta["grade_id"]
        if meta["grade"] and not meta["solution"]:  # autograded test cell
            assert cell.cell_type == "code" and meta["locked"] and meta["points"] > 0
            assert f"[{meta['points']} point" in cell.source.splitlines()[0]
            assert cell.source.index("### BEGIN HIDDEN TESTS") < cell.source.index("### END HIDDEN TESTS")
        elif meta["grade"]:  # written answer
            assert cell.cell_type == "markdown" and not meta["locked"] and meta["points"] > 0
            body = cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            assert len(body.strip()) > 300
    answers = {nbgrader(c)["grade_id"] for c in notebook.cells if nbgrader(c).get("grade") and nbgrader(c)["solution"]}
    assert answers == ANSWERS
    solution_code = [c for c in notebook.cells if nbgrader(c).get("solution") and c.cell_type == "code"]
    tests = [c for c in notebook.cells if nbgrader(c).get("grade") and not nbgrader(c)["solution"]]
    assert len(solution_code) >= 3 and len(tests) >= 4


def test_notebook_executes_headless_in_fast_mode():
    notebook = execute(NOTEBOOK, EXECUTED, fast=True, timeout=600)  # raises CellExecutionError on any cell error
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures >= EXPECTED_FIGURES, f"{figures} figures, expected {EXPECTED_FIGURES}"
    text = "".join(o.get("text", "") for o in outputs)
    assert "mode: FAST" in text and "validation loss" in text
    assert (ROOT / "build" / "checkpoints" / "summarizer_fast.pt").is_file()
    precision = "bf16" if autocast_dtype(torch.device("cpu"), run_flags.precision()) else "fp32"
    results = load_results(ROOT / results_path(FAST, precision))  # what `make bench` reads
    assert results["fast"] is True and {run["attention"] for run in results["runs"]} == {"softmax", "performer"}
    assert results["precision"] == precision and results["notebook_minutes"] > 0
