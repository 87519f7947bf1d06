"""`make run`: execute the three notebooks headless, every one to its end, and summarize what failed.

Instructor (this repository): a full run writes build/notebooks/<name>; with HW8_FAST=1
build/notebooks/<stem>.fast.ipynb (marked fast in its metadata, so a quick run never passes for a full one);
`make pdf` reuses them.
Student release (`--in-place`): each notebook is executed and saved in place, so the outputs you submit are yours.

Preflight: before Summarization.ipynb (12-18 minutes of training on the kernel_attention.py functions), the visible
tests of the functions it trains with run (homework/preflight.py, a few seconds). If one fails, Summarization.ipynb is
not run: the failed functions are printed, the summary says "Summarization.ipynb: not run: preflight failed: ...",
the other notebooks still run, and the exit status is 1. `--no-preflight` skips the checks; a run without
Summarization.ipynb among its notebooks makes none.

Cells keep running after a failure; the summary at the end lists every failed cell with its part of the homework and
the function that raised. A failure in an optional part (homework/parts.py) is reported as skipped; the exit status
is non-zero only if a required part failed (or a notebook was not run). Execution lives in homework/notebooks.py.

    python -m homework.run_notebooks [--in-place] [--fast] [--no-preflight] [--notebooks A.ipynb ...]
                                    [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import run_flags
from homework.notebooks import NotebookRun, executed_copy, run_notebook, run_summary
from homework.parts import NOTEBOOKS, SUMMARIZATION
from homework.preflight import run_preflight

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in-place", action="store_true", help="save each executed notebook over itself (students)")
    parser.add_argument("--fast", action="store_true", help="HW8_FAST=1 run (also set by the HW8_FAST variable)")
    parser.add_argument("--notebooks", nargs="+", type=Path, default=[REPO / n for n in NOTEBOOKS],
                        help="notebooks to run (default: the three homework notebooks, in order)")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "notebooks",
                        help="folder for the executed copies (ignored with --in-place)")
    parser.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: no limit)")
    parser.add_argument("--no-preflight", action="store_true",
                        help=f"run {SUMMARIZATION} without first checking the kernel_attention.py functions it uses")
    args = parser.parse_args(argv)
    fast = args.fast or run_flags.fast()
    sources = [p.resolve() for p in args.notebooks]
    for source in sources:
        if not source.is_file():
            raise SystemExit(f"make run: {source} not found")
    preflight = None
    summarization = next((s for s in sources if s.name == SUMMARIZATION), None)
    if summarization is not None and not args.no_preflight:
        preflight = run_preflight(summarization.parent)      # the kernel_attention.py beside the notebook
        print(preflight.message, flush=True)
        if not preflight.passed:
            again = " ".join(["python -m homework.run_notebooks", *(["--in-place"] if args.in_place else []),
                              *(["--fast"] if args.fast else []), "--no-preflight"])
            others = "; the other notebooks are" if len(sources) > 1 else ""
            print(f"{SUMMARIZATION} is not run{others}. To run it anyway: {again}", flush=True)
    runs = []
    for source in sources:
        destination = source if args.in_place else executed_copy(source, args.out.resolve(), fast)
        if source == summarization and preflight is not None and not preflight.passed:
            runs.append(NotebookRun(source.name, destination, fast, not_run=preflight.reason))
            continue
        runs.append(run_notebook(source, destination, fast, args.timeout, allow_errors=True)[1])
    text, status = run_summary(runs)
    print(text, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
