"""Executing the HW8 notebooks headless: the one home of notebook execution (`make run`, `make pdf`, the tests).

Every notebook runs to its end even when cells fail (nbclient, allow_errors): the outputs are kept, and each failing
cell is recorded with its part of the homework (homework/parts.py, by the cell's nbgrader grade_id) and the function
that raised (the innermost frame of the traceback). A failure in an optional part (homework/parts.py) is reported as
skipped; a failure in any other cell (one without a grade_id included) is a required failure, and `make run` exits
non-zero after its summary. The executed notebook records `metadata.hw8 = {"fast": bool, "failed_cells": [...]}`.

While a notebook runs, the terminal shows the cell being run ("[Summarization 14/43] 1(c) q1c_apply"), what the
kernel prints, and the text of its progress bars (tqdm.auto renders a widget in a kernel: the notebook keeps the
widget, the terminal gets its text).
"""

from __future__ import annotations

import copy
import html
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.sign import NotebookNotary

import run_flags
from homework.parts import cell_grade_id, part_of_cell

REPO = Path(__file__).resolve().parents[1]

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# IPython's traceback frames: "Cell In[3], line 8, in shift_matrix(d_model, k)", "File ~/x.py:324, in f(a, b)";
# a cell's top level has no ", in ..." part.
FRAME = re.compile(r"^(?:Cell\s+In\s*\[\d*\],\s*line\s+\d+|File\s+\S.*?:\d+|Input\s+In\s*\[\d*\])"
                   r"(?:,\s*in\s+([\w.<>]+))?")
BOX_MODELS = ("HBoxModel", "VBoxModel", "BoxModel")
TEXT_MODELS = ("HTMLModel", "LabelModel")
BAR_ECHO_INTERVAL = 30.0   # seconds between progress-bar lines when the terminal is not interactive
MESSAGE_CHARS = 160


@dataclass
class CellFailure:
    """A cell that raised: where it is, which part of the homework it belongs to, and what raised."""
    index: int                  # position in the notebook (0-based)
    n_cells: int
    grade_id: str | None
    part: str | None            # "1(c)", or None for a cell outside the parts table
    optional: bool
    error: str                  # exception name ("NotImplementedError", "DeadKernelError")
    message: str                # exception message (first line, shortened)
    function: str | None        # innermost function of the traceback; None at a cell's top level

    @property
    def where(self) -> str:
        return f"cell {self.index + 1}/{self.n_cells}" + (f" ({self.grade_id})" if self.grade_id else "")

    def describe(self) -> str:
        """'1(c) shift_matrix: NotImplementedError — optional, skipped' (required ones with the message)."""
        what = " ".join(x for x in (self.part, self.function) if x) or "cell"
        if self.optional:
            return f"{what}: {self.error} — optional, skipped"
        message = f": {self.message}" if self.message else ""
        return f"{what}: {self.error}{message} — REQUIRED"


@dataclass
class NotebookRun:
    """One notebook's execution: where it was saved, its mode, time and failures."""
    name: str
    destination: Path
    fast: bool
    seconds: float = 0.0
    code_cells: int = 0
    failures: list[CellFailure] = field(default_factory=list)
    aborted: str | None = None  # the kernel died or a cell timed out: the cells after it did not run
    not_run: str | None = None  # why the notebook was not executed at all (a required failure): "preflight failed: ..."

    @property
    def required_failures(self) -> list[CellFailure]:
        return [f for f in self.failures if not f.optional]

    def summary(self) -> str:
        if self.not_run:
            return f"{self.name}: not run: {self.not_run}"
        mode = "fast mode" if self.fast else "full mode"
        head = (f"{self.name} ({mode}, {self.code_cells} code cells, {self.seconds:.0f} s) -> {self.destination}: "
                + (f"{len(self.failures)} cell(s) failed" if self.failures else "every cell ran"))
        lines = [head] + [f"  {f.where}: {f.describe()}" for f in self.failures]
        if self.aborted:
            lines.append(f"  stopped early: {self.aborted}")
        return "\n".join(lines)


def innermost_function(traceback: list[str]) -> str | None:
    """The function of the innermost frame of an IPython traceback (ANSI colours allowed); None when the innermost
    frame is a cell's top level or no frame is found."""
    function, found = None, False
    for entry in traceback:
        for line in ANSI.sub("", entry).splitlines():
            match = FRAME.match(line.strip())
            if match:
                found, function = True, match.group(1)
    return function if found else None


def failure_of(cell: nbformat.NotebookNode, index: int, n_cells: int, error: str, message: str,
               traceback: list[str]) -> CellFailure:
    grade_id = cell_grade_id(cell)
    part = part_of_cell(grade_id)
    first_line = next((line.strip() for line in str(message).splitlines() if line.strip()), "")
    if len(first_line) > MESSAGE_CHARS:
        first_line = first_line[:MESSAGE_CHARS - 3] + "..."
    return CellFailure(index, n_cells, grade_id, part.name if part else None, bool(part and part.optional), error,
                       first_line, innermost_function(traceback))


