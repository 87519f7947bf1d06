"""`make run`'s preflight: the visible tests of the kernel_attention.py functions Summarization.ipynb trains with.

Summarization.ipynb trains a Transformer (10-18 minutes) built from the masks, scaled_dot_product_attention,
split_heads / merge_heads, MultiHeadAttention and the positional encoding of kernel_attention.py. A bug there costs a
long training run on broken attention, so `make run` first runs their visible tests and does not run
Summarization.ipynb if one fails. Those tests carry the marker `@pytest.mark.preflight("function")` in
tests/test_kernel_attention.py; the preflight is

    python -m pytest -m preflight tests/test_kernel_attention.py

with this module loaded as a pytest plugin (`-p homework.preflight`), which writes down the functions of the tests
that failed. What it prints: pytest's one-line report of each failure, then the functions to fix in the order of the
test file (a later one may fail only because it uses an earlier one).

    python -m homework.preflight [--repo FOLDER]     # exit status 1 if a check failed
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = "preflight"
MODULE = "kernel_attention.py"
TEST_FILE = "tests/test_kernel_attention.py"
REPORT_ENV = "HW8_PREFLIGHT_REPORT"     # where the plugin writes what it saw (JSON)
TIMEOUT = 300                           # seconds for the whole pytest run (it takes a few)
MESSAGE_CHARS = 160
REPORT_LINE = re.compile(r"\.py:\d+: \w")


@dataclass
class Failure:
    test: str                   # test name: "test_half_precision_inputs[dtype0]"
    function: str | None        # the function(s) its marker names; None: the tests could not run
    message: str                # the exception's first line, shortened


@dataclass
class PreflightResult:
    passed: bool
    seconds: float
    failed_functions: list[str] = field(default_factory=list)   # in the order of the test file
    failures: list[Failure] = field(default_factory=list)
    checks: int = 0                                              # test cases run
    message: str = ""

    @property
    def reason(self) -> str:
        """'preflight failed: scaled_dot_product_attention, MultiHeadAttention', for the summary of `make run`."""
        return "preflight failed: " + (", ".join(self.failed_functions) or "the checks could not run")


def shorten(message: str) -> str:
    """First line of a failure message, with torch's 'Greatest absolute difference' line if there is one."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    difference = next((line for line in lines[1:] if line.startswith("Greatest absolute difference")), None)
    if difference:
        text += f" ({difference})"
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 3] + "..."


# ------------------------------------------------------------------ the plugin (runs inside the pytest subprocess)
_seen: dict = {"functions": {}, "cases": 0, "failures": []}


def pytest_collection_modifyitems(items):
    for item in items:
        marker = item.get_closest_marker(MARKER)
        if marker is not None:
            _seen["functions"][item.nodeid] = ", ".join(marker.args)


def pytest_collectreport(report):
    if report.failed:
        errors = [line[1:].strip() for line in report.longreprtext.splitlines() if line.startswith("E ")]
        _seen["failures"].append({"test": report.nodeid or "collection", "function": None,
                                  "message": shorten(errors[-1] if errors else report.longreprtext)})


def pytest_runtest_logreport(report):
    if report.when == "call" and report.nodeid in _seen["functions"]:
        _seen["cases"] += 1
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        _seen["failures"].append({"test": report.nodeid.split("::")[-1],
                                  "function": _seen["functions"].get(report.nodeid),
                                  "message": shorten(crash.message if crash else report.longreprtext)})


def pytest_sessionfinish(session):
    path = os.environ.get(REPORT_ENV)
    if path:
        order = list(dict.fromkeys(_seen["functions"].values()))
        Path(path).write_text(json.dumps({**_seen, "order": order}))


# ------------------------------------------------------------------ the caller (make run)
def describe(result: PreflightResult, pytest_lines: list[str]) -> str:
    """The lines `make run` prints for a result."""
    if result.passed:
        return f"preflight: {result.checks} checks of {MODULE} passed ({result.seconds:.1f} s)"
    failed_tests = len({f.test for f in result.failures})
    head = (f"preflight: {failed_tests} of {result.checks} checks of {MODULE} failed ({result.seconds:.1f} s)"
            if result.checks else f"preflight: the checks of {MODULE} could not run ({result.seconds:.1f} s)")
    lines = [head + "; Summarization.ipynb would train with these functions.", *pytest_lines]
    if result.failed_functions:
        lines.append("Fix, in this order (a later one may fail only because it uses an earlier one):")
    for function in result.failed_functions:
        mine = [f for f in result.failures if f.function == function]
        stub = " (not written yet)" if any(f.message.startswith("NotImplementedError") for f in mine) else ""
        lines.append(f"  {function}{stub}: {mine[0].test}: {mine[0].message}"
                     + (f" (and {len(mine) - 1} more check(s))" if len(mine) > 1 else ""))
    lines += [f"  {f.test}: {f.message}" for f in result.failures if f.function is None]
    lines.append(f"The checks alone: python -m homework.preflight, or python -m pytest {TEST_FILE} (all of them).")
    return "\n".join(lines)


def run_preflight(repo: Path = REPO, timeout: int = TIMEOUT) -> PreflightResult:
    """Run the marked tests with pytest in a subprocess (cwd = repo: repo's kernel_attention.py is the one tested)."""
    repo = Path(repo).resolve()
    start = time.monotonic()
    missing = next((rel for rel in (TEST_FILE, MODULE) if not (repo / rel).is_file()), None)
    if missing is not None:
        result = PreflightResult(False, 0.0, failures=[Failure(missing, None, f"{repo / missing} not found")])
        result.message = describe(result, [])
        return result
    with tempfile.TemporaryDirectory(prefix="hw8_preflight_") as tmp:
        report_file = Path(tmp) / "preflight.json"
        command = [sys.executable, "-m", "pytest", "-m", MARKER, "-q", "-p", "no:cacheprovider", "-p",
                   "homework.preflight", "--tb=line", "-o", "addopts=", TEST_FILE]
        env = dict(os.environ, HF_HUB_OFFLINE="1", **{REPORT_ENV: str(report_file)})
        try:
            done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
            output, code = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired:
            output, code = f"the checks took longer than {timeout} s", None
        seen = json.loads(report_file.read_text()) if report_file.is_file() else None
    seconds = time.monotonic() - start
    if seen is None:                    # pytest could not run them (not installed, the plugin not found, timeout)
        tail = [line.strip() for line in output.splitlines() if line.strip()][-3:]
        seen = {"cases": 0, "order": [], "failures": [
            {"test": "pytest", "function": None, "message": shorten(" | ".join(tail)) or f"pytest exited {code}"}]}
    failures = [Failure(**f) for f in seen["failures"]]
    failed = {f.function for f in failures}
    result = PreflightResult(passed=code == 0 and not failures, seconds=seconds,
                             failed_functions=[name for name in seen["order"] if name in failed],
                             failures=failures, checks=seen["cases"])
    report = [line for line in output.splitlines() if REPORT_LINE.search(line)]     # pytest's --tb=line lines
    result.message = describe(result, [f"  {line.replace(f'{repo}{os.sep}', '')}" for line in report[:12]])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=REPO, help="folder holding kernel_attention.py and tests/")
    args = parser.parse_args(argv)
    result = run_preflight(args.repo)
    print(result.message, flush=True)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
