"""`make pdf` (homework/pdf.py): the solution PDFs are produced, typeset math and figures, and contain every written
answer under its question heading (text extracted with pdftotext).

The PDFs are built once per session from notebooks executed in fast mode (HW8_FAST=1), reusing the copies that the
notebook tests write to build/notebooks/<stem>.fast.ipynb (or a full run in build/notebooks/) when they are newer than
the sources; else they are executed (minutes: run this file after the notebook tests).
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("hw8_pdf", REPO / "homework" / "pdf.py")
pdf = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(pdf)
from grading.executed import executed_candidates, reusable  # noqa: E402
from homework.view_images import view_outputs  # noqa: E402

# Every question with a worked answer; question 4 has answer cells but no instructor answer.
REQUIRED = ["1(a)", "1(b)", "1(c)", "1(d)", "1(e)", "1(f)", "1(g)", "2(a)", "2(b)", "2(c)", "2(d)",
            "3(a) i", "3(a) ii", "3(a) iii", "3(b)"]
MATH_ITALIC = re.compile("[\U0001d400-\U0001d7ff]")        # what unicode-math typesets $x$ as
RAW_LATEX = re.compile(r"\\(frac|sqrt|sum|exp|mathbb|mathrm|begin|end|left|right|top|sigma)\b|\$")


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True).stdout


def image_count(path: Path) -> int:
    listing = subprocess.run(["pdfimages", "-list", str(path)], check=True, capture_output=True, text=True).stdout
    return sum(1 for line in listing.splitlines()[2:] if line.split()[2] == "image")


def headings(nb) -> list[str]:
    return [pdf.question_heading(cell.metadata["nbgrader"]["grade_id"]) for _, cell in pdf.answer_cells(nb)]


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Run homework/pdf.py --fast as `make pdf` would; return (output folder, its console output)."""
    missing = [tool for tool in ("xelatex", "pandoc", "pdftotext", "pdfimages") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the solution PDFs need LaTeX, pandoc and poppler. Install with "
                    f"`sudo apt-get install --no-install-recommends {pdf.APT_PACKAGES}` (or `make system`).")
    out = tmp_path_factory.mktemp("pdf")
    env = dict(os.environ, HW8_FAST="1", HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-m", "homework.pdf", "--fast", "--out", str(out)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"homework/pdf.py failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    return out, run.stdout


@pytest.fixture(scope="module")
def executed(built):
    """The executed fast-mode notebooks the PDFs were made from ({name: notebook})."""
    result = {}
    for name in pdf.NOTEBOOKS:
        candidates = executed_candidates(REPO / name, REPO / "build" / "notebooks", fast=True)
        fresh = [c for c in candidates if reusable(c, REPO / name, fast=True)]
        # a source edited during the session makes every copy stale: then the one written last is the one used
        used = fresh[0] if fresh else max((c for c in candidates if c.is_file()), key=lambda c: c.stat().st_mtime)
        result[name] = nbformat.read(used, as_version=4)
    return result


def test_every_pdf_is_written(built):
    out, _ = built
    for stem in [Path(n).stem for n in pdf.NOTEBOOKS] + [pdf.WRITTEN_ANSWERS]:
        path = out / f"{stem}.pdf"
        assert path.is_file(), f"{path} missing"
        assert path.read_bytes()[:5] == b"%PDF-", f"{path} is not a PDF"
        assert len(pdf_text(path).strip()) > 200, f"{path} has almost no text"


def test_written_answers_pdf_has_every_question_heading(built):
    out, _ = built
    text = flat(pdf_text(out / f"{pdf.WRITTEN_ANSWERS}.pdf"))
    expected = [h for name in pdf.NOTEBOOKS for h in headings(nbformat.read(REPO / name, as_version=4))]
    for question in REQUIRED:
        assert any(h == f"Question {question}" or h.startswith(f"Question {question} ") for h in expected), \
            f"no answer cell (grade_id answer_...) for question {question}; headings found: {expected}"
    for heading in expected:
        assert re.search(re.escape(heading) + r"(?!\w)", text), f"{heading!r} missing from {pdf.WRITTEN_ANSWERS}.pdf"
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text


def test_notebook_pdfs_have_their_answers_figures_and_no_html(built, executed):
    out, _ = built
    for name, nb in executed.items():
        path = out / f"{Path(name).stem}.pdf"
        text = flat(pdf_text(path))
        for heading in headings(nb):
            assert f"{heading}: written answer" in text, f"{heading!r} missing from {path.name}"
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        figures = sum("image/png" in o.get("data", {}) or "image/jpeg" in o.get("data", {}) for o in outputs)
        unrendered = [o["data"]["text/plain"] for o in outputs if str(o.get("data", {}).get("text/plain", ""))
                      .startswith("<Figure size") and not {"image/png", "image/jpeg"} & set(o["data"])]
        assert not unrendered, (f"{name}: {len(unrendered)} figure(s) returned without an image ({unrendered[0]}): "
                                "a bare matplotlib Figure renders only with the inline backend; add "
                                "`%matplotlib inline` to the notebook's setup cell")
        views = len(view_outputs(nb))
        assert image_count(path) == figures + views, \
            f"{path.name}: {figures} figures and {views} bertviz views in the notebook, {image_count(path)} PDF images"
        html_only = [o for c in nb.cells if c.cell_type == "code"
                     for o in pdf.typesettable_outputs(c.get("outputs", [])) if pdf.HTML_ONLY_NOTE in o.get("text", "")]
        if html_only:
            assert "interactive HTML/JavaScript output" in text, f"{path.name}: HTML-only outputs left no note"
        assert "<IPython.core.display" not in text


def test_math_is_typeset_not_left_as_latex_source(built):
    out, console = built
    text = pdf_text(out / f"{pdf.WRITTEN_ANSWERS}.pdf")
    assert MATH_ITALIC.search(text), "no typeset math symbol in written_answers.pdf"
    leftovers = sorted(set(RAW_LATEX.findall(text)))
    assert not leftovers, f"LaTeX source left untypeset in written_answers.pdf: {leftovers}"
    written_line = [line for line in console.splitlines() if f"{pdf.WRITTEN_ANSWERS}.pdf" in line and "wrote" in line]
    assert written_line and "missing from the fonts" not in written_line[0], written_line


# Cheap unit checks of the pieces (no LaTeX).


def test_question_heading_from_grade_id():
    assert pdf.question_heading("answer_1a") == "Question 1(a)"
    assert pdf.question_heading("answer_3a_ii") == "Question 3(a) ii"
    assert pdf.question_heading("answer_3aiii") == "Question 3(a) iii"
    assert pdf.question_heading("answer_3b") == "Question 3(b)"
    assert pdf.question_heading("answer_2c_i") == "Question 2(c) i"
    assert pdf.question_heading("answer_4") == "Question 4"
    assert pdf.question_heading("answer_1(c)") == "Question 1(c)"


def test_html_only_outputs_become_one_note_and_figures_stay():
    html = nbformat.v4.new_output("display_data", data={"text/html": "<div/>", "text/plain": "<IPython.core.display"
                                                        ".HTML object>"})
    script = nbformat.v4.new_output("display_data", data={"application/javascript": "require([])"})
    figure = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "image/svg+xml": "<svg/>",
                                                          "text/plain": "<Figure>"})
    table = nbformat.v4.new_output("execute_result", data={"text/html": "<table/>", "text/plain": "   a\n0  1"})
    kept = pdf.typesettable_outputs([html, script, figure, table])
    assert [o.get("output_type") for o in kept] == ["stream", "display_data", "execute_result"]
    assert pdf.HTML_ONLY_NOTE in kept[0]["text"] and "image/svg+xml" not in kept[1]["data"]


