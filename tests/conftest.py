"""Shared pytest configuration and fixtures."""

import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

# The repository's modules also when pytest runs as a console script (`python -m pytest` from the root has them
# already). Appended, not prepended: a submission folder put first on PYTHONPATH is the kernel_attention under test.
REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))


def pytest_collection_modifyitems(items):
    """Run the PDF tests last: they reuse the notebooks the notebook tests executed (build/notebooks/*.fast.ipynb)."""
    items.sort(key=lambda item: item.path.name == "test_pdf.py")


@pytest.fixture(scope="session")
def real_release():
    """(release folder, zip) of grading/course.toml's student release, built once per session (build_release raises
    if anything leaks) in a private folder the sandbox uids cannot read. Read it or copy it; never change it."""
    from grading.course import load_course
    from grading.release import build_release

    folder = Path(tempfile.mkdtemp(prefix="hw8-release-"))
    try:
        yield build_release(load_course(REPO / "grading" / "course.toml"), folder / "release")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fast_run_files() -> tuple[str, list[Path]]:
    """(precision, [checkpoint, results JSON]) that Summarization.ipynb's fast run writes on this machine."""
    import torch

    import run_flags
    from summarizer.settings import FAST, results_path
    from summarizer.train import autocast_dtype

    precision = "bf16" if autocast_dtype(torch.device("cpu"), run_flags.precision()) else "fp32"
    return precision, [REPO / FAST.checkpoint, REPO / results_path(FAST, precision)]


@pytest.fixture(scope="session")
def fast_notebooks():
    """{name: notebook} of the three notebooks executed strictly in fast mode into build/notebooks/<stem>.fast.ipynb
    (a failing cell raises), the stale ones at once, each in its own kernel; fresh copies are reused
    (grading/executed.py), Summarization's only while the checkpoint and results its run writes are there."""
    from grading.executed import executed_notebook
    from homework.parts import NOTEBOOKS, SUMMARIZATION

    written = fast_run_files()[1]
    with ThreadPoolExecutor(max_workers=len(NOTEBOOKS)) as pool:
        futures = {name: pool.submit(executed_notebook, REPO / name, REPO / "build" / "notebooks", fast=True,
                                     timeout=900, same_mode=True,
                                     force=name == SUMMARIZATION and not all(p.is_file() for p in written))
                   for name in NOTEBOOKS}
    return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def notebook(request):
    """The committed notebook named by the test module's NOTEBOOK path, as nbformat reads it."""
    return nbformat.read(request.module.NOTEBOOK, as_version=4)
