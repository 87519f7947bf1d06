"""The notebooks in the front ends students open them in: JupyterLab 4 and Notebook 7 (the versions `make install`
brings), in headless Debian Chromium driven by Playwright through its executable path (it never downloads a browser).

For the executed fast-mode notebooks (what `make run` writes and `make pdf` reuses, signed as the user's own run):
every bertviz view draws its <svg> with lines and token labels and fills its dropdowns, the progress bars show their
finished text, the first attention heat map is an image, nothing is marked modified on opening, and the console has no
error that a plain notebook does not have too (the front ends' own noise is measured on one first). The committed
notebooks open unmodified. An unsigned copy is the control: its views stay blank and say what to do.
Screenshots of each view in JupyterLab go to build/front_ends/. The servers listen on free loopback ports and are
stopped at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
from homework.browser import chromium, chromium_path  # noqa: E402
from homework.notebooks import front_end_metadata  # noqa: E402
from homework.parts import NOTEBOOKS  # noqa: E402
from homework.view_images import view_outputs  # noqa: E402

SHOTS = REPO / "build" / "front_ends"
BAR = re.compile(r"\|[█ ]{10}\|")
WIDGET_ERRORS = ("Error displaying widget", "model not found")
SERVER_START_S, OPEN_TIMEOUT_MS, DRAW_TIMEOUT_S = 90, 90_000, 45
UNSIGNED_WAIT_S = 8

# The app object of both front ends (exposed with expose_app_in_browser): the open notebook panel.
PANEL = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
STATE = f"""async () => {{
  const panel = {PANEL};
  await panel.context.ready; await panel.sessionContext.ready;
  const cells = Array.from(panel.content.model.cells);
  return {{dirty: panel.context.model.dirty,
           untrusted_code_cells: cells.filter(c => c.type === 'code' && !c.trusted).length}};
}}"""
VIEWS = """() => Array.from(document.querySelectorAll('div[id^="bertviz-"]')).map(d => ({
  id: d.id.slice('bertviz-'.length), svg: d.querySelectorAll('svg').length,
  lines: d.querySelectorAll('svg line').length, labels: d.querySelectorAll('svg text').length,
  empty_selects: Array.from(d.querySelectorAll('select')).filter(s => s.options.length === 0).length,
  selects: d.querySelectorAll('select').length,
  note: !!document.getElementById('hw8-note-' + d.id.slice('bertviz-'.length))}))"""


# ---------------------------------------------------------------------------------------------------- fixtures
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`jupyter lab` or `jupyter notebook` on a free loopback port, serving `root`, no token, app exposed."""

    def __init__(self, app: str, root: Path, settings: Path):
        self.app, self.port = app, free_port()
        expose = "LabApp" if app == "lab" else "JupyterNotebookApp"
        args = [str(Path(sys.executable).with_name("jupyter")), app, "--no-browser", f"--port={self.port}",
                "--ip=127.0.0.1", "--IdentityProvider.token=", "--ServerApp.password=",
                f"--ServerApp.root_dir={root}", f"--{expose}.expose_app_in_browser=True", "--LabApp.news_url=None"]
        if os.geteuid() == 0:
            args.append("--allow-root")
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(settings / "config"), HW8_FAST="1",
                   JUPYTERLAB_SETTINGS_DIR=str(settings / "lab-settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(settings / f"workspaces-{app}"),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        self.log = (settings / f"{app}.log").open("w")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                urllib.request.urlopen(f"{self.base}/api/status", timeout=2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"jupyter {app} did not start: " + (settings / f"{app}.log").read_text()[-3000:])
                time.sleep(0.5)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        # ?reset: a fresh JupyterLab workspace, so the notebook opened before is not restored beside this one
        return f"{self.base}/lab/tree/{name}?reset" if self.app == "lab" else f"{self.base}/notebooks/{name}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory, fast_notebooks):
    """A folder the servers serve: the executed fast notebooks (<stem>.fast.ipynb), the committed ones, a plain
    notebook (the front ends' own console noise) and an unsigned copy of the executed Visualizing_BERT."""
    if chromium_path() is None:
        message = "no Chromium: install it with `make system`"
        if os.environ.get("HW8_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("front_ends")
    for name in NOTEBOOKS:
        executed = fast_notebooks[name].result()
        nbformat.write(executed, folder / f"{Path(name).stem}.fast.ipynb")   # the same content: the same signature
        shutil.copy(REPO / name, folder / name)
        if name == "Visualizing_BERT.ipynb":
            executed.metadata["hw8"]["copied"] = "unsigned"                    # another digest: not trusted
            nbformat.write(executed, folder / "unsigned.fast.ipynb")
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")], metadata=front_end_metadata())
    nbformat.write(plain, folder / "plain.ipynb")
    return folder


@pytest.fixture(scope="module", params=["lab", "notebook"])
def front_end(request, root, tmp_path_factory):
    """(server, browser, baseline console errors) for JupyterLab or Notebook 7."""
    server = Server(request.param, root, tmp_path_factory.mktemp(f"jupyter-{request.param}"))
    try:
        with chromium() as browser:
            report = opened(server, browser, root / "plain.ipynb")
            report["page"].close()
            baseline = report["errors"]
            yield server, browser, set(baseline)
    finally:
        server.stop()


def normalised(message: str) -> str:
    """A console message without the server's port or bundle hashes (to compare with the baseline's)."""
    return re.sub(r"127\.0\.0\.1:\d+|[0-9a-f]{16,}", "*", message)


def opened(server: Server, browser, path: Path, shots: Path | None = None,
           draw_timeout_s: float = DRAW_TIMEOUT_S) -> dict:
    """Open the notebook at `path` (in the served folder) as a student does, wait for its kernel and its views (at most
    `draw_timeout_s` after the kernel started), and report what the page shows."""
    name, views = path.name, [view_id for view_id, _ in view_outputs(nbformat.read(path, as_version=4))]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(normalised(m.text)) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(normalised(str(e))))
    try:
        page.goto(server.url(name), timeout=OPEN_TIMEOUT_MS)
        page.wait_for_function(f"() => {PANEL} && {PANEL}.content && {PANEL}.content.widgets.length > 0",
                               timeout=OPEN_TIMEOUT_MS)
        page.evaluate(STATE)                          # the kernel has started
        current = page.evaluate(f"() => {PANEL}.context.path")
        assert current == name, f"the front end shows {current}, not {name}"
        n_cells = page.evaluate(f"() => {PANEL}.content.widgets.length")
        for index in range(n_cells):                  # bring every cell into view, as a student scrolling through
            page.evaluate(f"() => {PANEL}.content.scrollToItem({index}, 'start')")
        started = time.monotonic()
        deadline = started + draw_timeout_s
        while True:
            drawn = page.evaluate(VIEWS)
            if sum(v["lines"] > 0 for v in drawn) >= len(views) or time.monotonic() > deadline:
                draw_s = time.monotonic() - started
                break
            time.sleep(1)
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
            for number, view in enumerate(drawn):
                locator = page.locator(f"#bertviz-{view['id']}")
                locator.scroll_into_view_if_needed()
                locator.screenshot(path=str(shots / f"{Path(name).stem}-view{number + 1:02d}.png"))
        images = page.evaluate("""() => Array.from(document.querySelectorAll('.jp-OutputArea-output img'))
            .map(i => ({width: i.naturalWidth, src: i.src.slice(0, 22)}))""")
        time.sleep(2)                                 # a late metadata write would mark the notebook modified
        state = page.evaluate(STATE)
        text = page.evaluate("() => document.body.textContent")
        libraries = page.evaluate("() => (document.getElementById('hw8-libraries') || {}).textContent || null")
        lines = page.evaluate("() => document.querySelectorAll('.jp-OutputArea-output svg line').length")
        return {**state, "views": drawn, "expected_views": len(views), "svg_lines": lines, "images": images,
                "draw_s": draw_s,
                "text": text, "errors": errors, "libraries": libraries, "page": page}
    except Exception:
        page.close()
        raise


def check_views(report: dict, name: str) -> None:
    assert len(report["views"]) == report["expected_views"] > 0, \
        f"{name}: {len(report['views'])} bertviz views in the page, {report['expected_views']} in the notebook"
    blank = [v for v in report["views"] if not (v["svg"] and v["lines"] and v["labels"] >= 2)]
    assert not blank, f"{name}: {len(blank)} of {len(report['views'])} bertviz views not drawn: {blank[:3]}"
    unfilled = [v for v in report["views"] if v["empty_selects"]]
    assert not unfilled, f"{name}: views with an empty dropdown: {unfilled[:3]}"
    assert not [v for v in report["views"] if v["note"]], f"{name}: a view still shows its 'stays blank' note"
    assert report["libraries"] and "loaded" in report["libraries"], report["libraries"]


def check_console(report: dict, baseline: set[str], name: str) -> None:
    new = [e for e in report["errors"] if e not in baseline]
    assert not new, f"{name}: console errors that a plain notebook does not show: {new[:5]}"


def check_progress_bars(report: dict, root: Path, name: str) -> list[str]:
    nb = nbformat.read(root / name, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})], \
        f"{name}: widget outputs left (they need live widget state)"
    bars = [str(o["data"]["text/plain"]) for o in outputs if BAR.search(str(o.get("data", {}).get("text/plain", "")))]
    for bar in bars:
        assert "100%" in bar, f"{name}: an unfinished bar was saved: {bar}"
        assert bar.split("|")[0].strip() in report["text"], f"{name}: bar {bar!r} not shown"
    for message in WIDGET_ERRORS:
        assert message not in report["text"], f"{name}: the page shows {message!r}"
    return bars


