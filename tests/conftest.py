"""Shared pytest configuration."""


def pytest_collection_modifyitems(items):
    """Run the PDF tests last: they reuse the notebooks the notebook tests executed (build/notebooks/*.fast.ipynb)."""
    items.sort(key=lambda item: item.path.name == "test_pdf.py")