def cell_label(cell: nbformat.NotebookNode) -> str:
    """'1(c) q1c_apply' for a cell with a grade_id, else its first line of code."""
    grade_id = cell_grade_id(cell)
    part = part_of_cell(grade_id)
    if grade_id:
        return f"{part.name} {grade_id}" if part else grade_id
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return first if len(first) <= 60 else first[:57] + "..."


class ProgressEcho:
    """Shows a kernel's output in the terminal: its stream text as it arrives, and its widget progress bars
    (tqdm.auto in a kernel) as one text line ('\\r'-updated on a terminal, a line every BAR_ECHO_INTERVAL s else)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.parent: dict[str, str] = {}          # widget model id -> the box that contains it
        self.bar_open = False                     # a '\r' bar line is on screen without its newline
        self.pending: dict[str, str] = {}         # non-interactive: last text of a bar not printed yet
        self.last_print: dict[str, float] = {}

    def write(self, text: str) -> None:
        self.flush_bars()
        self.stream.write(text)
        self.stream.flush()

    def end_bar_line(self) -> None:
        if self.bar_open:
            self.stream.write("\n")
            self.bar_open = False

    def flush_bars(self) -> None:
        """At a cell's end: finish the bar line, print the last state of bars not shown yet."""
        self.end_bar_line()
        for text in self.pending.values():
            self.stream.write(f"  {text}\n")
        self.pending.clear()
        self.stream.flush()

    def widget(self, model_id: str, widget_state: dict[str, dict]) -> None:
        """A widget model changed: echo the text of the progress bar it belongs to."""
        state = widget_state.get(model_id, {})
        for child in state.get("children", []) or []:
            self.parent[str(child).removeprefix("IPY_MODEL_")] = model_id
        box = self.parent.get(model_id, model_id)
        text = bar_text(box, widget_state)
        if not text or not any(ch.isdigit() for ch in text):      # a bar not drawn yet
            return
        if self.interactive:
            self.stream.write(f"\r\x1b[K  {text}")
            self.stream.flush()
            self.bar_open = True
            return
        now = time.monotonic()
        if now - self.last_print.get(box, -BAR_ECHO_INTERVAL) >= BAR_ECHO_INTERVAL:
            self.stream.write(f"  {text}\n")
            self.stream.flush()
            self.last_print[box] = now
            self.pending.pop(box, None)
        else:
            self.pending[box] = text


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
BAR_WIDTH = 10


def saved_widget_state(nb: nbformat.NotebookNode) -> dict[str, dict]:
    """{model_id: {"model_name": ..., "state": {...}}}: the widget state saved in a notebook's metadata, or {}."""
    return nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def widget_text(model_id: str, widget_state: dict) -> str | None:
    """The final text of a saved widget, from a notebook's saved state (saved_widget_state); None when its state was
    not saved. A tqdm bar (a box of text and a progress model) reads as tqdm prints it in a terminal:
    'train: 100%|██████████| 3200/3200 [09:48<00:00, 5.44it/s]'; other boxes join their text children."""
    model = widget_state.get(model_id)
    if model is None:
        return None
    state = model.get("state", {})
    if model.get("model_name") in TEXT_MODELS:
        return join_widget_text([str(state.get("value", ""))])
    if model.get("model_name") not in BOX_MODELS:
        return ""
    before, bar, after = [], None, []
    for child_id in (str(c).removeprefix("IPY_MODEL_") for c in state.get("children", []) or []):
        child = widget_state.get(child_id, {})
        if str(child.get("model_name", "")).endswith("ProgressModel"):
            progress = child.get("state", {})
            fraction = min(max(float(progress.get("value") or 0) / float(progress.get("max") or 1), 0.0), 1.0)
            bar = "|" + "█" * round(fraction * BAR_WIDTH) + " " * (BAR_WIDTH - round(fraction * BAR_WIDTH)) + "|"
        else:
            (before if bar is None else after).append(widget_text(child_id, widget_state) or "")
    if bar is None:
        return join_widget_text(before)
    return f"{join_widget_text(before)}{bar} {join_widget_text(after)}".strip()


def finish_progress_bars(nb: nbformat.NotebookNode) -> int:
    """Replace every widget output whose state the notebook saved (tqdm bars) by its final text (widget_text), so the
    saved notebook shows the finished bar in every front end, never the 0 % text of its first draw or a 'model not
    found' box; then drop the saved widget state if no widget output is left. Returns the number replaced."""
    state, replaced, left = saved_widget_state(nb), 0, 0
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                continue
            text = widget_text(str(view.get("model_id", "")), state)
            if text:
                output["data"] = {"text/plain": text}
                replaced += 1
            else:
                left += 1
    if not left:
        nb.metadata.pop("widgets", None)
    return replaced


