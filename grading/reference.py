"""The reference side of the grading harness: the instructor's code, run in the trusted parent.

`Reference` imports the instructor's modules and notebooks (their solution cells run as one module); `build_request`
draws a check's inputs from its seed; `expected_output` computes what the student's code must return.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import threading
from pathlib import Path

import nbformat
import torch

from grading import sandbox
from grading.checks import Case, check_inputs
from grading.sandbox_child import load_notebook_module
from homework.parts import cell_grade_id, nbgrader_meta

REFERENCE_LOCK = threading.RLock()   # torch's global RNG is shared by grading threads


def notebook_cells(instructor: nbformat.NotebookNode, student: nbformat.NotebookNode, cells: tuple[str, ...] = (),
                   preamble: str = "") -> list[str]:
    """The code a notebook check runs, in the instructor's cell order: the student's solution cells (matched by
    grade_id, first occurrence) and the instructor's locked set-up cells. Test cells and plain cells are left out,
    so edited or deleted test cells change nothing; IPython magics are dropped.
    cells: run only these solution cells, after `preamble` (trusted set-up code) instead of the locked cells."""
    student_cells: dict[str, str] = {}
    for cell in student.cells:
        grade_id = cell_grade_id(cell)
        if cell.cell_type == "code" and grade_id and grade_id not in student_cells:
            student_cells[grade_id] = cell.source
    code = [preamble] if preamble else []
    for cell in instructor.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code":
            continue
        if meta.get("solution") and (not cells or meta["grade_id"] in cells):
            source = student_cells.get(meta["grade_id"],
                                       f"raise NotImplementedError('cell {meta['grade_id']} is missing')")
        elif meta.get("locked") and not meta.get("grade") and not cells:
            source = cell.source
        else:
            continue
        code.append("\n".join(line for line in source.split("\n") if not line.lstrip().startswith(("%", "!"))))
    return code


class Reference:
    """The instructor's modules and notebooks, imported in this (trusted) process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self.cache: dict = {}
        self.tmp = sandbox.private_folder("hw8-reference-")

    def module(self, name: str, cells: tuple[str, ...] = (), preamble: str = ""):
        key = f"{name}[{','.join(cells)}]" if cells else name
        if key not in self.cache:
            if str(self.folder) not in sys.path:
                sys.path.insert(0, str(self.folder))
            if name.endswith(".ipynb"):
                nb = nbformat.read(self.folder / name, as_version=4)
                cells_path = self.tmp / f"{key}.cells.json"
                cells_path.write_text(json.dumps(notebook_cells(nb, nb, cells, preamble)))
                self.cache[key] = load_notebook_module(str(cells_path), f"reference_{name[:-6]}")
            else:
                self.cache[key] = importlib.import_module(name)
        return self.cache[key]

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def build_request(case: Case, reference: Reference) -> dict:
    """Inputs drawn in the parent from the case's seed (and the instructor object's weights when asked)."""
    g = torch.Generator().manual_seed(case.seed)
    request = {"target": f"{case.module_key}:{case.attr}", "seed": case.seed, "args": [], "kwargs": {},
               "init": None, "method": None, "attrs": [], "call": case.call}
    request.update(check_inputs(case.name, case.inputs(g)) if case.inputs is not None else {})
    if case.state_from_reference and request.get("init") is not None:
        torch.manual_seed(case.seed)
        obj = getattr(reference.module(case.module), case.attr)
        instance = obj(*request["init"].get("args", []), **request["init"].get("kwargs", {}))
        request["init"] = {**request["init"], "state": {k: v.clone() for k, v in instance.state_dict().items()}}
    return request


def expected_output(case: Case, request: dict, reference: Reference):
    from grading.sandbox_child import invoke

    if case.reference is not None:
        return case.reference(request), {}
    return invoke(reference.module(case.module, case.cells, case.preamble), request)
