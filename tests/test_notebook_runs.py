"""`make run` (homework/run_notebooks.py, homework/notebooks.py) and `make submission` (homework/submission.py), on tiny
synthetic notebooks whose cells carry the grade_ids of homework/parts.py (seconds, not minutes).

`make run` runs every cell even after failures, names the part and the function that raised, treats optional parts
as skipped (exit 0) and required ones as failures (exit 1, after the summary). `make submission` refuses fast-mode,
unrun and stubbed-required work and a missing checkpoint (writing nothing), and lists undone optional parts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]

from homework import submission  # noqa: E402
from homework.notebooks import bar_text, innermost_function, run_summary  # noqa: E402
from homework.parts import part_of_cell  # noqa: E402


def cell(kind: str, source: str, grade_id: str | None = None, outputs: bool = False) -> nbformat.NotebookNode:
    new = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    c = new(source)
    if grade_id:
        c.metadata["nbgrader"] = {"grade_id": grade_id, "grade": False, "locked": False, "solution": True,
                                  "schema_version": 3}
    if outputs and kind == "code":
        c.execution_count = 1
        c.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    return c


def write(path: Path, cells: list, **metadata) -> Path:
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata.update(metadata)
    nbformat.write(nb, path)
    return path


def run_notebooks(*notebooks: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "homework.run_notebooks", "--in-place", "--notebooks", *map(str, notebooks)]
    return subprocess.run(args, capture_output=True, text=True, timeout=180, env={**os.environ, "HW8_FAST": "1"},
                          cwd=REPO)


def test_grade_ids_used_here_are_parts():
    assert part_of_cell("q1c_code").optional and part_of_cell("q1c_apply").optional
    assert not part_of_cell("q1a_code").optional


def test_an_optional_stub_is_skipped_and_every_later_cell_still_runs(tmp_path):
    nb = write(tmp_path / "Demo.ipynb", [
        cell("markdown", "# demo"),
        cell("code", "x = 1"),
        cell("code", "def shift_matrix(d_model, k=1):\n    # YOUR CODE HERE\n    raise NotImplementedError()",
             "q1c_code"),
        cell("code", "M = shift_matrix(4)", "q1c_apply"),
        cell("code", "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='train'):\n    pass"),
        cell("code", "print('after', x + 1)", "q1a_plot"),
    ])
    run = run_notebooks(nb)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "[Demo 4/6] 1(c) q1c_apply" in out                         # progress: notebook, cell, part
    assert "train: 100%" in out                                        # the widget bar's text reaches the terminal
    assert "after 2" in out                                            # stream output echoed
    assert "1(c) shift_matrix: NotImplementedError — optional, skipped" in out
    assert "OK: every required part ran (optional parts skipped: 1(c))" in out
    executed = nbformat.read(nb, as_version=4)
    assert all(c.execution_count for c in executed.cells if c.cell_type == "code")
    assert executed.cells[5].outputs[0]["text"] == "after 2\n"         # a cell after the failure ran
    hw8 = executed.metadata["hw8"]
    assert hw8["fast"] is True
    assert [(f["index"], f["part"], f["function"], f["optional"]) for f in hw8["failed_cells"]] == \
        [(3, "1(c)", "shift_matrix", True)]
    assert any(o.get("output_type") == "error" for o in executed.cells[3].outputs)   # outputs are kept


def test_a_required_failure_exits_non_zero_after_running_everything(tmp_path):
    skipped = write(tmp_path / "Skipped.ipynb", [cell("code", "raise NotImplementedError()", "q1c_apply")])
    failing = write(tmp_path / "Failing.ipynb", [
        cell("code", "def attention_weights(Q, K):\n    raise ValueError('shapes do not match')"),
        cell("code", "attention_weights(1, 2)", "q1a_code"),
        cell("code", "print('still here')"),
    ])
    run = run_notebooks(skipped, failing)
    assert run.returncode == 1
    out = run.stdout
    assert out.index("===") < out.index("FAILED")                      # the summary comes first
    assert "1(c): NotImplementedError — optional, skipped" in out       # a cell's top level: no function
    assert "1(a) attention_weights: ValueError: shapes do not match — REQUIRED" in out
    assert "FAILED: 1 cell(s) of required parts: Failing.ipynb cell 2/3 (q1a_code) [1(a)]" in out
    executed = nbformat.read(failing, as_version=4)
    assert executed.cells[2].outputs[0]["text"] == "still here\n"


def test_innermost_function_reads_ipython_tracebacks():
    cell_frame = "\x1b[36mCell\x1b[39m \x1b[32mIn[4]\x1b[39m\x1b[32m, line 1\x1b[39m\n----> 1 M = shift_matrix(4)\n"
    module_frame = ("\x1b[36mFile \x1b[39m\x1b[32m~/hw8/kernel_attention.py:324\x1b[39m, in \x1b[36m"
                    "positional_shift_matrix\x1b[39m\x1b[34m(d_model, shift, dtype)\x1b[39m\n    raise ...\n")
    method_frame = "File ~/hw8/kernel_attention.py:414, in RandomFourierFeatures.forward(self, x, is_query)\n"
    assert innermost_function(["---", "NotImplementedError  Traceback", cell_frame, module_frame,
                               "NotImplementedError: positional_shift_matrix in kernel_attention.py"]) \
        == "positional_shift_matrix"
    assert innermost_function([cell_frame, method_frame]) == "RandomFourierFeatures.forward"
    assert innermost_function([cell_frame]) is None
    assert innermost_function([]) is None


def test_bar_text_renders_a_tqdm_widget_and_nothing_else():
    state = {
        "box": {"_model_name": "HBoxModel", "children": ["IPY_MODEL_l", "IPY_MODEL_p", "IPY_MODEL_r"]},
        "l": {"_model_name": "HTMLModel", "value": "train:  37%"},
        "p": {"_model_name": "FloatProgressModel", "value": 37, "max": 100},
        "r": {"_model_name": "HTMLModel", "value": "37/100 [00:01&lt;00:02]"},
        "other": {"_model_name": "HBoxModel", "children": ["IPY_MODEL_l"]},
    }
    assert bar_text("box", state) == "train:  37%|████      | 37/100 [00:01<00:02]"      # as the saved bar reads
    assert bar_text("other", state) is None and bar_text("l", state) is None


def test_summarize_with_no_failure_is_ok():
    assert run_summary([])[1] == 0


# ------------------------------------------------------------------------------------------------ make submission

MODULE = '''
import abc


class FeatureMap(abc.ABC):
    def forward(self, x):
        raise NotImplementedError


class AbstractMap(abc.ABC):
    @abc.abstractmethod
    def forward(self, x):
        raise NotImplementedError


class RandomFourierFeatures(FeatureMap):
    def forward(self, x):
        return x


def positional_shift_matrix(d_model):
    raise NotImplementedError('positional_shift_matrix in kernel_attention.py: write your code here')


def linear_attention(q, k, v):
    if q is None:
        raise NotImplementedError("masks of this kind")        # an unsupported case, not a stub
    return v
'''


@pytest.fixture
def home(tmp_path):
    """A student folder: Summarization.ipynb run in full mode with 1(c) and 1(g) left undone, kernel_attention.py with
    the optional 1(c) function stubbed, and the checkpoint."""
    write(tmp_path / "Summarization.ipynb", [
        cell("code", "y = 2", "q1a_code", outputs=True),
        cell("markdown", "Attention is a weighted average.", "answer_1a"),
        cell("code", "def shift_matrix(d_model):\n    # YOUR CODE HERE\n    raise NotImplementedError()", "q1c_code",
             outputs=True),
        cell("markdown", "YOUR ANSWER HERE", "answer_1g"),
    ], hw8={"fast": False, "failed_cells": []})
    (tmp_path / "kernel_attention.py").write_text(MODULE)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "summarizer.pt").write_bytes(b"weights" * 100)
    return tmp_path


def submit(home: Path, *extra: str) -> int:
    return submission.main(["--root", str(home), "--notebooks", "Summarization.ipynb", *extra])


def zip_path(home: Path) -> Path:
    return home / "build" / "submission" / "hw8_submission.zip"


def test_submission_lists_undone_optional_parts_and_zips(home, capsys):
    assert submit(home) == 0
    out = capsys.readouterr().out
    assert "optional 1(c) not done: Summarization.ipynb q1c_code, positional_shift_matrix" in out
    assert "optional 1(g) not done: written answer answer_1g" in out
    assert "MB" in out
    with zipfile.ZipFile(zip_path(home)) as zf:
        assert sorted(zf.namelist()) == ["Summarization.ipynb", "checkpoints/summarizer.pt", "kernel_attention.py"]


def test_abstract_methods_and_unsupported_cases_are_not_stubs():
    assert submission.stub_functions(MODULE) == ["positional_shift_matrix"]


def refused(home: Path, capsys, *extra: str) -> str:
    assert submit(home, *extra) == 1
    captured = capsys.readouterr()
    assert "refused, nothing written" in captured.err
    assert not zip_path(home).exists()
    return captured.err


def test_submission_refuses_a_fast_run(home, capsys):
    nb = nbformat.read(home / "Summarization.ipynb", as_version=4)
    nb.metadata["hw8"]["fast"] = True
    nbformat.write(nb, home / "Summarization.ipynb")
    assert "Summarization.ipynb was run in fast mode (HW8_FAST=1)" in refused(home, capsys)
    assert submit(home, "--allow-fast") == 0                            # course staff's end-to-end tests


def test_submission_refuses_an_unrun_notebook(home, capsys):
    nb = nbformat.read(home / "Summarization.ipynb", as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nbformat.write(nb, home / "Summarization.ipynb")
    assert "Summarization.ipynb has no outputs" in refused(home, capsys)


def test_submission_refuses_a_required_notebook_stub(home, capsys):
    nb = nbformat.read(home / "Summarization.ipynb", as_version=4)
    nb.cells[0].source = "# YOUR CODE HERE\nraise NotImplementedError()"
    nbformat.write(nb, home / "Summarization.ipynb")
    err = refused(home, capsys)
    assert "Summarization.ipynb cell q1a_code (part 1(a)) still raises NotImplementedError" in err
    assert "q1c_code" not in err                                        # optional: listed, not refused


def test_submission_refuses_a_required_module_stub(home, capsys):
    source = MODULE.replace("        return x", "        raise NotImplementedError('write your code here')")
    (home / "kernel_attention.py").write_text(source)
    err = refused(home, capsys)
    assert "kernel_attention.py: RandomFourierFeatures.forward (part 3(a)ii) still raises NotImplementedError" in err
    assert "FeatureMap.forward" not in err.replace("RandomFourierFeatures.forward", "")


def test_submission_refuses_a_missing_checkpoint_unless_staff_take_the_fast_one(home, capsys):
    (home / "checkpoints" / "summarizer.pt").unlink()
    assert "checkpoints/summarizer.pt not found" in refused(home, capsys)
    fast = home / "build" / "checkpoints" / "summarizer_fast.pt"
    fast.parent.mkdir(parents=True)
    fast.write_bytes(b"fast")
    assert "checkpoints/summarizer.pt not found" in refused(home, capsys)   # students: never the fast one
    assert submit(home, "--allow-fast") == 0
    with zipfile.ZipFile(zip_path(home)) as zf:
        assert zf.read("checkpoints/summarizer.pt") == b"fast"


def test_submission_refuses_an_invalid_notebook(home, capsys):
    (home / "Summarization.ipynb").write_text(json.dumps({"nbformat": 4}))
    assert "Summarization.ipynb is not a valid notebook" in refused(home, capsys)


def test_a_full_run_stands_in_for_a_fast_one_unless_the_same_mode_is_asked(tmp_path, monkeypatch):
    from grading import executed
    source = tmp_path / "One.ipynb"
    code = nbformat.v4.new_code_cell("1 + 1", execution_count=1)
    nbformat.write(nbformat.v4.new_notebook(cells=[code]), source)
    executed_dir = tmp_path / "build"
    executed_dir.mkdir()
    full = nbformat.v4.new_notebook(cells=[code], metadata={"hw8": {"fast": False}})
    nbformat.write(full, executed_dir / "One.ipynb")                     # a fresh full run, written after the source
    os.utime(executed_dir / "One.ipynb", (source.stat().st_mtime + 10,) * 2)
    ran = []
    monkeypatch.setattr(executed, "run_notebook",
                        lambda src, dest, fast, timeout, allow_errors: ran.append(dest) or (full, None))
    monkeypatch.setattr(executed, "sign", lambda path: None)
    executed.executed_notebook(source, executed_dir, fast=True, timeout=10)
    assert ran == []                                                      # reused the full copy
    executed.executed_notebook(source, executed_dir, fast=True, timeout=10, same_mode=True)
    assert ran == [executed_dir / "One.fast.ipynb"]                      # executed in fast mode instead


def test_a_kernel_that_dies_before_the_first_cell_is_started_again(tmp_path, monkeypatch, capsys):
    """Two kernels starting at once can race for a port (ZMQError: Address already in use) and one dies before
    kernel_info: run_notebook starts a fresh kernel instead of failing the notebook; a kernel that dies later is
    reported as before."""
    from homework import notebooks

    real_execute, calls = notebooks.EchoingClient.execute, []

    def execute(self, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real_execute(self, **kwargs)

    monkeypatch.setattr(notebooks.EchoingClient, "execute", execute)
    path = write(tmp_path / "Demo.ipynb", [nbformat.v4.new_code_cell("print(6 * 7)")])
    nb, run = notebooks.run_notebook(path, path, fast=True, echo=False)
    assert len(calls) == 2 and not run.failures and "42" in nb.cells[0].outputs[0]["text"]
    assert "the kernel did not start" in capsys.readouterr().err


def test_kernels_wait_passively_unless_the_user_chose(tmp_path, monkeypatch):
    """make run's kernels get OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep: a busy core no longer makes torch's
    other thread spin), a value already set is passed on unchanged, and HW8_FAST follows `fast`."""
    from homework import notebooks

    path = write(tmp_path / "Env.ipynb", [nbformat.v4.new_code_cell(
        "import os\nprint(os.environ.get('OMP_WAIT_POLICY'), os.environ['HW8_FAST'])")])
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    nb, _ = notebooks.run_notebook(path, path, fast=True, echo=False)
    assert nb.cells[0].outputs[0]["text"] == "PASSIVE 1\n"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    nb, _ = notebooks.run_notebook(path, path, fast=False, echo=False)
    assert nb.cells[0].outputs[0]["text"] == "ACTIVE 0\n"