def sign(path: Path) -> None:
    """Mark the notebook at `path` as trusted by this user (nbformat's notary, the store JupyterLab, Notebook 7 and
    nbclassic read), as Jupyter does for a notebook the user ran and saved: its HTML and JavaScript outputs (the
    bertviz views) then render on opening instead of being sanitised away. HW8_SIGN=0 leaves it unsigned."""
    if run_flags.sign_notebooks():
        NotebookNotary().sign(nbformat.read(path, as_version=4))


def join_widget_text(parts: list[str]) -> str:
    """The text widgets' values (HTML of a tqdm bar's description and counters) as one plain line."""
    return html.unescape(" ".join(p for p in parts if p)).replace("\u2007", " ").strip()


def bar_text(box_id: str, live_state: dict[str, dict]) -> str | None:
    """The text of a progress bar widget (a box holding text and a progress model, as tqdm.notebook draws it) in
    nbclient's live widget state ({model_id: state with its '_model_name'}), as widget_text renders a saved one:
    'train:  37%|████      | 1184/3200 [05:01<08:33, 3.93it/s]'; None for any other widget."""
    state = live_state.get(box_id, {})
    children = [live_state.get(str(c).removeprefix("IPY_MODEL_"), {}) for c in state.get("children", []) or []]
    if state.get("_model_name") not in BOX_MODELS or not any(
            str(c.get("_model_name", "")).endswith("ProgressModel") for c in children):
        return None
    saved = {model_id: {"model_name": s.get("_model_name"), "state": s} for model_id, s in live_state.items()}
    return widget_text(box_id, saved) or None


class EchoingClient(NotebookClient):
    """NotebookClient that forwards stream outputs and progress bars to an echo (ProgressEcho) as they arrive."""

    def __init__(self, nb: nbformat.NotebookNode, echo: ProgressEcho | None = None, **kw) -> None:
        super().__init__(nb, **kw)
        self.echo = echo

    def process_message(self, msg: dict, cell: nbformat.NotebookNode, cell_index: int):
        if self.echo is not None and msg["msg_type"] == "stream":
            self.echo.write(msg["content"].get("text", ""))
        result = super().process_message(msg, cell, cell_index)    # raises CellExecutionComplete at idle
        if self.echo is not None and msg["msg_type"] in ("comm_open", "comm_msg"):
            comm_id = msg["content"].get("comm_id")
            if comm_id:
                self.echo.widget(comm_id, self.widget_state)
        return result


def front_end_metadata() -> dict:
    """The notebook metadata a Jupyter front end writes when it opens a notebook with this environment's python3 kernel
    (its kernelspec, and the language_info the kernel reports). Committed notebooks carry exactly this, so that opening
    one does not mark it modified; nbclient copies it into executed ones (a kernel of another Python version reports
    another language_info.version)."""
    from ipykernel.ipkernel import IPythonKernel
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    return {"kernelspec": {"display_name": spec.display_name, "language": spec.language, "name": "python3"},
            "language_info": copy.deepcopy(IPythonKernel.language_info)}


def executed_copy(source: Path, executed_dir: Path, fast: bool) -> Path:
    """Where an executed copy of `source` is written outside the notebook's folder: executed_dir/<name> for a full run
    (`make run`), executed_dir/<stem>.fast.ipynb for a fast one (the notebook tests)."""
    return executed_dir / (f"{source.stem}.fast.ipynb" if fast else source.name)


KERNEL_STARTS = 3     # tries to start a notebook's kernel before its first cell


