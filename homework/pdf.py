"""PDFs of the notebooks, outputs and written answers included, in build/pdf/.

Instructor (this repository): execute the instructor notebooks (or reuse fresh executed copies) and export them.

    python -m homework.pdf            # full run; `make pdf`
    python -m homework.pdf --fast     # HW8_FAST=1: small data, same code path (also: HW8_FAST=1 python -m homework.pdf)

Writes build/pdf/<Notebook>.pdf for each notebook and build/pdf/written_answers.pdf, which collects every written
answer (markdown cell whose nbgrader grade_id starts with "answer_") under its question heading ("Question 3(a) ii").
Executed notebooks are reused from build/notebooks/<name> (full runs, written by `make run`) or
build/notebooks/<stem>.fast.ipynb (fast runs, written by the notebook tests and by this script) when newer than the
notebook and what it reads (modules, data, assets); otherwise they are executed and saved there
(homework/notebooks.py executes them).

Student release: `make pdf` (python -m homework.pdf --student) exports the notebooks as they are, executed in place
by `make run`, without running anything: build/pdf/<Notebook>.pdf titled "HW8: <Notebook>", answers labelled
"Answer". No written-answers collection.

Route: nbconvert LaTeX exporter -> pandoc (markdown and math) -> xelatex. Each bertviz view is drawn in headless
Chromium and typeset as a picture (homework/view_images.py; Chromium comes from `make system`); any other
HTML/JavaScript-only output is replaced by a one-line note.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import LatexExporter

import run_flags
from homework.markers import BEGIN_SOLUTION, END_SOLUTION
from homework.notebooks import WIDGET_VIEW, saved_widget_state, widget_text
from homework.parts import NOTEBOOKS, cell_grade_id
from homework.view_images import add_view_images

REPO = Path(__file__).resolve().parents[1]

APT_PACKAGES = "texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc poppler-utils fonts-dejavu-core"
WRITTEN_ANSWERS = "written_answers"
INSTRUCTOR_LABEL, STUDENT_LABEL = "Instructor answer", "Answer"
PROMPT_MAX_CHARS = 2500  # a longer markdown cell before an answer is narrative, not the question

# Output types that LaTeX can show; an output with none of them (bertviz's HTML + JavaScript) becomes a note.
TYPESETTABLE = ("image/png", "image/jpeg", "application/pdf", "text/latex", "text/markdown")
HTML_ONLY_NOTE = "[interactive HTML/JavaScript output (e.g. a bertviz view) omitted from the PDF: open the notebook]"
PLACEHOLDER_REPR = re.compile(r"^<(IPython\.core\.display\.\w+|bertviz\.[\w.]+) object>$")
SOLUTION_BEGIN = re.compile(rf"^[ \t]*###?[ \t]*{BEGIN_SOLUTION.strip('# ')}[ \t]*$", re.MULTILINE)
SOLUTION_END = re.compile(rf"^[ \t]*###?[ \t]*{END_SOLUTION.strip('# ')}[ \t]*\n?", re.MULTILINE)
# $$\begin{align}...\end{align}$$ renders in Jupyter (MathJax) but is nested display math in LaTeX: unwrap it.
WRAPPED_ENVIRONMENT = re.compile(r"\$\$\s*(\\begin\{(align|alignat|equation|gather|multline|eqnarray)(\*?)\}.*?"
                                 r"\\end\{\2\3\})\s*\$\$", re.DOTALL)
ANSWER_ID = re.compile(r"^answer_(\d+)_?\(?([a-z])?\)?(?:_?([ivx]+))?$")   # answer_3a_ii, answer_1(a), answer_4

# Preamble added to nbconvert's LaTeX template: fonts with Greek letters, arrows and box-drawing characters
# (text mode and code outputs); Latin Modern Math (unicode-math) keeps typesetting the math.
TEMPLATE = r"""((*- extends 'index.tex.j2' -*))
((* block packages *))
((( super() )))
\IfFontExistsTF{DejaVu Serif}{\setmainfont{DejaVu Serif}[Scale=0.92]}{}
\IfFontExistsTF{DejaVu Sans Mono}{\setmonofont{DejaVu Sans Mono}[Scale=0.85]}{}
((* endblock packages *))
"""


def require_latex_tools() -> None:
    """Raise RuntimeError naming the Debian packages if xelatex or pandoc is missing."""
    missing = [tool for tool in ("xelatex", "pandoc") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: the PDF route needs LaTeX and pandoc. Install them with "
                           f"`sudo apt-get install --no-install-recommends {APT_PACKAGES}` (or `make system`).")


def question_heading(grade_id: str) -> str:
    """'answer_1a' -> 'Question 1(a)', 'answer_3a_ii' -> 'Question 3(a) ii', 'answer_3b' -> 'Question 3(b)'.

    A grade_id that does not follow answer_<number><letter>[_<roman>] keeps its own name after 'Question'."""
    match = ANSWER_ID.match(grade_id)
    if not match:
        return f"Question {grade_id.removeprefix('answer_')}"
    number, letter, roman = match.groups()
    return f"Question {number}" + (f"({letter})" if letter else "") + (f" {roman}" if roman else "")


def answer_cells(nb: nbformat.NotebookNode) -> list[tuple[int, nbformat.NotebookNode]]:
    """(index, cell) of every written-answer cell: a markdown cell whose nbgrader grade_id starts with 'answer_'."""
    return [(i, cell) for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown"
            and str(cell_grade_id(cell) or "").startswith("answer_")]


def unwrap_display_environments(markdown: str) -> str:
    """'$$\\begin{align}..\\end{align}$$' -> '\\begin{align}..\\end{align}': same in Jupyter, and valid LaTeX."""
    return WRAPPED_ENVIRONMENT.sub(r"\1", markdown)


def show_solution_markers(markdown: str, label: str = INSTRUCTOR_LABEL) -> str:
    """An answer cell's markdown with nbgrader's solution markers (which would render as headings) replaced by
    `label` ("Instructor answer"; "Answer" in student PDFs); an empty solution region becomes a note (instructor:
    that students answer this one)."""
    begin, end = SOLUTION_BEGIN.search(markdown), SOLUTION_END.search(markdown)
    if begin and end and not markdown[begin.end():end.start()].strip():
        note = "*(no instructor answer: students answer this)*" if label == INSTRUCTOR_LABEL else "*(no answer)*"
        markdown = markdown[:begin.start()] + note + "\n" + markdown[end.end():]
    return SOLUTION_END.sub("", SOLUTION_BEGIN.sub(f"**{label}.**\n", markdown)).strip()


def typesettable_outputs(outputs: list, widget_state: dict | None = None) -> list:
    """Outputs LaTeX can show: HTML/JavaScript-only outputs (bertviz views) become one note per cell; widgets
    (tqdm bars) show their final text from `widget_state` ({model_id: model}, the notebook's saved widget state)
    instead of their initial text; SVG is dropped where a raster copy exists (LaTeX would need Inkscape for it)."""
    kept, noted = [], False
    for output in outputs:
        data = output.get("data")
        if output.get("output_type") not in ("display_data", "execute_result") or data is None:
            kept.append(output)
            continue
        output = copy.deepcopy(output)
        data = output["data"]
        if any(k in data for k in ("image/png", "application/pdf")):
            data.pop("image/svg+xml", None)
        widget = data.get(WIDGET_VIEW)
        if widget is not None:
            text = widget_text(widget.get("model_id", ""), widget_state or {})
            if text is not None:
                data["text/plain"] = text
        plain = str(data.get("text/plain", "")).strip()
        if any(k in data for k in TYPESETTABLE) or (plain and not PLACEHOLDER_REPR.match(plain)):
            kept.append(output)
        elif not noted:
            kept.append(nbformat.v4.new_output("stream", name="stdout", text=HTML_ONLY_NOTE + "\n"))
            noted = True
    return kept


def prepare_for_latex(nb: nbformat.NotebookNode, title: str, label: str = INSTRUCTOR_LABEL) -> nbformat.NotebookNode:
    """A copy of `nb` ready for the LaTeX exporter: titled, answer markers shown as `label`, bertviz views drawn as
    pictures, outputs typesettable, and every written answer preceded by its question heading."""
    nb = copy.deepcopy(nb)
    nb.metadata["title"] = title
    add_view_images(nb)
    for index, cell in reversed(answer_cells(nb)):
        cell.source = show_solution_markers(cell.source, label)
        heading = question_heading(cell.metadata["nbgrader"]["grade_id"])
        nb.cells.insert(index, nbformat.v4.new_markdown_cell(f"### {heading}: written answer {{.unnumbered}}"))
    widget_state = saved_widget_state(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = typesettable_outputs(cell.get("outputs", []), widget_state)
        elif cell.cell_type == "markdown":
            cell.source = unwrap_display_environments(cell.source)
    return nb


def question_prompt(nb: nbformat.NotebookNode, index: int) -> str:
    """The question as the notebook states it just before answer cell `index`: the preceding markdown cell if it
    opens with a heading (a question's introduction; headings turned into bold lines), else ''."""
    previous = nb.cells[index - 1] if index > 0 else None
    if (previous is None or previous.cell_type != "markdown" or not previous.source.lstrip().startswith("#")
            or str(cell_grade_id(previous) or "").startswith("answer_")
            or len(previous.source) > PROMPT_MAX_CHARS):
        return ""
    return re.sub(r"^#+[ \t]*(.+?)[ \t]*$", r"**\1**", previous.source.strip(), flags=re.MULTILINE)


def written_answers_notebook(notebooks: dict[str, nbformat.NotebookNode]) -> nbformat.NotebookNode:
    """One markdown notebook with every written answer of `notebooks` ({file name: notebook}), in order, each under
    '## Question ...' with the notebook it comes from, its points and, where the notebook states it in the cell
    before, the question."""
    cells = [nbformat.v4.new_markdown_cell(
        "Every written answer of the instructor notebooks (nbgrader cells `answer_*`), in notebook order. "
        "The notebook PDFs show the cells, outputs and figures the answers refer to.")]
    for name, nb in notebooks.items():
        for index, cell in answer_cells(nb):
            meta = cell.metadata["nbgrader"]
            points = meta.get("points")
            worth = f", {points:g} point{'s' * (points != 1)}" if points else ""
            parts = [f"## {question_heading(meta['grade_id'])} {{.unnumbered}}",
                     f"*{name}, cell `{meta['grade_id']}`{worth}*", question_prompt(nb, index),
                     show_solution_markers(cell.source) or "*(empty answer cell)*"]
            text = "\n\n".join(part for part in parts if part)
            cells.append(nbformat.v4.new_markdown_cell(unwrap_display_environments(text)))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["title"] = "HW8 written answers (instructor solutions)"
    return nb


def latex_to_pdf(nb: nbformat.NotebookNode, destination: Path, resource_dir: Path, latex_runs: int = 2) -> list[str]:
    """Typeset `nb` with nbconvert's LaTeX template and xelatex; write `destination`; return the characters that
    the fonts lack (xelatex's 'Missing character' lines). Raise RuntimeError with the log's tail on a LaTeX error.

    `resource_dir` is where relative image paths in markdown are resolved (the notebook's folder)."""
    exporter = LatexExporter(extra_loaders=[DictLoader({"hw8.tex.j2": TEMPLATE})], template_file="hw8.tex.j2")
    body, resources = exporter.from_notebook_node(
        nb, resources={"metadata": {"name": destination.stem, "path": str(resource_dir)}, "output_files_dir": "files"})
    with tempfile.TemporaryDirectory(prefix="hw8pdf_") as tmp:
        work = Path(tmp)
        (work / "notebook.tex").write_text(body, encoding="utf-8")
        for name, data in resources.get("outputs", {}).items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes(data)
        env = dict(os.environ, TEXINPUTS=f"{resource_dir}{os.pathsep}")  # images referenced from markdown
        for _ in range(latex_runs):
            run = subprocess.run(["xelatex", "-interaction=nonstopmode", "-halt-on-error", "notebook.tex"], cwd=work,
                                 env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
            if run.returncode != 0 or not (work / "notebook.pdf").is_file():
                destination.parent.mkdir(parents=True, exist_ok=True)
                kept = destination.with_name(f"{destination.stem}_failed.tex")
                shutil.copy(work / "notebook.tex", kept)
                raise RuntimeError(f"xelatex failed on {destination.name} (LaTeX source kept in {kept}):\n"
                                   + run.stdout[-3000:])
        log = (work / "notebook.log").read_text(encoding="utf-8", errors="replace")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(work / "notebook.pdf", destination)
    return sorted(set(re.findall(r"Missing character: There is no (.) ", log)))


def build_pdfs(sources: list[Path], executed_dir: Path, out_dir: Path, fast: bool, timeout: int | None = None,
               force: bool = False) -> list[Path]:
    """Execute (or reuse) every notebook in `sources`, write <out_dir>/<name>.pdf for each and
    <out_dir>/written_answers.pdf; return the PDF paths. Raise ValueError if no notebook has an answer cell.

    Fast mode runs xelatex once (the text is complete); a full run twice (PDF bookmarks need the second)."""
    from grading.executed import executed_notebook  # the instructor's reuse of executed copies (not released)

    latex_runs = 1 if fast else 2
    require_latex_tools()
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise FileNotFoundError(f"notebooks not found: {', '.join(missing)}")
    executed = {s.name: executed_notebook(s, executed_dir, fast, timeout, force) for s in sources}
    if not any(answer_cells(nb) for nb in executed.values()):
        raise ValueError(f"no written-answer cells (nbgrader grade_id 'answer_*') in {', '.join(executed)}")
    written = [(out_dir / f"{Path(name).stem}.pdf", prepare_for_latex(nb, f"HW8 solutions: {name}"), sources[i])
               for i, (name, nb) in enumerate(executed.items())]
    written.append((out_dir / f"{WRITTEN_ANSWERS}.pdf", written_answers_notebook(executed), sources[0]))
    for destination, nb, source in written:
        start = time.time()
        lacking = latex_to_pdf(nb, destination, source.parent, latex_runs)
        note = f"; characters missing from the fonts: {' '.join(lacking)}" if lacking else ""
        print(f"wrote {destination} ({destination.stat().st_size / 1e6:.2f} MB, {time.time() - start:.0f} s){note}",
              flush=True)
    return [destination for destination, _, _ in written]


def unrun_notebooks(notebooks: dict[str, nbformat.NotebookNode]) -> list[str]:
    """Names of the notebooks none of whose code cells has run."""
    return [name for name, nb in notebooks.items()
            if not any(c.get("execution_count") for c in nb.cells if c.cell_type == "code" and c.source.strip())]


def build_student_pdfs(sources: list[Path], out_dir: Path) -> list[Path]:
    """Write <out_dir>/<name>.pdf for every notebook in `sources` as it is (executed in place by `make run`; nothing
    is run here), titled 'HW8: <name>', answers labelled 'Answer'. Raise RuntimeError if one has not been run."""
    require_latex_tools()
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise FileNotFoundError(f"notebooks not found: {', '.join(missing)}")
    notebooks = {s.name: nbformat.read(s, as_version=4) for s in sources}
    unrun = unrun_notebooks(notebooks)
    if unrun:
        raise RuntimeError(f"{', '.join(unrun)} ha{'ve' if len(unrun) > 1 else 's'} not been run: run `make run` "
                           "(or Run All in Jupyter and save) first, then `make pdf`")
    written = []
    for source in sources:
        nb = notebooks[source.name]
        hw8 = nb.metadata.get("hw8", {})
        if hw8.get("fast"):
            print(f"note: {source.name} was run in fast mode (HW8_FAST=1): its outputs are not the full run's",
                  flush=True)
        failed = hw8.get("failed_cells", [])
        if failed:
            print(f"note: {source.name} has {len(failed)} failed cell(s); their errors are in the PDF", flush=True)
        destination = out_dir / f"{source.stem}.pdf"
        start = time.time()
        lacking = latex_to_pdf(prepare_for_latex(nb, f"HW8: {source.name}", STUDENT_LABEL), destination,
                               source.parent)
        note = f"; characters missing from the fonts: {' '.join(lacking)}" if lacking else ""
        print(f"wrote {destination} ({destination.stat().st_size / 1e6:.2f} MB, {time.time() - start:.0f} s){note}",
              flush=True)
        written.append(destination)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="HW8_FAST=1 run (also set by the HW8_FAST variable)")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "pdf", help="folder for the PDFs")
    parser.add_argument("--executed-dir", type=Path, default=REPO / "build" / "notebooks",
                        help="folder of executed notebooks to reuse / write (fast runs as <stem>.fast.ipynb)")
    parser.add_argument("--notebooks", nargs="+", type=Path, default=[REPO / n for n in NOTEBOOKS],
                        help="notebooks to export (default: the three homework notebooks)")
    parser.add_argument("--force", action="store_true", help="execute even if a fresh executed copy exists")
    parser.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: no limit)")
    parser.add_argument("--student", action="store_true",
                        help="student release: export the notebooks as executed in place (`make run`), run nothing")
    args = parser.parse_args(argv)
    fast = args.fast or run_flags.fast()
    if args.student or importlib.util.find_spec("grading") is None:      # the student release has no grading/
        try:
            paths = build_student_pdfs([p.resolve() for p in args.notebooks], args.out.resolve())
        except (RuntimeError, FileNotFoundError) as error:
            raise SystemExit(f"make pdf: {error}") from None
        print("PDFs:", *[str(p) for p in paths], sep="\n  ")
        return
    try:
        paths = build_pdfs([p.resolve() for p in args.notebooks], args.executed_dir.resolve(), args.out.resolve(),
                           fast, args.timeout, args.force)
    except (RuntimeError, ValueError, FileNotFoundError) as error:     # a failing cell raises with its traceback
        raise SystemExit(f"homework/pdf.py: {error}") from None
    print("solution PDFs:", *[str(p) for p in paths], sep="\n  ")


if __name__ == "__main__":
    main()
