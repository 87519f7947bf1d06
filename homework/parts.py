"""The parts of HW8 as the homework states them: which are optional and where each one lives.

One table serves `make run` (a failing cell of an optional part is reported as skipped, not as a failure),
`make submission` (a stub left in an optional part is listed, not refused) and the grading (each trusted check
belongs to the part of its cell or function). Cells are named by their nbgrader grade_id; functions by their name in
kernel_attention.py. Points live elsewhere, each in one place: a check's in the trusted checks, a written answer's in
its cell's nbgrader metadata; the instructor's tools write every copy of them (test cells, tables).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    name: str                          # as the homework numbers it: "1(c)"
    notebook: str
    optional: bool
    cells: tuple[str, ...] = ()        # grade_ids of the notebook cells that belong to this part
    functions: tuple[str, ...] = ()    # kernel_attention.py functions written for this part


SUMMARIZATION, VISUALIZING, KERNEL = "Summarization.ipynb", "Visualizing_BERT.ipynb", "Kernel_Attention.ipynb"
NOTEBOOKS = (SUMMARIZATION, VISUALIZING, KERNEL)

PARTS = (
    Part("1(a)", SUMMARIZATION, False, ("q1a_code", "q1a_plot", "test_1a", "answer_1a")),
    Part("1(b)", SUMMARIZATION, False, ("q1b_plot", "answer_1b")),
    Part("1(c)", SUMMARIZATION, True, ("q1c_code", "q1c_apply", "test_1c", "answer_1c"),
         ("positional_shift_matrix",)),
    Part("1(d)", SUMMARIZATION, False, ("q1d", "answer_1d"),
         ("split_heads", "merge_heads", "MultiHeadAttention", "sinusoidal_positional_encoding")),
    Part("1 model", SUMMARIZATION, False, ("train", "test_checkpoint")),
    Part("1(e)", SUMMARIZATION, False, ("q1e", "answer_1e")),
    Part("1(f)", SUMMARIZATION, False, ("q1f_code", "q1f_show", "test_1f", "answer_1f")),
    Part("1(g)", SUMMARIZATION, True, ("q1g_sweep", "q1g_plots", "answer_1g")),
    Part("2(a)", VISUALIZING, False, ("answer_2a_i", "answer_2a_ii")),
    Part("2(b)", VISUALIZING, False, ("answer_2b_i", "answer_2b_ii", "answer_2b_iii", "answer_2b_iv")),
    Part("2(c)", VISUALIZING, False, ("answer_2c_i", "answer_2c_ii")),
    Part("2(d)", VISUALIZING, False, ("answer_2d_i", "answer_2d_ii")),
    Part("3(a)i", KERNEL, False, ("test_scaled_dot_product_attention", "answer_3a_i"),
         ("scaled_dot_product_attention",)),
    Part("3(a)ii", KERNEL, False, ("test_random_fourier_features", "answer_3a_ii"),
         ("RandomFourierFeatures.forward", "SoftmaxRandomFourierFeatures.forward")),
    Part("3(a)iii", KERNEL, False,
         ("test_favor_positive_features", "test_linear_attention", "run_experiment", "answer_3a_iii"),
         ("FavorPositiveFeatures.forward", "linear_attention", "PerformerAttention")),
    Part("3(b)", KERNEL, True, ("test_causal_linear_attention", "answer_3b"),
         ("causal_linear_attention_reference", "causal_linear_attention")),
)


def nbgrader_meta(cell) -> dict:
    """A notebook cell's nbgrader metadata ({} for a cell without any)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def cell_grade_id(cell) -> str | None:
    """A notebook cell's nbgrader grade_id (None for a cell without one)."""
    return nbgrader_meta(cell).get("grade_id")


def part_of_cell(grade_id: str | None) -> Part | None:
    """The part a notebook cell (by nbgrader grade_id) belongs to, or None."""
    return next((p for p in PARTS if grade_id in p.cells), None) if grade_id else None


def part_of_function(name: str) -> Part | None:
    """The part a kernel_attention.py function ('linear_attention', 'Class.method', 'method' or 'Class') belongs to."""
    for part in PARTS:
        if any(name in (f, f.split(".")[0]) or f.endswith("." + name) or name.endswith("." + f)
               for f in part.functions):
            return part
    return None


def optional_parts() -> list[Part]:
    return [p for p in PARTS if p.optional]
