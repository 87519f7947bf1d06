"""`make run`'s preflight (homework/preflight.py): the visible checks of the kernel_attention.py functions that
Summarization.ipynb trains with, run before it; a failure names the function and keeps Summarization.ipynb from
running (homework/run_notebooks.py). Notebooks are never executed here (run_notebook is replaced by a recorder).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]

from grading.strip import strip_solutions  # noqa: E402
from homework import run_notebooks  # noqa: E402
from homework.notebooks import NotebookRun  # noqa: E402
from homework.preflight import CHECKS, FUNCTIONS, PreflightResult, run_preflight  # noqa: E402

# What the visible tests need: the same files the student release carries for them.
NEEDED = ("kernel_attention.py", "tests/test_kernel_attention.py", "tests/support.py", "pyproject.toml")
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


def test_passes_on_the_instructor_solution_and_covers_every_function_summarization_uses():
    assert {c.function for c in CHECKS} >= {"causal_mask", "combine_masks", "scaled_dot_product_attention",
                                             "split_heads", "MultiHeadAttention", "sinusoidal_positional_encoding",
                                             "PositionalEncoding"}
    assert not any("shift_matrix" in c.test for c in CHECKS)      # optional 1(c): not needed to train
    result = run_preflight(REPO)
    assert result.passed, result.message
    assert result.checks == 13 and result.failures == [] and result.failed_functions == []
    assert re.fullmatch(r"preflight: 13 checks of kernel_attention\.py passed \(\d+\.\d s\)", result.message)
    assert result.seconds < 120


def test_a_wrong_scaled_dot_product_attention_is_named_alone(no_scaling):
    _, result = no_scaling
    assert not result.passed
    assert result.failed_functions == ["scaled_dot_product_attention"]
    assert result.reason == "preflight failed: scaled_dot_product_attention"
    assert {f.function for f in result.failures} == {"scaled_dot_product_attention", "MultiHeadAttention"}
    assert result.also_failing == {"MultiHeadAttention": ["scaled_dot_product_attention"]}
    assert "  scaled_dot_product_attention: test_sdpa_matches_torch_without_and_with_mask: AssertionError: " \
           "Tensor-likes are not close!" in result.message
    assert "not written yet" not in result.message


def test_a_merge_heads_without_the_transpose_is_named_not_split_heads(tmp_path):
    result = run_preflight(copy_with(tmp_path, MERGE_WITHOUT_TRANSPOSE))
    assert not result.passed
    assert result.failed_functions == ["merge_heads"]
    assert "  merge_heads: test_split_and_merge_heads: AssertionError" in result.message
    assert "split_heads:" not in result.message


def test_the_release_stubs_are_all_named(tmp_path):
    """The student release's kernel_attention.py (every solution region a NotImplementedError stub): each function
    Summarization.ipynb needs is named, merge_heads too although split_heads fails before any test reaches it."""
    result = run_preflight(copy_with(tmp_path, lambda source: strip_solutions(source, "kernel_attention.py")))
    assert not result.passed
    assert result.failed_functions == ["scaled_dot_product_attention", "split_heads", "merge_heads",
                                       "sinusoidal_positional_encoding"]
    assert result.also_failing == {}          # their tests fail inside split_heads / the encoding: named by that
    assert {f.function for f in result.failures if f.test.startswith("test_multi_head")} == {"split_heads"}
    assert re.search(r"  split_heads: test_split_and_merge_heads: NotImplementedError: split_heads", result.message)
    assert "  merge_heads: not written yet (raises NotImplementedError)" in result.message
    assert all(name in FUNCTIONS for name in result.failed_functions)


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
    assert "\nSummarization.ipynb: not run: preflight failed: scaled_dot_product_attention\n" in out
    assert "FAILED: Summarization.ipynb not run (preflight failed: scaled_dot_product_attention). Fix" in out
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
        return PreflightResult(True, 3.1, checks=13, message="preflight: 13 checks of kernel_attention.py passed")

    monkeypatch.setattr(run_notebooks, "run_preflight", passing)
    assert run_notebooks.main(["--in-place", "--notebooks", str(kernel), str(summarization)]) == 0
    assert checked == [tmp_path.resolve()]                           # the kernel_attention.py beside the notebook
    assert executed == ["Kernel_Attention.ipynb", "Summarization.ipynb"]
    out = capsys.readouterr().out
    assert out.startswith("preflight: 13 checks of kernel_attention.py passed\n")
    assert "not run" not in out and "OK: every required part ran." in out
