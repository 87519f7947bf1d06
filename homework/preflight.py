"""`make run`'s preflight: the visible checks of the kernel_attention.py functions Summarization.ipynb trains with.

Summarization.ipynb trains a Transformer (12-18 minutes) built from the masks, scaled_dot_product_attention,
split_heads / merge_heads, MultiHeadAttention and the sinusoidal positional encoding of kernel_attention.py. A bug
there costs a long training run on broken attention, so `make run` first runs the visible tests of those functions
(CHECKS: a dozen tests of tests/test_kernel_attention.py, a few seconds) and does not run Summarization.ipynb if one
fails. The optional 1(c) (positional_shift_matrix) is not checked: the training does not use it.

A failure is named by the function it points at: the innermost frame of kernel_attention.py in the traceback (a
function that raised), else a function the failing line of the test calls (`ka.merge_heads(...)`), else the function
the test checks. A function whose body is still the stub (`raise NotImplementedError(...)`) is named even when no
test reaches it (merge_heads behind an unwritten split_heads). A function that fails only because a function it uses
failed (MultiHeadAttention uses scaled_dot_product_attention) is listed after them, not among the failed ones.

    python -m homework.preflight [--repo FOLDER]     # exit status 1 if a check failed
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from homework.submission import stub_functions

REPO = Path(__file__).resolve().parents[1]

MODULE = "kernel_attention.py"
TEST_FILE = "tests/test_kernel_attention.py"
TIMEOUT = 300           # seconds for the whole pytest run (it takes a few)
MESSAGE_CHARS = 160


@dataclass(frozen=True)
class Check:
    test: str                               # a test function of TEST_FILE (every parameter of it runs)
    function: str                           # the function it checks
    aliases: tuple[tuple[str, str], ...] = ()   # (variable, function): a failing line that uses it names the function


# Grouped by the function they check.
CHECKS = (
    Check("test_causal_mask_is_lower_triangular", "causal_mask"),
    Check("test_padding_and_combined_masks", "combine_masks", (("pad", "padding_mask"),)),
    Check("test_sdpa_matches_torch_without_and_with_mask", "scaled_dot_product_attention"),
    Check("test_sdpa_causal_matches_torch_is_causal", "scaled_dot_product_attention"),
    Check("test_fully_masked_query_row_gives_zeros_not_nan", "scaled_dot_product_attention"),
    Check("test_huge_logits_stay_finite", "scaled_dot_product_attention"),
    Check("test_half_precision_inputs", "scaled_dot_product_attention"),
    Check("test_split_and_merge_heads", "split_heads"),          # its last line calls ka.merge_heads
    Check("test_multi_head_attention_matches_torch_with_padding_and_causal", "MultiHeadAttention"),
    Check("test_multi_head_cross_attention_with_other_key_width", "MultiHeadAttention"),
    Check("test_sinusoidal_encoding_closed_form", "sinusoidal_positional_encoding"),
    Check("test_positional_encoding_module_adds_encoding", "PositionalEncoding"),
)
# Every function the preflight can name, in the order of kernel_attention.py.
FUNCTIONS = ("causal_mask", "padding_mask", "combine_masks", "scaled_dot_product_attention", "split_heads",
             "merge_heads", "MultiHeadAttention", "sinusoidal_positional_encoding", "PositionalEncoding")
USES = {
    "MultiHeadAttention": ("causal_mask", "padding_mask", "combine_masks", "scaled_dot_product_attention",
                           "split_heads", "merge_heads"),
    "PositionalEncoding": ("sinusoidal_positional_encoding",),
}
FRAME = re.compile(r"^(\S.*?):(\d+): in (\S+)$")       # a --tb=short frame: "kernel_attention.py:236: in split_heads"
CALLED = re.compile(r"\bka\.(\w+)")


@dataclass
class Failure:
    test: str                   # test id: "test_half_precision_inputs[dtype0]"
    function: str | None        # the function it points at (None: the checks could not run)
    message: str                # the assertion or exception message, one line, shortened


@dataclass
class PreflightResult:
    passed: bool
    seconds: float
    failed_functions: list[str] = field(default_factory=list)     # the functions to fix, in FUNCTIONS order
    also_failing: dict[str, list[str]] = field(default_factory=dict)  # function -> the failed ones it uses
    failures: list[Failure] = field(default_factory=list)
    checks: int = 0                                                # test cases run
    message: str = ""

    @property
    def reason(self) -> str:
        """'preflight failed: scaled_dot_product_attention, merge_heads', for the summary of `make run`."""
        return "preflight failed: " + (", ".join(self.failed_functions) or "the checks could not run")


def node_ids() -> list[str]:
    return [f"{TEST_FILE}::{check.test}" for check in CHECKS]


def shorten(message: str) -> str:
    """First line of a failure message, with torch's 'Greatest absolute difference' line if there is one."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    difference = next((line for line in lines[1:] if line.startswith("Greatest absolute difference")), None)
    if difference:
        text += f" ({difference})"
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 3] + "..."


