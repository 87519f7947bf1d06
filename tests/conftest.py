"""Shared pytest configuration and fixtures."""

import sys
from pathlib import Path

import nbformat
import pytest

# The repository's modules also when pytest runs as a console script (`python -m pytest` from the root has them
# already). Appended, not prepended: a submission folder put first on PYTHONPATH is the kernel_attention under test.
sys.path.append(str(Path(__file__).resolve().parents[1]))


def pytest_collection_modifyitems(items):
    """Run the PDF tests last: they reuse the notebooks the notebook tests executed (build/notebooks/*.fast.ipynb)."""
    items.sort(key=lambda item: item.path.name == "test_pdf.py")


@pytest.fixture(scope="module")
def notebook(request):
    """The committed notebook named by the test module's NOTEBOOK path, as nbformat reads it."""
    return nbformat.read(request.module.NOTEBOOK, as_version=4)
