"""Summarization.ipynb: committed clean with valid nbgrader cells, and executes headless in fast mode (HW8_FAST=1).

The executed copy is written to build/notebooks/Summarization.fast.ipynb; the fast checkpoint goes to build/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import nbgrader

from bench.time_to_quality import load_results
from grading.strip import outside_regions, strip_instructor_only
from homework.markers import BEGIN_SOLUTION, END_SOLUTION
from summarizer.batching import collate
from summarizer.model import MAX_SOURCE_LEN
from summarizer.pipeline import mask_example, prepare_corpus
from summarizer.settings import FAST, FULL
from summarizer.tokenizer import PAD_ID

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
            assert "HIDDEN TESTS" not in cell.source       # graders run trusted checks only (grading/cases_hw8.py)
        elif meta["grade"]:  # written answer
            assert cell.cell_type == "markdown" and not meta["locked"] and meta["points"] > 0
            body = cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            assert len(body.strip()) > 300
    answers = {nbgrader(c)["grade_id"] for c in notebook.cells if nbgrader(c).get("grade") and nbgrader(c)["solution"]}
    assert answers == ANSWERS
    solution_code = [c for c in notebook.cells if nbgrader(c).get("solution") and c.cell_type == "code"]
    tests = [c for c in notebook.cells if nbgrader(c).get("grade") and not nbgrader(c)["solution"]]
    assert len(solution_code) >= 3 and len(tests) >= 4


def _cell(notebook, grade_id: str):
    return next(c for c in notebook.cells if nbgrader(c).get("grade_id") == grade_id)


@pytest.mark.parametrize("run", [FAST, FULL], ids=["fast", "full"])
def test_mask_example_is_padded_in_its_article_and_its_summary_in_both_modes(run, notebook):
    """1(e)'s batch with each mode's data and tokenizer, prepared as the notebook prepares them (no training): no
    article is cut, the four lengths differ, and the pictured pair (the shortest article) is padded in its article
    and in its summary, so the source padding, decoder and cross-attention masks all have False columns. The worked
    answer quotes these lengths."""
    assert "mask_batch = mask_example(corpus)" in _cell(notebook, "q1e").source
    src, tgt_in, _ = collate(mask_example(prepare_corpus(run, seed=0)))
    src_len, tgt_len = (src != PAD_ID).sum(1).tolist(), (tgt_in != PAD_ID).sum(1).tolist()
    n_src, n_tgt = src.shape[1], tgt_in.shape[1]
    assert n_src < MAX_SOURCE_LEN and len(set(src_len)) == 4
    pictured = src_len.index(min(src_len))
    assert pictured == 0 and src_len[0] < n_src and tgt_len[0] < n_tgt
    answer = _cell(notebook, "answer_1e").source
    assert f"{src_len} of {n_src}" in answer and f"{tgt_len[0]} of {n_tgt}" in answer
    assert f"{src_len[0]} real tokens of {n_src}" in answer or f"{src_len[0]} of {n_src}" in answer


def test_student_stubs_name_what_the_rest_of_the_notebook_reads(notebook):
    """The release turns a solution region into `raise NotImplementedError()`: what the cell's own code and the test
    cells read (1(f) `samples` and `sample_summaries`, 1(d) `cross` and `mixed`) is named outside the region."""
    expected = {"q1f_code": ("def sample_summaries(", "samples = sample_summaries("),
                "q1d": ("cross, mixed = None, None", "if cross is None", "if mixed is None")}
    for grade_id, names in expected.items():
        kept = outside_regions(_cell(notebook, grade_id).source, [(BEGIN_SOLUTION, END_SOLUTION)])
        assert all(name in kept for name in names), (grade_id, kept)


def test_released_decoding_draws_one_summary_per_article():
    """1(f) asks how to get several summaries per article: the released summarizer/decode.py samples one per article
    and still imports; the several-per-article path (generate_samples) is instructor-only."""
    released = strip_instructor_only((ROOT / "summarizer" / "decode.py").read_text(), "summarizer/decode.py")
    assert not [word for word in ("num_samples", "num_return", "generate_samples") if word in released]
    compile(released, "decode.py", "exec")


def test_notebook_executes_headless_in_fast_mode(fast_notebooks, fast_run_files):
    notebook = fast_notebooks[NOTEBOOK.name].result()
    precision, written = fast_run_files
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures >= EXPECTED_FIGURES, f"{figures} figures, expected {EXPECTED_FIGURES}"
    text = "".join(o.get("text", "") for o in outputs)
    assert "mode: FAST" in text and "validation loss" in text
    assert written[0].is_file()
    results = load_results(written[1])                            # what `make bench` reads
    assert results["fast"] is True and {run["attention"] for run in results["runs"]} == {"softmax", "performer"}
    assert results["precision"] == precision and results["notebook_minutes"] > 0
