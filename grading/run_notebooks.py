"""`make run`: execute the three notebooks headless into build/notebooks/, where `make pdf` reuses them.

A full run writes build/notebooks/<name>; with HW8_FAST=1 it writes build/notebooks/<stem>.fast.ipynb, marked fast
in its metadata, so a quick run never passes for a full one. A failing cell stops the run with its traceback and
leaves the partial notebook beside it (<name>.failed.ipynb).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nbclient.exceptions import CellExecutionError  # noqa: E402

from grading.pdf import NOTEBOOKS, execute, executed_candidates  # noqa: E402
from summarizer.settings import fast_mode  # noqa: E402


def main() -> None:
    fast = fast_mode()
    for name in NOTEBOOKS:
        source = REPO / name
        try:
            execute(source, executed_candidates(source, REPO / "build" / "notebooks", fast)[0], fast, timeout=None)
        except CellExecutionError as error:
            raise SystemExit(f"{name} failed:\n{error}") from None


if __name__ == "__main__":
    main()