def run_notebook(source: Path, destination: Path, fast: bool, timeout: int | None = None, *,
                 allow_errors: bool = True, echo: bool = True) -> tuple[nbformat.NotebookNode, NotebookRun]:
    """Execute `source` (cwd = its folder, HW8_FAST passed to the kernel) and save it to `destination` (which may
    be `source` itself: in place) with metadata hw8 = {fast, failed_cells}; return (notebook, run record).

    allow_errors: every cell runs even after failures. Otherwise the first failing cell stops the run: the partly
    executed notebook is saved as <destination>.failed.ipynb and CellExecutionError raised. A dead kernel or a
    timed-out cell stops the run either way (recorded as a required failure when allow_errors)."""
    nb = nbformat.read(source, as_version=4)
    nb.metadata.pop("widgets", None)              # a previous run's widget state
    name, stem, n_cells = source.name, source.stem, len(nb.cells)
    run = NotebookRun(name, destination, fast)
    progress = ProgressEcho() if echo else None
    current = {"index": None, "start": 0.0}

    def on_cell_execute(cell, cell_index):
        current.update(index=cell_index, start=time.monotonic())
        run.code_cells += 1
        if progress is not None:
            progress.write(f"[{stem} {cell_index + 1}/{n_cells}] {cell_label(cell)}\n")

    def on_cell_error(cell, cell_index, execute_reply):
        content = execute_reply["content"]
        failure = failure_of(cell, cell_index, n_cells, content.get("ename", "Error"), content.get("evalue", ""),
                             content.get("traceback", []))
        run.failures.append(failure)
        if progress is not None:
            progress.write(f"  failed: {failure.describe()}\n")

    def on_cell_executed(cell, cell_index, execute_reply):
        if progress is not None:
            progress.flush_bars()
            seconds = time.monotonic() - current["start"]
            if seconds >= 10:
                progress.write(f"  ({seconds:.0f} s)\n")

    # OMP_WAIT_POLICY=PASSIVE: torch's idle OpenMP threads sleep instead of spinning, so that when another program
    # holds a core, the threads that wait for it do not take the remaining one (summarizer/RESULTS.md, "Threads on a
    # busy machine"); a value the user set is kept.
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "HW8_FAST": "1" if fast else "0"}

    def new_client() -> EchoingClient:
        return EchoingClient(nb, echo=progress, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                             resources={"metadata": {"path": str(source.parent)}},
                             extra_arguments=["--IPKernelApp.log_level=ERROR"],
                             on_cell_execute=on_cell_execute, on_cell_error=on_cell_error,
                             on_cell_executed=on_cell_executed)

    destination.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    print(f"executing {name} ({'fast' if fast else 'full'} mode) -> {destination}", flush=True)

    def record() -> None:
        run.seconds = time.monotonic() - start
        nb.metadata["hw8"] = {"fast": fast, "failed_cells": [asdict(f) for f in run.failures]}

    try:
        for attempt in range(KERNEL_STARTS):
            client = new_client()
            try:
                client.execute(env=env)
                break
            except RuntimeError as error:      # a kernel that died before any cell ran (e.g. another kernel took
                if current["index"] is not None or attempt == KERNEL_STARTS - 1:     # its port as it started):
                    raise                                                            # a fresh kernel, new ports
                print(f"the kernel did not start ({str(error)[:200]}); starting another", file=sys.stderr)
    except CellExecutionError:
        record()
        failed = destination.with_suffix(".failed.ipynb")
        nbformat.write(nb, failed)
        print(f"{name} failed; partial run saved to {failed}", file=sys.stderr)
        raise
    except Exception as error:  # noqa: BLE001 - a dead kernel or a timeout: keep what ran, report the cell
        if not allow_errors:
            record()
            nbformat.write(nb, destination.with_suffix(".failed.ipynb"))
            raise
        index = current["index"]
        cell = nb.cells[index] if index is not None else nbformat.v4.new_code_cell("")
        run.failures.append(failure_of(cell, index or 0, n_cells, type(error).__name__, str(error), []))
        run.failures[-1].optional = False
        run.aborted = f"{type(error).__name__} in cell {(index or 0) + 1}/{n_cells}: {str(error)[:MESSAGE_CHARS]}"
        if client.widget_state:
            client.set_widgets_metadata()
    finally:
        if progress is not None:
            progress.flush_bars()
    record()
    finish_progress_bars(nb)
    partial = destination.with_name(destination.name + ".partial")
    nbformat.write(nb, partial)
    partial.replace(destination)
    sign(destination)
    print(f"executed {name} in {run.seconds:.0f} s"
          + (f"; {len(run.failures)} cell(s) failed" if run.failures else ""), flush=True)
    return nb, run


def run_summary(runs: list[NotebookRun]) -> tuple[str, int]:
    """(the summary of every run, exit status): 1 if a required part failed anywhere or a notebook was not run,
    else 0."""
    required = [(r, f) for r in runs for f in r.required_failures]
    not_run = [f"{r.name} not run ({r.not_run})" for r in runs if r.not_run]
    skipped = sorted({f.part for r in runs for f in r.failures if f.optional and f.part})
    lines = ["", "=" * 30 + " summary " + "=" * 30, *(r.summary() for r in runs), ""]
    if required or not_run:
        where = ", ".join(f"{r.name} {f.where}" + (f" [{f.part}]" if f.part else "") for r, f in required)
        failed = not_run + ([f"{len(required)} cell(s) of required parts: {where}"] if required else [])
        lines.append(f"FAILED: {'; '.join(failed)}. Fix them and run again.")
    else:
        lines.append("OK: every required part ran" + (f" (optional parts skipped: {', '.join(skipped)})"
                                                      if skipped else "") + ".")
    return "\n".join(lines), 1 if required or not_run else 0
