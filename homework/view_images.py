"""Pictures of the bertviz views of an executed notebook, for the PDF printout (a PDF cannot run their JavaScript).

Each view is drawn in headless Chromium (homework/browser.py) on a page of its own that holds the bertviz libraries the
notebook loaded once (the output of `vb.load_libraries()`) and the view's HTML, as the notebook shows it when opened,
and its element is captured as PNG. The PNG is added to the view's output beside its HTML, so the notebook still opens
interactive and LaTeX typesets the picture.
"""

from __future__ import annotations

import base64
import re

import nbformat

from homework.browser import chromium

LIBRARIES_MARK = "window.hw8BertvizLibs = {"     # in the output of visualizing_bert.load_libraries()
VIEW_ID = re.compile(r'<div id="?bertviz-([0-9a-f]+)')
DRAW_TIMEOUT_MS = 30_000
PAGE = "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body style='margin:0;background:#fff'>{}</body></html>"


def html_of(output: nbformat.NotebookNode) -> str:
    text = output.get("data", {}).get("text/html", "")
    return "".join(text) if isinstance(text, list) else str(text)


def view_outputs(nb: nbformat.NotebookNode) -> list[tuple[str, nbformat.NotebookNode]]:
    """(view id, output) of every bertviz view in `nb`, in order."""
    views = []
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            match = VIEW_ID.search(html_of(output))
            if match:
                views.append((match.group(1), output))
    return views


def libraries_html(nb: nbformat.NotebookNode) -> str:
    """The HTML output that loaded d3 / jQuery / require.js for the notebook's views; ValueError if there is none."""
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if LIBRARIES_MARK in html_of(output):
                return html_of(output)
    raise ValueError("the notebook has bertviz views but no output of vb.load_libraries(): run its first code cell")


def draw(browser, libraries: str, view_id: str, html: str) -> bytes:
    """PNG of one view: its element once its <svg> has lines (bertviz draws asynchronously)."""
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    try:
        page.set_content(PAGE.format(libraries + html))
        selector = f"#bertviz-{view_id}"
        page.wait_for_function(f"() => document.querySelectorAll('{selector} svg line').length > 0",
                               timeout=DRAW_TIMEOUT_MS)
        return page.locator(selector).screenshot(type="png")
    finally:
        page.close()


def add_view_images(nb: nbformat.NotebookNode) -> int:
    """Add an image/png picture to every bertviz view output of `nb` (in place); returns how many were drawn."""
    views = view_outputs(nb)
    if not views:
        return 0
    libraries = libraries_html(nb)
    with chromium() as browser:
        for view_id, output in views:
            png = draw(browser, libraries, view_id, html_of(output))
            output["data"]["image/png"] = base64.b64encode(png).decode("ascii")
    return len(views)
