"""`make submission`: check your work and zip exactly the files that are graded.

The zip holds the notebooks (run, with outputs), your edited modules and the trained checkpoint, at the same paths
as in this folder. Problems that make grading impossible (a missing file, a notebook that was never run, a
notebook that is not valid JSON) stop with a message saying how to fix them; unfinished parts only warn.

    python grading/submission.py [--root .] [--out build/submission/hw8_submission.zip]
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

NOTEBOOKS = ["Summarization.ipynb", "Visualizing_BERT.ipynb", "Kernel_Attention.ipynb"]
MODULES = ["kernel_attention.py"]
CHECKPOINT = "checkpoints/summarizer.pt"
STUB = "raise NotImplementedError("
ANSWER_STUB = "YOUR ANSWER HERE"


def check_notebook(path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) for one notebook: it must exist, parse, and have been run."""
    if not path.is_file():
        return [f"{path.name} is missing: it must be in {path.parent}"], []
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        return [f"{path.name} is not a valid notebook ({err}); open it in Jupyter and save it again"], []
    code = [c for c in cells if c.get("cell_type") == "code"]
    if code and not any(c.get("outputs") or c.get("execution_count") for c in code):
        return [f"{path.name} has no outputs: run all its cells (make run, or Run All in Jupyter) and save"], []
    warnings = []
    not_run = sum(1 for c in code if c.get("execution_count") is None and "".join(c.get("source", "")).strip())
    if not_run:
        warnings.append(f"{path.name}: {not_run} code cell(s) were not run")
    text = "".join("".join(c.get("source", "")) for c in cells)
    if ANSWER_STUB in text:
        warnings.append(f"{path.name}: some written answers still say '{ANSWER_STUB}'")
    if STUB in text:
        warnings.append(f"{path.name}: some code cells still raise NotImplementedError")
    return [], warnings


def check_files(root: Path, notebooks: list[str], modules: list[str], checkpoint: str | None
                ) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the whole submission."""
    errors, warnings = [], []
    for name in notebooks:
        e, w = check_notebook(root / name)
        errors += e
        warnings += w
    for name in modules:
        path = root / name
        if not path.is_file():
            errors.append(f"{name} is missing from {root}")
            continue
        source = path.read_text(encoding="utf-8", errors="replace")
        try:
            compile(source, name, "exec")
        except SyntaxError as err:
            errors.append(f"{name} has a syntax error at line {err.lineno}: {err.msg}")
        n_stubs = source.count(STUB)
        if n_stubs:
            warnings.append(f"{name}: {n_stubs} function(s) still raise NotImplementedError")
    if checkpoint and not (root / checkpoint).is_file():
        errors.append(f"{checkpoint} not found: run Summarization.ipynb to the end (it trains and saves the model)")
    elif checkpoint and (root / checkpoint).stat().st_size == 0:
        errors.append(f"{checkpoint} is empty: run the training cell of Summarization.ipynb again")
    return errors, warnings


def write_submission(root: Path, files: list[str], out: Path) -> Path:
    """Zip `files` (relative to root) into `out` at the same relative paths."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in files:
            zf.write(root / name, name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]), help="your homework folder")
    parser.add_argument("--out", default=None, help="default: <root>/build/submission/hw8_submission.zip")
    parser.add_argument("--notebooks", nargs="*", default=NOTEBOOKS)
    parser.add_argument("--modules", nargs="*", default=MODULES)
    parser.add_argument("--checkpoint", default=CHECKPOINT, help="'' if there is none")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    checkpoint = args.checkpoint or None
    errors, warnings = check_files(root, args.notebooks, args.modules, checkpoint)
    for w in warnings:
        print(f"warning: {w}")
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        print("submission: not written; fix the errors above and run `make submission` again", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else root / "build" / "submission" / "hw8_submission.zip"
    files = [*args.notebooks, *args.modules, *([checkpoint] if checkpoint else [])]
    write_submission(root, files, out)
    print(f"submission: wrote {out} ({len(files)} files: {', '.join(files)}); upload it to Gradescope")
    return 0


if __name__ == "__main__":
    sys.exit(main())
