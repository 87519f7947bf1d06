"""Every name a notebook cell reads is defined by an earlier cell or by the cell itself, in the order `make run` (and a
student running the release top to bottom) executes them: a module imported first in 1(c) is a NameError in 1(a).

The instructor notebooks are checked (a name that a solution region defines, such as SUM_AXIS, is defined there too);
a module imported only inside a solution region counts for that cell alone, since the release drops the import. The
cells where students write code also find `math` and `torch` (the formulas they implement call for sqrt, exp, cos,
sin) imported before their solution region, by an earlier cell or by the cell's own code outside it.

Each autograded test cell also names, in quotes, the trusted checks that decide its points (grading/cases_hw8.py), so
its text says what is graded.
"""

from __future__ import annotations

import builtins
import re
import symtable
from pathlib import Path

import nbformat
import pytest
from nbgrader.preprocessors import ClearSolutions

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("Summarization.ipynb", "Visualizing_BERT.ipynb", "Kernel_Attention.ipynb")
IPYTHON = {"display", "get_ipython", "In", "Out", "exit", "quit"}    # names IPython puts in every kernel's namespace
STUDENT_TOOLKIT = ("math", "torch")
MAGIC = re.compile(r"^\s*[%!]")


def _python(source: str) -> str:
    """The cell's source with IPython magics and shell lines blanked (they bind no Python name)."""
    return "\n".join("" if MAGIC.match(line) else line for line in source.split("\n"))


def _globals(table: symtable.SymbolTable) -> set[str]:
    """Global names that a function, class or comprehension inside the cell reads."""
    used = set()
    for child in table.get_children():
        used |= {s.get_name() for s in child.get_symbols() if s.is_global() and s.is_referenced()}
        used |= _globals(child)
    return used


def names(source: str, where: str) -> tuple[set[str], set[str], set[str]]:
    """(bound, imported, used): the names a cell binds at module level, those of them it imports, and the global
    names it reads that it does not bind itself."""
    table = symtable.symtable(_python(source), where, "exec")
    symbols = table.get_symbols()
    bound = {s.get_name() for s in symbols if s.is_assigned() or s.is_imported()}
    imported = {s.get_name() for s in symbols if s.is_imported()}
    used = {s.get_name() for s in symbols if s.is_referenced()} | _globals(table)
    return bound, imported, used - bound - set(dir(builtins)) - IPYTHON


def _grade_id(cell, index: int) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index}"


def undefined_names(path: Path) -> list[str]:
    """'cell: name' for every name a code cell reads before any cell defines it, and every student code cell whose
    solution region would not find the STUDENT_TOOLKIT modules."""
    instructor = nbformat.read(path, as_version=4)
    released, _ = ClearSolutions().preprocess(nbformat.read(path, as_version=4), {})
    defined: set[str] = set()
    problems = []
    for index, (cell, stub) in enumerate(zip(instructor.cells, released.cells)):
        if cell.cell_type != "code":
            continue
        where = f"{path.name}:{_grade_id(cell, index)}"
        bound, imported, used = names(cell.source, where)
        problems += [f"{where}: {name}" for name in sorted(used - defined)]
        stub_bound, stub_imported, _ = names(stub.source, where)
        if cell.metadata.get("nbgrader", {}).get("solution"):
            problems += [f"{where}: {module} (the solution region should find it imported)"
                         for module in STUDENT_TOOLKIT if module not in defined | stub_bound]
        defined |= bound - (imported - stub_imported)    # an import inside a solution region is gone in the release
    return problems


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_name_is_defined_before_the_cell_that_reads_it(notebook):
    assert undefined_names(ROOT / notebook) == []


def test_the_checker_finds_a_module_imported_after_its_first_use(tmp_path):
    cells = [nbformat.v4.new_code_cell("%matplotlib inline\nimport torch"),
             nbformat.v4.new_code_cell("### BEGIN SOLUTION\ny = math.sqrt(2)\n### END SOLUTION",
                                       metadata={"nbgrader": {"solution": True, "grade_id": "a"}}),
             nbformat.v4.new_code_cell("import math\n\n\ndef f():\n    return math.pi + later + np.e"),
             nbformat.v4.new_code_cell("### BEGIN SOLUTION\nimport numpy as np\n### END SOLUTION",
                                       metadata={"nbgrader": {"solution": True, "grade_id": "b"}}),
             nbformat.v4.new_code_cell("print(y, np.pi, [x for x in range(3)], display)")]
    path = tmp_path / "Toy.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    assert undefined_names(path) == [
        "Toy.ipynb:a: math", "Toy.ipynb:a: math (the solution region should find it imported)",
        "Toy.ipynb:cell 2: later", "Toy.ipynb:cell 2: np", "Toy.ipynb:cell 4: np"]


def test_each_test_cell_names_the_checks_that_decide_its_points():
    from grading.points import Points

    cases = Points.load().cases
    for notebook in NOTEBOOKS:
        for cell in nbformat.read(ROOT / notebook, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
                continue
            names = [case.name for case in cases if case.nbgrader_cell == meta["grade_id"]]
            assert names, f"{notebook}:{meta['grade_id']}: no trusted check decides its points"
            missing = [name for name in names if f'"{name}"' not in cell.source]
            assert not missing, f"{notebook}:{meta['grade_id']} should name its checks {missing}"
