"""`make run`'s preflight (homework/preflight.py): the visible checks of the kernel_attention.py functions that
Summarization.ipynb trains with, run before it; a failure names the function and keeps Summarization.ipynb from
running (homework/run_notebooks.py). Notebooks are never executed here (run_notebook is replaced by a recorder).
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]

from grading.strip import strip_solutions  # noqa: E402
from homework import run_notebooks  # noqa: E402
from homework.notebooks import NotebookRun  # noqa: E402
from homework.preflight import MARKER, TEST_FILE, PreflightResult, run_preflight  # noqa: E402

# What the visible tests need: the same files the student release carries for them.
NEEDED = ("kernel_attention.py", "tests/test_kernel_attention.py", "tests/support.py", "pyproject.toml",
          "homework/__init__.py", "homework/preflight.py")
NO_SCALING = ("scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])", "scores = q @ k.transpose(-2, -1)")
MERGE_WITHOUT_TRANSPOSE = ("return x.transpose(1, 2).reshape(batch, length, heads * head_dim)",
                           "return x.reshape(batch, length, heads * head_dim)")


def copy_with(folder: Path, edit=None) -> Path:
    """The files NEEDED copied into `folder`, kernel_attention.py changed by `edit` (a (old, new) pair or a
    function of the source)."""
    for rel in NEEDED:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, folder / rel)
    module = folder / "kernel_attention.py"
    source = module.read_text()
    if isinstance(edit, tuple):
        assert source.count(edit[0]) == 1, f"the solution changed: update this test's edit {edit[0]!r}"
        source = source.replace(*edit)
    elif edit is not None:
        source = edit(source)
    module.write_text(source)
    return folder


@pytest.fixture(scope="module")
def no_scaling(tmp_path_factory):
    """A copy whose scaled_dot_product_attention forgets the 1/sqrt(D) scaling, and its preflight."""
    folder = copy_with(tmp_path_factory.mktemp("no_scaling"), NO_SCALING)
    return folder, run_preflight(folder)


def marked_functions() -> dict[str, list[str]]:
    """{test function: the functions its preflight marker names} of the visible test file, read from its source."""
    tree = ast.parse((REPO / TEST_FILE).read_text())
    return {node.name: [arg.value for arg in decorator.args]
            for node in tree.body if isinstance(node, ast.FunctionDef)
            for decorator in node.decorator_list
            if isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == f"pytest.mark.{MARKER}"}


def test_passes_on_the_instructor_solution_and_covers_every_function_summarization_uses():
    marked = marked_functions()
    assert {f for functions in marked.values() for f in functions} == {
        "causal_mask", "padding_mask", "combine_masks", "scaled_dot_product_attention", "split_heads", "merge_heads",
        "MultiHeadAttention", "sinusoidal_positional_encoding", "PositionalEncoding"}
    assert not any("shift" in test for test in marked)              # optional 1(c): not needed to train
    result = run_preflight(REPO)
    assert result.passed, result.message
    assert result.checks == 14 and result.failures == [] and result.failed_functions == []
    assert re.fullmatch(r"preflight: 14 checks of kernel_attention\.py passed \(\d+\.\d s\)", result.message)


def test_a_wrong_scaled_dot_product_attention_is_named_first(no_scaling):
    """MultiHeadAttention fails too (it uses scaled_dot_product_attention): named after it, in test-file order."""
    _, result = no_scaling
    assert not result.passed
    assert result.failed_functions == ["scaled_dot_product_attention", "MultiHeadAttention"]
    assert result.reason == "preflight failed: scaled_dot_product_attention, MultiHeadAttention"
    assert "  scaled_dot_product_attention: test_sdpa_matches_torch_without_and_with_mask: AssertionError: " \
           "Tensor-likes are not close!" in result.message
    assert "  tests/test_kernel_attention.py:" in result.message          # pytest's own line for each failure
    assert "not written yet" not in result.message


def test_a_merge_heads_without_the_transpose_is_named_not_split_heads(tmp_path):
    result = run_preflight(copy_with(tmp_path, MERGE_WITHOUT_TRANSPOSE))
    assert not result.passed
    assert result.failed_functions[0] == "merge_heads" and "split_heads" not in result.failed_functions
    assert "  merge_heads: test_merge_heads_puts_head_h_at_columns_h: AssertionError" in result.message


def test_the_release_stubs_are_all_named(tmp_path):
    """The student release's kernel_attention.py (every solution region a NotImplementedError stub): each function
    Summarization.ipynb needs is named, each as not written yet."""
    result = run_preflight(copy_with(tmp_path, lambda source: strip_solutions(source, "kernel_attention.py")))
    assert not result.passed
    assert result.failed_functions[:4] == ["scaled_dot_product_attention", "split_heads", "merge_heads",
                                           "MultiHeadAttention"]
    assert {"sinusoidal_positional_encoding", "PositionalEncoding"} <= set(result.failed_functions)
    assert re.search(r"  split_heads \(not written yet\): test_split_heads: NotImplementedError", result.message)
    assert "  merge_heads (not written yet): test_merge_heads_puts_head_h_at_columns_h" in result.message


def test_a_module_that_does_not_import_fails_without_naming_a_function(tmp_path):
    result = run_preflight(copy_with(tmp_path, lambda source: source + "\ndef broken(:\n"))
    assert not result.passed and result.failed_functions == []
    assert result.reason == "preflight failed: the checks could not run"
    assert "SyntaxError" in result.message


def fake_notebooks(folder: Path) -> tuple[Path, Path]:
    paths = folder / "Summarization.ipynb", folder / "Kernel_Attention.ipynb"
    for path in paths:
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), path)
    return paths


@pytest.fixture
def executed(monkeypatch):
    """The notebooks run_notebooks would execute, by name (none is executed)."""
    calls = []

    def record(source, destination, fast, timeout=None, **kw):
        calls.append(source.name)
        return None, NotebookRun(source.name, destination, fast, code_cells=1)

    monkeypatch.setattr(run_notebooks, "run_notebook", record)
    return calls


def test_make_run_skips_summarization_when_the_preflight_fails(no_scaling, executed, capsys):
    folder, _ = no_scaling
    summarization, kernel = fake_notebooks(folder)
    status = run_notebooks.main(["--in-place", "--notebooks", str(summarization), str(kernel)])
    out = capsys.readouterr().out
    assert status == 1
    assert executed == ["Kernel_Attention.ipynb"]                     # the other notebook still runs
    assert "  scaled_dot_product_attention: test_sdpa_matches_torch" in out
    assert "To run it anyway: python -m homework.run_notebooks --in-place --no-preflight" in out
    reason = "preflight failed: scaled_dot_product_attention, MultiHeadAttention"
    assert f"\nSummarization.ipynb: not run: {reason}\n" in out
    assert f"FAILED: Summarization.ipynb not run ({reason}). Fix" in out
    assert out.index("=== summary ===") < out.index("Summarization.ipynb: not run")


def test_no_preflight_and_a_run_without_summarization_check_nothing(no_scaling, executed, monkeypatch, capsys):
    folder, _ = no_scaling
    summarization, kernel = fake_notebooks(folder)

    def forbidden(repo):
        raise AssertionError("the preflight ran")

    monkeypatch.setattr(run_notebooks, "run_preflight", forbidden)
    assert run_notebooks.main(["--in-place", "--no-preflight", "--notebooks", str(summarization), str(kernel)]) == 0
    assert executed == ["Summarization.ipynb", "Kernel_Attention.ipynb"]
    executed.clear()
    assert run_notebooks.main(["--in-place", "--notebooks", str(kernel)]) == 0
    assert executed == ["Kernel_Attention.ipynb"]
    assert "preflight" not in capsys.readouterr().out


def test_a_passing_preflight_prints_its_line_and_runs_summarization(tmp_path, executed, monkeypatch, capsys):
    summarization, kernel = fake_notebooks(tmp_path)
    checked = []

    def passing(repo):
        checked.append(repo)
        return PreflightResult(True, 3.1, checks=14, message="preflight: 14 checks of kernel_attention.py passed")

    monkeypatch.setattr(run_notebooks, "run_preflight", passing)
    assert run_notebooks.main(["--in-place", "--notebooks", str(kernel), str(summarization)]) == 0
    assert checked == [tmp_path.resolve()]                           # the kernel_attention.py beside the notebook
    assert executed == ["Kernel_Attention.ipynb", "Summarization.ipynb"]
    out = capsys.readouterr().out
    assert out.startswith("preflight: 14 checks of kernel_attention.py passed\n")
    assert "not run" not in out and "OK: every required part ran." in out
