"""Remove solution regions from `.py` modules with nbgrader's own ClearSolutions (nbgrader copies `.py` verbatim).

`strip_solutions(source, filename)` wraps the module in a one-cell notebook, lets nbgrader's public
`ClearSolutions.preprocess` swap every `### BEGIN SOLUTION` ... `### END SOLUTION` region for a stub,
and names the enclosing function in the stub's message. The stub is indented like the region's body, so a marker
written at a shallower indentation still yields valid Python.
"""

from __future__ import annotations

import re

from nbformat.v4 import new_code_cell, new_notebook
from nbgrader.preprocessors import ClearSolutions

from grading.course import BEGIN_HIDDEN, BEGIN_INSTRUCTOR, BEGIN_SCHEME, END_HIDDEN, END_INSTRUCTOR, END_SCHEME
from homework.markers import BEGIN_SOLUTION, END_SOLUTION, has_marker_line, is_marker_line

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
_PLACEHOLDER = "__HW8_STUB__"
_BEGIN_WORDS, _END_WORDS = BEGIN_SOLUTION.removeprefix("### "), END_SOLUTION.removeprefix("### ")
_MENTION = "__HW8_MARKER_MENTION__"  # prose that quotes a marker (e.g. a docstring) is not a marker line
_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+(\w+)|^(\s*)class\s+(\w+)")


def _indent(line: str) -> str:
    return re.match(r"\s*", line).group(0)


def _is_marker(line: str) -> bool:
    return is_marker_line(line, BEGIN_SOLUTION) or is_marker_line(line, END_SOLUTION)


def _align_markers(lines: list[str]) -> list[str]:
    """Give each BEGIN SOLUTION marker the indentation of the first code line of its region."""
    out = list(lines)
    for i, line in enumerate(lines):
        if BEGIN_SOLUTION not in line:
            continue
        for body in lines[i + 1:]:
            if END_SOLUTION in body:
                break
            if body.strip():
                out[i] = _indent(body) + line.strip()
                break
    return out


def _enclosing_name(lines: list[str], index: int) -> str:
    """Qualified name (Class.method or function) of the def that contains line `index`."""
    indent = len(_indent(lines[index]))
    names = []
    for line in reversed(lines[:index]):
        m = _DEF.match(line)
        if m and line.strip():
            level = len(m.group(1) if m.group(1) is not None else m.group(3))
            if level < indent:
                names.append(m.group(2) or m.group(4))
                indent = level
                if level == 0:
                    break
    return ".".join(reversed(names)) or "this part"


def strip_solutions(source: str, filename: str) -> str:
    """Return `source` with every solution region replaced by `raise NotImplementedError(...)`.

    Raises ValueError if a region is unterminated or nested, or if hidden-test / mark-scheme markers appear
    (those never belong in a released module).
    """
    for marker in (BEGIN_HIDDEN, END_HIDDEN, BEGIN_SCHEME, END_SCHEME):
        if marker in source:
            raise ValueError(f"{filename} contains '{marker}': hidden tests belong in the notebooks' test cells "
                             "or in instructor-only test files")
    lines = [line if _is_marker(line) else line.replace(_BEGIN_WORDS, _MENTION + "B").replace(
        _END_WORDS, _MENTION + "E") for line in source.split("\n")]
    cell = new_code_cell(source="\n".join(_align_markers(lines)))
    # a solution cell without regions would become one stub: mark the cell a solution cell only if it has regions
    cell.metadata["nbgrader"] = {"solution": has_marker_line(source, BEGIN_SOLUTION), "grade": False, "locked": False,
                                 "grade_id": "module", "schema_version": 3, "task": False}
    clear = ClearSolutions(code_stub={"python": f"raise NotImplementedError({_PLACEHOLDER})"},
                           begin_solution_delimeter=_BEGIN_WORDS,
                           end_solution_delimeter=_END_WORDS)
    try:
        notebook, _ = clear.preprocess(new_notebook(cells=[cell], metadata={"kernelspec": KERNELSPEC}), {})
        cell = notebook.cells[0]
    except RuntimeError as err:
        raise ValueError(f"{filename}: {err} (check the ### BEGIN/END SOLUTION markers)") from None
    lines = cell.source.split("\n")
    module = filename.rsplit("/", 1)[-1]
    for i, line in enumerate(lines):
        if _PLACEHOLDER in line:
            name = _enclosing_name(lines, i)
            lines[i] = line.replace(_PLACEHOLDER, repr(f"{name} in {module}: write your code here"))
    stripped = "\n".join(lines).replace(_MENTION + "B", _BEGIN_WORDS).replace(_MENTION + "E", _END_WORDS)
    compile(stripped, filename, "exec")  # the release must at least import
    return stripped


def strip_instructor_only(text: str, filename: str) -> str:
    """`text` without its instructor-only regions (marker lines included). ValueError, naming the file and line, for
    an unterminated, unopened or nested region."""
    opened_at = None
    for number, line in enumerate(text.split("\n"), 1):
        if is_marker_line(line, BEGIN_INSTRUCTOR):
            if opened_at is not None:
                raise ValueError(f"{filename}:{number}: instructor-only region opened again (first at {opened_at})")
            opened_at = number
        elif is_marker_line(line, END_INSTRUCTOR):
            if opened_at is None:
                raise ValueError(f"{filename}:{number}: '{END_INSTRUCTOR}' without a matching begin")
            opened_at = None
    if opened_at is not None:
        raise ValueError(f"{filename}:{opened_at}: instructor-only region never closed ('{END_INSTRUCTOR}')")
    return outside_regions(text, [(BEGIN_INSTRUCTOR, END_INSTRUCTOR)])


def regions(text: str, begin: str, end: str) -> list[str]:
    """Bodies (without the marker lines) of every begin/end region in `text`; an unterminated one runs to the end."""
    found, current = [], None
    for line in text.split("\n"):
        if is_marker_line(line, begin):
            current = []
        elif is_marker_line(line, end) and current is not None:
            found.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        found.append("\n".join(current))
    return found


def outside_regions(text: str, pairs: list[tuple[str, str]]) -> str:
    """The text with every region (and its marker lines) of the given begin/end pairs removed."""
    kept, inside = [], None
    for line in text.split("\n"):
        if inside is None:
            opener = next((end for begin, end in pairs if is_marker_line(line, begin)), None)
            if opener is not None:
                inside = opener
            else:
                kept.append(line)
        elif is_marker_line(line, inside):
            inside = None
    return "\n".join(kept)


ALL_REGION_PAIRS = [(BEGIN_SOLUTION, END_SOLUTION), (BEGIN_HIDDEN, END_HIDDEN), (BEGIN_SCHEME, END_SCHEME),
                    (BEGIN_INSTRUCTOR, END_INSTRUCTOR)]
