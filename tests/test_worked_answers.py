"""Every number a worked answer quotes is printed by a cell of the executed notebook (Kernel_Attention, Summarization,
Visualizing_BERT).

The worked answers (markdown cells whose nbgrader grade_id starts with "answer_") quote measured numbers. A quoted
number that no cell prints cannot be checked in the solution PDF, and goes stale unnoticed when the code changes.
Measured numbers are the ones written with a decimal point (0.0051, -0.47, 10.8) and integers of three or more digits
(209, 4096); smaller integers are notation (exponents, 2 D_random, 5 seeds). Each is looked for as a whole number in
the printed text, the plain-text results and the code of the code cells (a setting stated in code, `top_p=0.9`, is in
the printout too) (0.5 does not match 0.50, 1.2 does not match 1.26; a
sign is not compared, slopes are printed with theirs). The year of a citation is not a measured number: "Clark et al.
2019", "(Choromanski et al., 2021)", "Vig & Belinkov 2019", "Vig and Belinkov (2019)" are skipped (CITATION).

The fast-mode copy (build/notebooks/Kernel_Attention.fast.ipynb, which tests/test_kernel_attention_notebook.py
writes; executed here if missing or stale) must print every quoted number: helper.FAST_CONFIG is a corner of the full
grid, and the answers quote settings of that corner only. The full-mode copy of `make run`
(build/notebooks/Kernel_Attention.ipynb) is checked too when it is fresh.

Summarization.ipynb's answers quote the full run (the PDF's) and, where the two differ, the fast run beside it
("[18, 23, 32, 39] of 39 in the full run, [22, 36, 43, 48] of 48 with HW8_FAST=1"): each quoted number must be printed
by the fresh full-mode copy of `make run` or by the fast-mode copy (checked only when a fresh full run exists: it
trains for ~10 minutes).

Visualizing_BERT.ipynb's answers quote the offline models (all-MiniLM-L6-v2, SmolLM2-135M-Instruct; what bert-base /
GPT-2 would show is written as expected from the literature, without measured numbers). Its fast and full runs print
the same numbers (the notebook reads no HW8_FAST: the same sentences, the same models), so the fast-mode copy
(build/notebooks/Visualizing_BERT.fast.ipynb; executed here if missing or stale, ~5 minutes) must print every quoted
number; run with HF_HUB_OFFLINE=1 (as `make test` does), since with network the notebook loads the online models.
Check any executed copy by hand:

    .venv/bin/python tests/test_worked_answers.py path/to/executed.ipynb [path/to/other_mode.ipynb]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))    # run as a script (see above): the repository's modules
from grading.executed import executed_notebook, reusable  # noqa: E402

NOTEBOOK = ROOT / "Kernel_Attention.ipynb"
SUMMARIZATION = ROOT / "Summarization.ipynb"
NOTEBOOK_VB = ROOT / "Visualizing_BERT.ipynb"
EXECUTED_DIR = ROOT / "build" / "notebooks"
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\.?\d)(?!\w)")
# a citation's year: "Clark et al. 2019", "Choromanski et al., 2021", "Vig & Belinkov 2019", "Vig and Belinkov (2019)"
CITATION = re.compile(r"(?:et al\.|[A-Z][\w-]+ (?:&|and) [A-Z][\w-]+),? \(?(?:19|20)\d\d")


def answer_cells(notebook: nbformat.NotebookNode) -> dict[str, str]:
    """{grade_id: source} of the worked answers."""
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in notebook.cells
            if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("answer_")}


def quoted_numbers(text: str) -> list[str]:
    """The measured numbers a text quotes, in order, each once: decimals and integers of three or more digits (the
    year of a citation, "et al., 2021" or "Vig & Belinkov 2019", is not one)."""
    found = [n for n in NUMBER.findall(CITATION.sub("", text)) if "." in n or len(n) >= 3]
    return list(dict.fromkeys(found))


def printed_text(notebook: nbformat.NotebookNode) -> str:
    """Everything the code cells show in the printout: their code (a setting such as `temperature=0.8` is stated
    there), streams and the plain-text form of results and displays."""
    parts = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "stream":
                parts.append(output.get("text", ""))
            elif "text/plain" in output.get("data", {}):
                parts.append(output["data"]["text/plain"])
    return "\n".join(parts)


def is_printed(number: str, printed: str) -> bool:
    return re.search(rf"(?<![\d.]){re.escape(number)}(?!\.?\d)", printed) is not None


def unprinted_numbers(executed: nbformat.NotebookNode, answers: dict[str, str],
                      *other_modes: nbformat.NotebookNode) -> dict[str, list[str]]:
    """{grade_id: [quoted numbers no cell of `executed` (or of `other_modes`) prints]} for the answers that have any."""
    printed = "\n".join(printed_text(nb) for nb in (executed, *other_modes))
    missing = {g: [n for n in quoted_numbers(text) if not is_printed(n, printed)] for g, text in answers.items()}
    return {g: numbers for g, numbers in missing.items() if numbers}


def test_the_extractor_reads_numbers_as_written():
    text = (r"slopes $-0.47$ to $-0.53$; 0.0051 ($D = 16$) to 209 at $s = 1$, 16 times, $10^4$, 4096 "
            "(Choromanski et al., 2021; Clark et al. 2019; Vig & Belinkov 2019; Vig and Belinkov (2019)). "
            "And 2081, heads 5 and 2019.")
    assert quoted_numbers(text) == ["0.47", "0.53", "0.0051", "209", "4096", "2081", "2019"]
    printed = "favor+  -0.50  0.0051 1.26\nscales=(0.25, 0.5, 1.0) 2081"
    assert [is_printed(n, printed) for n in ("0.50", "0.5", "0.0051", "0.005", "1.2", "1.26", "2081", "208")] == \
        [True, True, True, False, False, True, True, False]


def test_the_3a_iii_answer_quotes_measured_numbers():
    answers = answer_cells(nbformat.read(NOTEBOOK, as_version=4))
    assert set(answers) == {"answer_3a_i", "answer_3a_ii", "answer_3a_iii", "answer_3b"}
    assert len(quoted_numbers(answers["answer_3a_iii"])) >= 30


def test_every_quoted_number_is_printed_by_the_fast_run():
    executed = executed_notebook(NOTEBOOK, EXECUTED_DIR, fast=True, timeout=600)
    answers = answer_cells(nbformat.read(NOTEBOOK, as_version=4))
    assert unprinted_numbers(executed, answers) == {}


def test_every_quoted_number_is_printed_by_the_full_run():
    full = EXECUTED_DIR / NOTEBOOK.name
    if not reusable(full, NOTEBOOK, fast=False):
        pytest.skip(f"no fresh full-mode run in {full} (`make run`)")
    answers = answer_cells(nbformat.read(NOTEBOOK, as_version=4))
    assert unprinted_numbers(nbformat.read(full, as_version=4), answers) == {}


def test_the_summarization_answers_quote_measured_numbers():
    answers = answer_cells(nbformat.read(SUMMARIZATION, as_version=4))
    assert {"answer_1e", "answer_1g"} <= set(answers)
    assert {"18", "23", "32", "39", "4.673"} <= {n for text in answers.values() for n in NUMBER.findall(text)}


def test_every_summarization_number_is_printed_by_the_full_or_the_fast_run():
    full = EXECUTED_DIR / SUMMARIZATION.name
    if not reusable(full, SUMMARIZATION, fast=False):
        pytest.skip(f"no fresh full-mode run in {full} (`make run`)")
    fast = executed_notebook(SUMMARIZATION, EXECUTED_DIR, fast=True, timeout=1800)
    answers = answer_cells(nbformat.read(SUMMARIZATION, as_version=4))
    assert unprinted_numbers(nbformat.read(full, as_version=4), answers, fast) == {}


VB_ANSWERS = {f"answer_2{part}" for part in ("a_i", "a_ii", "b_i", "b_ii", "b_iii", "b_iv", "c_i", "c_ii", "d_i",
                                             "d_ii")}


def test_the_visualizing_bert_answers_quote_measured_numbers():
    answers = answer_cells(nbformat.read(NOTEBOOK_VB, as_version=4))
    assert set(answers) == VB_ANSWERS
    quoted = {n for text in answers.values() for n in quoted_numbers(text)}
    assert len(quoted) >= 50 and {"0.807", "0.060", "0.033", "1.83", "2.547", "0.9995"} <= quoted
    assert "2019" not in quoted                                     # Clark et al. 2019, Vig & Belinkov 2019
    assert sum(bool(quoted_numbers(answers[g])) for g in VB_ANSWERS) >= 9      # all but 2(d)ii (a derivation)


def test_every_visualizing_bert_number_is_printed_by_the_fast_run():
    executed = executed_notebook(NOTEBOOK_VB, EXECUTED_DIR, fast=True, timeout=1200)
    printed = printed_text(executed)
    assert "Using all-MiniLM-L6-v2" in printed and "Using SmolLM2-135M-Instruct" in printed, \
        "the answers quote the offline models: run with HF_HUB_OFFLINE=1"
    answers = answer_cells(nbformat.read(NOTEBOOK_VB, as_version=4))
    assert unprinted_numbers(executed, answers) == {}


if __name__ == "__main__":
    copies = sys.argv[1:] or [str(EXECUTED_DIR / NOTEBOOK.name)]
    executed = [nbformat.read(copy, as_version=4) for copy in copies]
    source = ROOT / (Path(copies[0]).name.split(".")[0] + ".ipynb")        # Name.fast.ipynb -> Name.ipynb
    missing = unprinted_numbers(executed[0], answer_cells(nbformat.read(source, as_version=4)), *executed[1:])
    print(f"{' + '.join(copies)}: {'every quoted number is printed' if not missing else f'not printed: {missing}'}")
    sys.exit(bool(missing))
