"""The parts of HW8 as the homework states them: which are optional, their points, and where each one lives.

One table serves `make run` (a failing cell of an optional part is reported as skipped, not as a failure),
`make submission` (a stub left in an optional part is listed, not refused) and the READMEs' point tables.
Cells are named by their nbgrader grade_id; functions by their name in kernel_attention.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    name: str                          # as the homework numbers it: "1(c)"
    notebook: str
    optional: bool
    code_points: int = 0               # autograded: the trusted checks of this part (grading/cases_hw8.py)
    written_points: int = 0            # graded by hand (answer cells)
    cells: tuple[str, ...] = ()        # grade_ids of the notebook cells that belong to this part
    functions: tuple[str, ...] = ()    # kernel_attention.py functions written for this part


SUMMARIZATION, VISUALIZING, KERNEL = "Summarization.ipynb", "Visualizing_BERT.ipynb", "Kernel_Attention.ipynb"
NOTEBOOKS = (SUMMARIZATION, VISUALIZING, KERNEL)

PARTS = (
    Part("1(a)", SUMMARIZATION, False, 2, 2, ("q1a_code", "q1a_plot", "test_1a", "answer_1a")),
    Part("1(b)", SUMMARIZATION, False, 0, 2, ("q1b_plot", "answer_1b")),
    Part("1(c)", SUMMARIZATION, True, 2, 2, ("q1c_code", "q1c_apply", "test_1c", "answer_1c"),
         ("positional_shift_matrix",)),
    Part("1(d)", SUMMARIZATION, False, 5, 2, ("q1d", "answer_1d"),
         ("split_heads", "merge_heads", "MultiHeadAttention", "sinusoidal_positional_encoding")),
    Part("1 model", SUMMARIZATION, False, 5, 0, ("train", "test_checkpoint")),
    Part("1(e)", SUMMARIZATION, False, 0, 2, ("q1e", "answer_1e")),
    Part("1(f)", SUMMARIZATION, False, 2, 2, ("q1f_code", "q1f_show", "test_1f", "answer_1f")),
    Part("1(g)", SUMMARIZATION, True, 0, 2, ("q1g_sweep", "q1g_plots", "answer_1g")),
    Part("2(a)", VISUALIZING, False, 0, 2, ("answer_2a_i", "answer_2a_ii")),
    Part("2(b)", VISUALIZING, False, 0, 4, ("answer_2b_i", "answer_2b_ii", "answer_2b_iii", "answer_2b_iv")),
    Part("2(c)", VISUALIZING, False, 0, 2, ("answer_2c_i", "answer_2c_ii")),
    Part("2(d)", VISUALIZING, False, 0, 2, ("answer_2d_i", "answer_2d_ii")),
    Part("3(a)i", KERNEL, False, 7, 2, ("test_scaled_dot_product_attention", "answer_3a_i"),
         ("scaled_dot_product_attention",)),
    Part("3(a)ii", KERNEL, False, 4, 3, ("test_random_fourier_features", "answer_3a_ii"),
         ("RandomFourierFeatures.forward", "SoftmaxRandomFourierFeatures.forward")),
    Part("3(a)iii", KERNEL, False, 9, 3,
         ("test_favor_positive_features", "test_linear_attention", "run_experiment", "answer_3a_iii"),
         ("FavorPositiveFeatures.forward", "linear_attention")),
    Part("3(b)", KERNEL, True, 4, 3, ("test_causal_linear_attention", "answer_3b"),
         ("causal_linear_attention_reference", "causal_linear_attention")),
)


def part_of_cell(grade_id: str | None) -> Part | None:
    """The part a notebook cell (by nbgrader grade_id) belongs to, or None."""
    return next((p for p in PARTS if grade_id in p.cells), None) if grade_id else None


def part_of_function(name: str) -> Part | None:
    """The part a kernel_attention.py function ('linear_attention', 'Class.method' or 'method') belongs to."""
    for part in PARTS:
        if any(name == f or f.endswith("." + name) or name.endswith("." + f) for f in part.functions):
            return part
    return None


def optional_parts() -> list[Part]:
    return [p for p in PARTS if p.optional]


def points(optional: bool) -> tuple[int, int]:
    """(autograded, written) points of the required (optional=False) or the optional parts."""
    chosen = [p for p in PARTS if p.optional == optional]
    return sum(p.code_points for p in chosen), sum(p.written_points for p in chosen)


def points_table() -> str:
    """The Markdown table of parts and points that both READMEs show (a test keeps them equal to this)."""
    rows = ["| part | notebook | autograded | written | |", "|---|---|---:|---:|---|"]
    for p in PARTS:
        rows.append(f"| {p.name} | {p.notebook} | {p.code_points or ''} | {p.written_points or ''} | "
                    f"{'**optional**' if p.optional else ''} |")
    (req_code, req_written), (opt_code, opt_written) = points(False), points(True)
    rows.append(f"| **required** | | **{req_code}** | **{req_written}** | |")
    rows.append(f"| **optional (bonus)** | | {opt_code} | {opt_written} | 1(c), 1(g), 3(b) |")
    return "\n".join(rows)