def module_scopes(module: Path) -> list[tuple[int, int, str]]:
    """(first line, last line, top-level name) of every top-level function and class of `module` ([] if it does not
    parse)."""
    try:
        tree = ast.parse(module.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return []
    return [(node.lineno, node.end_lineno or node.lineno, node.name) for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def stubbed_functions(module: Path) -> set[str]:
    """The FUNCTIONS of `module` still left as the stub (a class: one of its methods is), as `make submission`
    finds them (homework.submission.stub_functions); none if it does not parse."""
    try:
        stubs = stub_functions(module.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return set()
    return {name.split(".")[0] for name in stubs} & set(FUNCTIONS)


def frames(text: str) -> list[tuple[str, int, str]]:
    """(file, line, failing source line) of every frame of a --tb=short traceback, outermost first."""
    found, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        match = FRAME.match(line)
        if match:
            source = lines[i + 1].strip() if i + 1 < len(lines) and lines[i + 1].startswith(" ") else ""
            found.append((match.group(1), int(match.group(2)), source))
    return found


def culprit(check: Check, traceback: str, scopes: list[tuple[int, int, str]]) -> str:
    """The function a failed test points at (see the module docstring)."""
    trace = frames(traceback)
    for file, line, _ in reversed(trace):
        if Path(file).name == MODULE and Path(file).parent.name != "tests":
            name = next((n for first, last, n in scopes if first <= line <= last), None)
            if name in FUNCTIONS:
                return name
    in_test = [source for file, _, source in trace if Path(file).name == Path(TEST_FILE).name]
    source = in_test[-1] if in_test else ""
    called = [n for n in CALLED.findall(source) if n in FUNCTIONS]
    if check.function in called:
        return check.function
    if called:
        return called[0]
    for variable, function in check.aliases:
        if re.search(rf"\b{re.escape(variable)}\b", source):
            return function
    return check.function


def parse_junit(path: Path, scopes: list[tuple[int, int, str]]) -> tuple[int, list[Failure]]:
    """(test cases run, their failures) from pytest's junit XML. A collection error (kernel_attention.py does not
    import) is one failure with no function."""
    by_test = {check.test: check for check in CHECKS}
    cases, failures = 0, []
    for case in ET.parse(path).iter("testcase"):
        name = case.get("name", "")
        check = by_test.get(name.split("[", 1)[0])
        problem = next((child for child in case if child.tag in ("failure", "error")), None)
        if check is not None:
            cases += 1
        if problem is None:
            continue
        message = shorten(problem.get("message") or problem.text or "")
        text = problem.text or ""
        if check is None:           # collection error: show the exception (the last 'E' line), not pytest's words
            errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ") and line[1:].strip()]
            failures.append(Failure(name or "collection", None, shorten(errors[-1] if errors else message)))
        else:
            failures.append(Failure(name, culprit(check, text, scopes), message))
    return cases, failures


def describe(result: PreflightResult) -> str:
    """The lines `make run` prints for a result."""
    if result.passed:
        return f"preflight: {result.checks} checks of {MODULE} passed ({result.seconds:.1f} s)"
    failed_tests = len({f.test for f in result.failures})
    head = (f"preflight: {failed_tests} of {result.checks} checks of {MODULE} failed ({result.seconds:.1f} s)"
            if result.checks else f"preflight: the checks of {MODULE} could not run ({result.seconds:.1f} s)")
    lines = [head + "; Summarization.ipynb would train with these functions. Fix:"]
    for function in result.failed_functions:
        mine = [f for f in result.failures if f.function == function]
        if mine:
            more = f" (and {len(mine) - 1} more check(s))" if len(mine) > 1 else ""
            lines.append(f"  {function}: {mine[0].test}: {mine[0].message}{more}")
        else:
            lines.append(f"  {function}: not written yet (raises NotImplementedError)")
    for function, uses in result.also_failing.items():
        lines.append(f"  ({function} fails too; it uses {', '.join(uses)})")
    for failure in result.failures:
        if failure.function is None:
            lines.append(f"  {failure.test}: {failure.message}")
    lines.append(f"The checks alone: python -m homework.preflight, or python -m pytest {TEST_FILE} (all of them).")
    return "\n".join(lines)


def run_preflight(repo: Path = REPO, timeout: int = TIMEOUT) -> PreflightResult:
    """Run CHECKS with pytest in a subprocess (cwd = repo, so repo's kernel_attention.py is the one tested)."""
    repo = Path(repo).resolve()
    start = time.monotonic()
    if not (repo / TEST_FILE).is_file() or not (repo / MODULE).is_file():
        missing = TEST_FILE if not (repo / TEST_FILE).is_file() else MODULE
        result = PreflightResult(False, 0.0, failures=[Failure(missing, None, f"{repo / missing} not found")])
        result.message = describe(result)
        return result
    scopes = module_scopes(repo / MODULE)
    with tempfile.TemporaryDirectory(prefix="hw8_preflight_") as tmp:
        xml = Path(tmp) / "preflight.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=short", "-o", "addopts=",
                   f"--junitxml={xml}", *node_ids()]
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        try:
            done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
            output, code = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired:
            output, code = f"the checks took longer than {timeout} s", None
        cases, failures = parse_junit(xml, scopes) if xml.is_file() else (0, [])
    seconds = time.monotonic() - start
    if code != 0 and not failures:      # pytest could not run them (not installed, a test id not found, timeout)
        tail = [line.strip() for line in output.splitlines() if line.strip()][-3:]
        failures = [Failure("pytest", None, shorten(" | ".join(tail)) or f"pytest exited with {code}")]
    failed = {f.function for f in failures if f.function} | stubbed_functions(repo / MODULE)
    also = {name: [u for u in USES.get(name, ()) if u in failed] for name in FUNCTIONS if name in failed}
    result = PreflightResult(
        passed=code == 0 and not failures and not failed, seconds=seconds,
        failed_functions=[name for name in FUNCTIONS if name in failed and not also[name]],
        also_failing={name: uses for name, uses in also.items() if uses},
        failures=failures, checks=cases)
    result.message = describe(result)
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
