"""`make submission`: check your work and zip exactly the files that are graded.

The zip holds the notebooks (run, with outputs), your edited modules and the trained checkpoint, at the same paths
as in this folder. It is refused (nothing written) when grading would be impossible or the work is not the full
run: a missing or invalid file, a notebook that was never run or was run in fast mode (HW8_FAST=1), a required part
that still raises NotImplementedError (a notebook cell of a required part, or a function of kernel_attention.py),
or no trained checkpoint. Optional parts left undone (homework/parts.py says which) are listed, not refused.

    python -m homework.submission [--root .] [--out build/submission/hw8_submission.zip]
    python -m homework.submission --allow-fast   # course staff's end-to-end tests only: accept fast-mode notebooks
                                                # and the fast checkpoint (build/checkpoints/summarizer_fast.pt)
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from homework.markers import ANSWER_STUB
from homework.parts import NOTEBOOKS, Part, cell_grade_id, part_of_cell, part_of_function
from summarizer.settings import FAST, FULL

REPO = Path(__file__).resolve().parents[1]

MODULES = ["kernel_attention.py"]
CHECKPOINT = FULL.checkpoint                 # checkpoints/summarizer.pt
FAST_CHECKPOINT = FAST.checkpoint            # build/checkpoints/summarizer_fast.pt (--allow-fast only)
STUB_LINE = re.compile(r"^[ \t]*raise[ \t]+NotImplementedError\b", re.MULTILINE)
# a line that is the stub, not a mention of it in the instructions
ANSWER_STUB_LINE = re.compile(rf"^[ \t]*{re.escape(ANSWER_STUB)}[ \t]*$", re.MULTILINE)


@dataclass
class Report:
    """What the checks found: errors refuse the submission, warnings and skipped optional parts are printed."""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    optional: dict[str, list[str]] = field(default_factory=dict)    # part -> what of it is not done

    def skip(self, part: Part, what: str) -> None:
        self.optional.setdefault(part.name, []).append(what)

    def skipped_lines(self) -> list[str]:
        return [f"optional {name} not done: {', '.join(items)}" for name, items in self.optional.items()]


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def check_notebook(path: Path, report: Report, allow_fast: bool = False) -> None:
    """A notebook must exist, parse, have been run (not in fast mode unless allow_fast) and hold no
    NotImplementedError stub in a cell of a required part (a cell without a grade_id counts as required)."""
    if not path.is_file():
        report.errors.append(f"{path.name} is missing: it must be in {path.parent}")
        return
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        report.errors.append(f"{path.name} is not a valid notebook ({err}); open it in Jupyter and save it again")
        return
    code = [c for c in cells if c.get("cell_type") == "code" and cell_source(c).strip()]
    if code and not any(c.get("outputs") or c.get("execution_count") for c in code):
        report.errors.append(f"{path.name} has no outputs: run all its cells (make run, or Run All in Jupyter) "
                             "and save")
        return
    hw8 = nb.get("metadata", {}).get("hw8", {}) or {}
    if hw8.get("fast"):
        if allow_fast:
            report.warnings.append(f"{path.name} was run in fast mode (accepted: --allow-fast)")
        else:
            report.errors.append(f"{path.name} was run in fast mode (HW8_FAST=1): its outputs are not the full "
                                 "run's. Run `make run` without HW8_FAST, then `make submission`")
    not_run = sum(1 for c in code if c.get("execution_count") is None)
    if not_run:
        report.warnings.append(f"{path.name}: {not_run} code cell(s) were not run")
    for failed in hw8.get("failed_cells", []) or []:
        if not failed.get("optional"):
            where = failed.get("grade_id") or f"cell {failed.get('index', 0) + 1}"
            report.warnings.append(f"{path.name}: {where} failed in the last run ({failed.get('error')}: "
                                   f"{failed.get('message', '')})")
    for index, cell in enumerate(cells):
        grade_id = cell_grade_id(cell)
        part = part_of_cell(grade_id)
        source = cell_source(cell)
        first_line = next((line.strip() for line in source.splitlines() if line.strip()), "")
        where = f"{path.name} cell {grade_id}" if grade_id else \
            f"{path.name} cell {index + 1} ({first_line[:40] + '...' * (len(first_line) > 40)})"
        if cell.get("cell_type") == "code" and STUB_LINE.search(source):
            if part is not None and part.optional:
                report.skip(part, f"{path.name} {grade_id}")
            else:
                report.errors.append(f"{where}" + (f" (part {part.name})" if part else "")
                                     + " still raises NotImplementedError: write your code there")
        elif cell.get("cell_type") == "markdown" and ANSWER_STUB_LINE.search(source):
            if part is not None and part.optional:
                report.skip(part, f"written answer {grade_id}")
            else:
                report.warnings.append(f"{where}" + (f" (part {part.name})" if part else "")
                                       + f": the written answer still says '{ANSWER_STUB}'")


def _raises_not_implemented(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """True if a statement of the function's body itself (not one nested in a branch: that is an unsupported
    case, not a stub) raises NotImplementedError."""
    for node in function.body:
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                return True
    return False


def _is_abstract(function: ast.FunctionDef | ast.AsyncFunctionDef, owner: ast.ClassDef | None,
                 classes: dict[str, ast.ClassDef]) -> bool:
    """An abstract method: decorated @abstractmethod, or defined by a class that another class of the module
    derives from and overrides it in (FeatureMap.forward)."""
    for decorator in function.decorator_list:
        name = decorator.attr if isinstance(decorator, ast.Attribute) else getattr(decorator, "id", "")
        if name in ("abstractmethod", "abstractproperty"):
            return True
    if owner is None:
        return False
    for cls in classes.values():
        bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in cls.bases}
        if owner.name in bases and any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                                       and n.name == function.name for n in cls.body):
            return True
    return False


def stub_functions(source: str) -> list[str]:
    """Qualified names ('linear_attention', 'RandomFourierFeatures.forward') of the module's functions and methods
    whose body raises NotImplementedError, abstract methods left out."""
    tree = ast.parse(source)
    classes = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    found = []

    def visit(body: list[ast.stmt], owner: ast.ClassDef | None, prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, node, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if _raises_not_implemented(node) and not _is_abstract(node, owner, classes):
                    found.append(f"{prefix}{node.name}")

    visit(tree.body, None, "")
    return found


def check_module(root: Path, name: str, report: Report) -> None:
    """A module must exist and compile; a stub left in a function of a required part (or of no part) refuses."""
    path = root / name
    if not path.is_file():
        report.errors.append(f"{name} is missing from {root}")
        return
    source = path.read_text(encoding="utf-8", errors="replace")
    try:
        compile(source, name, "exec")
    except SyntaxError as err:
        report.errors.append(f"{name} has a syntax error at line {err.lineno}: {err.msg}")
        return
    for function in stub_functions(source):
        part = part_of_function(function)
        if part is not None and part.optional:
            report.skip(part, function)
        else:
            report.errors.append(f"{name}: {function}" + (f" (part {part.name})" if part else "")
                                 + " still raises NotImplementedError: write your code there")


def find_checkpoint(root: Path, checkpoint: str | None, allow_fast: bool, report: Report) -> Path | None:
    """The checkpoint file to submit (stored in the zip at `checkpoint`); None (and an error) if there is none."""
    if not checkpoint:
        return None
    path = root / checkpoint
    if not path.is_file() and allow_fast and checkpoint == CHECKPOINT and (root / FAST_CHECKPOINT).is_file():
        report.warnings.append(f"{checkpoint} not found: submitting the fast-mode checkpoint {FAST_CHECKPOINT} "
                               "as it (--allow-fast)")
        path = root / FAST_CHECKPOINT
    if not path.is_file():
        report.errors.append(f"{checkpoint} not found: run Summarization.ipynb to the end without HW8_FAST "
                             "(`make run`: it trains and saves the model)")
        return None
    if path.stat().st_size == 0:
        report.errors.append(f"{checkpoint} is empty: run the training cell of Summarization.ipynb again")
        return None
    return path


def check_files(root: Path, notebooks: list[str], modules: list[str], checkpoint: str | None,
                allow_fast: bool = False) -> tuple[Report, Path | None]:
    """Every check of the submission: (report, the checkpoint file to zip or None)."""
    report = Report()
    for name in notebooks:
        check_notebook(root / name, report, allow_fast)
    for name in modules:
        check_module(root, name, report)
    return report, find_checkpoint(root, checkpoint, allow_fast, report)


def write_submission(files: list[tuple[Path, str]], out: Path) -> Path:
    """Zip `files` ((file, name in the zip) pairs) into `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, name in files:
            zf.write(path, name)
    partial.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(REPO), help="your homework folder")
    parser.add_argument("--out", default=None, help="default: <root>/build/submission/hw8_submission.zip")
    parser.add_argument("--notebooks", nargs="*", default=list(NOTEBOOKS))
    parser.add_argument("--modules", nargs="*", default=MODULES)
    parser.add_argument("--checkpoint", default=CHECKPOINT, help="'' if there is none")
    parser.add_argument("--allow-fast", action="store_true",
                        help="course staff's end-to-end tests only: accept fast-mode notebooks and checkpoint")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    checkpoint = args.checkpoint or None
    report, checkpoint_file = check_files(root, args.notebooks, args.modules, checkpoint, args.allow_fast)
    for w in report.warnings:
        print(f"warning: {w}")
    for line in report.skipped_lines():
        print(line)
    if report.errors:
        for e in report.errors:
            print(f"error: {e}", file=sys.stderr)
        print("submission: refused, nothing written; fix the errors above and run `make submission` again",
              file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else root / "build" / "submission" / "hw8_submission.zip"
    files = [(root / n, n) for n in [*args.notebooks, *args.modules]]
    if checkpoint_file is not None:
        files.append((checkpoint_file, checkpoint))
    write_submission(files, out)
    names = ", ".join(name for _, name in files)
    print(f"submission: wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {len(files)} files: {names}); "
          "upload it to Gradescope")
    return 0


if __name__ == "__main__":
    sys.exit(main())