# ---------------------------------------------------------------------------------------------------- tests
def test_executed_notebooks_open_trusted_unmodified_and_complete(front_end, root):
    server, browser, baseline = front_end
    shots = SHOTS / ("jupyterlab" if server.app == "lab" else "notebook7")
    bars = []
    for name in NOTEBOOKS:
        executed = f"{Path(name).stem}.fast.ipynb"
        report = opened(server, browser, root / executed, shots if "BERT" in name else None)
        try:
            print(f"{server.app} {executed}: every view drawn {report['draw_s']:.1f} s after the kernel started")
            assert report["untrusted_code_cells"] == 0, f"{executed}: not trusted (unsigned?)"
            assert not report["dirty"], f"{executed}: marked modified on opening"
            check_console(report, baseline, executed)
            bars += check_progress_bars(report, root, executed)
            if "BERT" in name:
                check_views(report, executed)
            if name == "Summarization.ipynb":
                first = report["images"][0] if report["images"] else None
                assert first and first["width"] > 100 and first["src"].startswith("data:image/png"), first
                report["page"].locator(".jp-OutputArea-output img").first.screenshot(
                    path=str(shots / "Summarization-first-heat-map.png"))
        finally:
            report["page"].close()
    assert any("train" in bar for bar in bars), f"no training bar among the saved progress bars: {bars}"


