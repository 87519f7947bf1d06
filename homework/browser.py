"""Headless Chromium for the HW8 tools: the system browser (Debian's `chromium`, installed by `make system`) driven
by Playwright through its executable path, so Playwright never downloads a browser of its own.

`make pdf` uses it to draw each bertviz view as a picture (homework/view_images.py); the front-end tests use it to
open the notebooks in JupyterLab and Notebook 7.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")
# No network even on a machine that has one, and none of Chromium's background connections (refused here, slow).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
OFFLINE_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"]
INSTALL_HINT = "install it with `make system` (Debian: `sudo apt-get install -y chromium`)"


def chromium_path() -> str | None:
    """The system Chromium (HW8_CHROMIUM overrides the search), or None when there is none."""
    if os.environ.get("HW8_CHROMIUM"):
        return os.environ["HW8_CHROMIUM"]
    return next((shutil.which(name) for name in BROWSER_NAMES if shutil.which(name)), None)


def require_chromium() -> str:
    """chromium_path(), or RuntimeError saying how to install it."""
    path = chromium_path()
    if path is None:
        raise RuntimeError(f"no Chromium found: {INSTALL_HINT}")
    return path


@contextmanager
def chromium(offline: bool = True) -> Iterator[object]:
    """A headless Playwright Browser on the system Chromium; `offline`: no host name resolves but the loopback."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        raise RuntimeError("the Python package playwright is missing: run `make install`") from error
    path = require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True,
                                             args=CHROMIUM_ARGS + (OFFLINE_ARGS if offline else []))
        try:
            yield browser
        finally:
            browser.close()
