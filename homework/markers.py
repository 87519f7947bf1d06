"""nbgrader's solution markers and stub texts, one home for the student's tools (homework/) and the grading
(grading/course.py adds the instructor-only markers, which never reach a release)."""

from __future__ import annotations

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"   # what the release leaves of a code solution region
ANSWER_STUB = "YOUR ANSWER HERE"                              # ... and of a written answer's


def is_marker_line(line: str, marker: str) -> bool:
    """True if the line is a marker line: the marker text plus only '#', '=', spaces and an HTML comment's '<!--' /
    '-->' (regions sit between marker lines). Prose that quotes a marker (a docstring sentence) is not one."""
    core = marker.strip("#= ")
    rest = line.replace(core, "").replace("<!--", "").replace("-->", "")
    return core in line and not rest.strip("#= \t")


def has_marker_line(source: str, marker: str) -> bool:
    """True if any line of `source` is a marker line of `marker`."""
    return any(is_marker_line(line, marker) for line in source.split("\n"))