def test_progress_bar_widgets_show_their_final_text():
    bar = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "box", "version_major": 2, "version_minor": 0},
        "text/plain": "training:   0%|          | 0/72"})
    state = {"box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_a", "IPY_MODEL_p", "IPY_MODEL_b"]}},
             "a": {"model_name": "HTMLModel", "state": {"value": "training:\u2007100%"}},
             "p": {"model_name": "FloatProgressModel", "state": {"value": 72, "max": 72}},
             "b": {"model_name": "HTMLModel", "state": {"value": "\u200772/72\u2007[00:03&lt;00:00]"}}}
    [kept] = pdf.typesettable_outputs([bar], state)
    assert kept["data"]["text/plain"] == "training: 100%|██████████| 72/72 [00:03<00:00]"
    assert pdf.typesettable_outputs([bar], {})[0]["data"]["text/plain"].startswith("training:   0%")


def test_solution_markers_become_a_label():
    answer = "### BEGIN SOLUTION\nRows sum to one over the keys.\n### END SOLUTION"
    assert pdf.show_solution_markers(answer) == "**Instructor answer.**\n\nRows sum to one over the keys."
    assert "no instructor answer" in pdf.show_solution_markers("### BEGIN SOLUTION\n### END SOLUTION")


def test_display_environments_wrapped_in_dollars_are_unwrapped():
    """$$\\begin{align}..$$ renders in Jupyter but is nested display math for LaTeX (xelatex would fail)."""
    wrapped = "$$\\begin{align} a &= b \\\\ c &= d \\end{align}$$ and $$\\begin{aligned} x \\end{aligned}$$"
    assert pdf.unwrap_display_environments(wrapped) == ("\\begin{align} a &= b \\\\ c &= d \\end{align} and "
                                                        "$$\\begin{aligned} x \\end{aligned}$$")
