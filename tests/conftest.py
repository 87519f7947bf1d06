"""Shared pytest configuration and fixtures."""

import os
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

# `make test` runs two pytest-xdist workers (--dist loadfile, with the scheduler below). Each grades with its own
# sandbox uids (the base uid + 1000 per worker: no uid, autograde lock or process sweep is shared), and lets its idle
# OpenMP threads sleep (a spinning thread would take the core the other worker needs).
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER:
    os.environ["HW8_SANDBOX_UID"] = str(int(os.environ.get("HW8_SANDBOX_UID", "61182"))
                                        + 1000 * int(WORKER.removeprefix("gw")))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The modules that use the fast notebooks of the repository's build/notebooks (and the checkpoint and results the
# Summarization run writes) are one unit of work, on one worker; every other module is a unit of its own (its
# module-scoped fixtures are made once). The longest units are scheduled first.
SHARED_BUILD = ("test_front_ends.py", "test_kernel_attention_notebook.py", "test_summarization_notebook.py",
                "test_visualizing_bert.py", "test_worked_answers.py", "test_pdf.py")
LONGEST_FIRST = ("test_grading_hw8.py", "notebooks", "test_release_students.py", "test_grading.py")


def work_unit(nodeid: str) -> str:
    """The unit of work of a test: 'notebooks' for the SHARED_BUILD modules, else its module's file name."""
    module = nodeid.split("::")[0].rsplit("/", 1)[-1]
    return "notebooks" if module in SHARED_BUILD else module


@pytest.hookimpl(optionalhook=True)      # a hook of pytest-xdist: pytest runs without it too
def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, by work_unit instead of by file (pytest-xdist's own loadgroup marks do not reach the
    scheduler under pytest 9: it renames node ids through an attribute pytest 9 no longer reads)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)


# absl (rouge_score imports it) makes a logging handler at import time on the sys.stderr of that moment, which under
# pytest is a capture file; traitlets' logging set-up (logging.config.dictConfig, when nbclient starts a kernel)
# closes every handler and so that capture file, and the test after it fails on "I/O operation on closed file". The
# handler writes to the real stderr instead, which absl never closes.
try:
    import absl.logging

    absl.logging.get_absl_handler().python_handler.stream = sys.__stderr__
except ImportError:
    pass


def pytest_collection_modifyitems(items):
    """The longest units of work first (pytest-xdist sends them out in this order), the PDF tests last (they reuse
    the executed notebooks, full runs included)."""
    def order(item):
        unit = work_unit(item.nodeid)
        return (LONGEST_FIRST.index(unit) if unit in LONGEST_FIRST else len(LONGEST_FIRST),
                item.path.name == "test_pdf.py")

    items.sort(key=order)


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


@pytest.fixture(scope="session")
def fast_run_files() -> tuple[str, list[Path]]:
    """(precision, [checkpoint, results JSON]): what Summarization.ipynb's fast run writes on this machine."""
    import torch

    import run_flags
    from summarizer.settings import FAST, results_path
    from summarizer.train import autocast_dtype, precision_name

    precision = precision_name(autocast_dtype(torch.device("cpu"), run_flags.precision()))
    return precision, [REPO / FAST.checkpoint, REPO / results_path(FAST, precision)]


@pytest.fixture(scope="session")
def fast_notebooks(fast_run_files):
    """{name: Future of the notebook} of the three notebooks executed strictly in fast mode into
    build/notebooks/<stem>.fast.ipynb, the stale ones at once, each in its own kernel; fresh copies are reused
    (grading/executed.py), Summarization's only while the files its run writes are there. `.result()` is the executed
    notebook, or raises that notebook's own error (a failing cell: CellExecutionError)."""
    from grading.executed import executed_notebook
    from homework.parts import NOTEBOOKS, SUMMARIZATION

    written = all(p.is_file() for p in fast_run_files[1])
    with ThreadPoolExecutor(max_workers=len(NOTEBOOKS)) as pool:
        futures = {name: pool.submit(executed_notebook, REPO / name, REPO / "build" / "notebooks", fast=True,
                                     timeout=900, same_mode=True, force=name == SUMMARIZATION and not written)
                   for name in NOTEBOOKS}
    return futures


@pytest.fixture(scope="module")
def notebook(request):
    """The committed notebook named by the test module's NOTEBOOK path, as nbformat reads it."""
    return nbformat.read(request.module.NOTEBOOK, as_version=4)
