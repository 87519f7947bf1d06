"""Executed notebooks reused across the instructor's tools (`make pdf`, the notebook tests): a copy in build/notebooks
is reused while it is newer than the notebook and everything it reads, ran every cell and raised no error. Students
never reuse: they execute in place (`make run`) and export what they see."""

from __future__ import annotations

from pathlib import Path

import nbformat

from homework.notebooks import executed_copy, run_notebook, sign

DEPENDENCY_GLOBS = ("*.py", "summarizer/**/*.py", "data/**/*", "assets/**/*")


def executed_candidates(source: Path, executed_dir: Path, fast: bool) -> list[Path]:
    """Executed copies of `source` that may be reused, the first being where a run of this mode is written:
    full mode executed_dir/<name> (`make run`); fast mode executed_dir/<stem>.fast.ipynb (the notebook tests),
    then executed_dir/<name> (a full run is good enough for a fast PDF)."""
    first = executed_copy(source, executed_dir, fast)
    return [first, executed_copy(source, executed_dir, False)] if fast else [first]


def dependencies(source: Path) -> list[Path]:
    """What an executed copy of `source` depends on: the notebook, the modules beside it, the summarizer package,
    the corpus and the bertviz assets (files matching DEPENDENCY_GLOBS in the notebook's folder)."""
    return [source, *(p for pattern in DEPENDENCY_GLOBS for p in source.parent.glob(pattern))]


def reusable(executed: Path, source: Path, fast: bool) -> bool:
    """True if `executed` is newer than the notebook and its modules, ran every code cell, raised no error, and
    was not a fast run when a full one is wanted (mode recorded in metadata hw8.fast)."""
    if not executed.is_file():
        return False
    newest_source = max(p.stat().st_mtime for p in dependencies(source) if p.is_file())
    if executed.stat().st_mtime <= newest_source:
        return False
    nb = nbformat.read(executed, as_version=4)
    if not fast and nb.metadata.get("hw8", {}).get("fast", False):
        return False
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    ran = all(c.get("execution_count") for c in code)
    failed = any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    return ran and not failed


def executed_notebook(source: Path, executed_dir: Path, fast: bool, timeout: int | None,
                      force: bool = False, same_mode: bool = False) -> nbformat.NotebookNode:
    """The executed copy of `source`: reused from executed_dir when fresh (see `reusable`), else executed now
    (strictly: a failing cell raises). Candidates: `executed_candidates`; same_mode: only a run of the mode asked for
    (a full run does not stand in for a fast one)."""
    candidates = executed_candidates(source, executed_dir, fast)
    for candidate in candidates[:1] if same_mode else candidates:
        if not force and reusable(candidate, source, fast):
            print(f"reusing {candidate}", flush=True)
            sign(candidate)     # this user's own run (it may predate signing)
            return nbformat.read(candidate, as_version=4)
    return run_notebook(source, candidates[0], fast, timeout, allow_errors=False)[0]