def test_committed_notebooks_open_unmodified(front_end, root):
    server, browser, baseline = front_end
    for name in NOTEBOOKS:
        report = opened(server, browser, root / name)
        try:
            assert not report["dirty"], f"{name}: marked modified on opening (metadata != front_end_metadata())"
            check_console(report, baseline, name)
        finally:
            report["page"].close()


def test_an_unsigned_notebook_shows_blank_views_and_says_what_to_do(front_end, root):
    """The control: without the signature the front end strips the scripts (what every view showed before)."""
    server, browser, _ = front_end
    # The front end's sanitiser removes the scripts when it renders the outputs, so they cannot draw later: a short
    # wait after the kernel started is enough for the control (the signed copies draw within it).
    report = opened(server, browser, root / "unsigned.fast.ipynb", draw_timeout_s=UNSIGNED_WAIT_S)
    try:
        assert report["untrusted_code_cells"] > 0
        with pytest.raises(AssertionError):
            check_views(report, "unsigned")
        assert report["svg_lines"] == 0, "an untrusted notebook ran the views' scripts"
        # the sanitiser drops the ids, so the notes are counted by their text
        assert report["text"].count("This bertviz view is drawn by JavaScript") == report["expected_views"]
        assert "Trust Notebook" in report["text"] and "are not running" in report["text"]
    finally:
        report["page"].close()


def test_committed_metadata_is_what_the_front_ends_write():
    for name in NOTEBOOKS:
        metadata = json.loads(json.dumps(nbformat.read(REPO / name, as_version=4).metadata))
        expected = front_end_metadata()
        assert {k: metadata.get(k) for k in expected} == expected, name
