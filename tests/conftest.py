"""Shared pytest configuration and fixtures."""

import nbformat
import pytest


def pytest_collection_modifyitems(items):
    """Run the PDF tests last: they reuse the notebooks the notebook tests executed (build/notebooks/*.fast.ipynb)."""
    items.sort(key=lambda item: item.path.name == "test_pdf.py")


@pytest.fixture(scope="module")
def notebook(request):
    """The committed notebook named by the test module's NOTEBOOK path, as nbformat reads it."""
    return nbformat.read(request.module.NOTEBOOK, as_version=4)
