"""Trusted grading harness: runs the student's code in a sandboxed child, compares outputs in this process.

Used by Gradescope (`run_autograder` calls `python -I grading/harness.py --gradescope`) and by
grading/autograde.py. For each check of the cases file (grading/checks.py) the parent draws the inputs from a seeded
generator, computes the expected output with the instructor's code (in this process), sends the inputs over a pipe
to one child process that imported the student's modules (grading/sandbox_child.py), and compares what comes back.
The child runs as an unprivileged user that cannot see instructor files (grading/sandbox.py); a crash, an exit, a
timeout or an unparsable reply scores 0 for that check with a message, and the child is restarted for the next.
Scores and results.json are written only by this process, after every child has been killed.

This file runs the checks (`run_cases`, `run_course`: one call for a course and a submission) and writes results;
grading/sandbox_parent.py starts the sandboxed child (grading/sandbox_child.py) and speaks its protocol;
grading/reference.py is the instructor's side.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script by run_autograder

import nbformat

from grading import sandbox
from grading.checks import Case, FileCase, compare_values
from grading.course import Course, load_course
from grading.reference import REFERENCE_LOCK, Reference, build_request, expected_output, notebook_cells
from grading.sandbox_parent import Budget, Child
from grading.submitted import Refused, check_regular, copy_regular, find_root, read_notebook, special_entries
from homework.parts import cell_grade_id


@dataclass
class TestResult:
    """One graded check (the fields of a Gradescope test, plus the grade cell it confirms)."""

    name: str
    score: float
    max_score: float
    output: str
    nbgrader_cell: str | None = None

    def as_gradescope(self) -> dict:
        return {"name": self.name, "score": self.score, "max_score": self.max_score, "output": self.output,
                "status": "passed" if self.score >= self.max_score else "failed", "visibility": "visible"}


def load_cases(path: Path) -> list[Case | FileCase]:
    """The CASES list of a cases file (trusted instructor code)."""
    spec = importlib.util.spec_from_file_location(f"hw8_cases_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return list(module.CASES)


def stage_for_checks(cases: list, submission: Path, reference: Reference, staged: Path, modules: list[str],
                     notebooks: list[str], support: list[str]) -> dict[str, str]:
    """Copy the student's modules and the code of its notebook checks (and the instructor's support files) into the
    staged folder; returns {module key: why it is missing} (not submitted, unreadable, or refused: a link)."""
    missing = {}
    for rel in support:
        src = reference.folder / rel
        if src.is_dir():
            shutil.copytree(src, staged / rel, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            (staged / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, staged / rel)
    for rel in modules:
        problem = copy_regular(submission, rel, staged / Path(rel).name)
        if problem:
            missing[Path(rel).stem] = problem
    by_name = {Path(rel).name: rel for rel in notebooks}
    loaded: dict[str, tuple] = {}                     # notebook name -> (student, problem, instructor), read once
    for case in cases:
        if not isinstance(case, Case) or not case.module.endswith(".ipynb") or case.module_key in missing:
            continue
        if case.module not in loaded:
            rel = by_name.get(case.module, case.module)
            try:
                student, problem = read_notebook(submission, rel)[0], ""
            except (FileNotFoundError, Refused) as err:
                student, problem = None, str(err)
            loaded[case.module] = (student, problem, nbformat.read(reference.folder / case.module, as_version=4))
        student, problem, instructor = loaded[case.module]
        if student is None:
            missing[case.module_key] = problem
            continue
        present = {cell_grade_id(c) for c in student.cells if c.cell_type == "code"}     # as nbgrader's route
        absent = [c for c in case.cells if c not in present]
        if absent:
            missing[case.module_key] = (f"{case.module} has no cell {', '.join(absent)} (deleted, or its nbgrader "
                                        "metadata was changed)")
            continue
        (staged / f"{case.module_key}.cells.json").write_text(
            json.dumps(notebook_cells(instructor, student, case.cells, case.preamble)))
    return missing


def run_cases(cases: list, submission: Path, reference_dir: Path, modules: list[str], notebooks: list[str],
              default_timeout: float, hide: list[Path], keep: list[Path], support: list[str] = (),
              uid: int = sandbox.SANDBOX_UID, budget: float = 600) -> list[TestResult]:
    """Grade one submission folder with every case; never raises because of the submission.

    uid: the sandbox user (grading runs at the same time must use different ones); budget: wall-clock seconds for
    the whole submission (checks after it is spent score 0 with a message)."""
    reference = Reference(reference_dir)
    staged = sandbox.private_folder("hw8-staged-")
    missing = stage_for_checks(cases, submission, reference, staged, modules, notebooks, list(support))
    child = Child(staged, hide=[*hide, submission], keep=keep, uid=uid, budget=Budget(budget))
    results = []
    try:
        hung = load_modules(cases, child, missing, default_timeout)
        for case in cases:
            try:
                results.append(_run_one(case, child, reference, submission, {**missing, **hung}, default_timeout))
            except BaseException as err:  # noqa: BLE001 - e.g. a native library's panic: this check's alone
                if isinstance(err, KeyboardInterrupt):
                    raise
                results.append(TestResult(case.name, 0.0, case.points, f"the grader could not run this check "
                                          f"({type(err).__name__}: {str(err)[:300]}); tell the course staff",
                                          case.nbgrader_cell))
    finally:
        child.close()
        reference.close()
        shutil.rmtree(staged, ignore_errors=True)
    return results


def run_course(course: Course, submission: Path, *, hide: list[Path], reference_dir: Path | None = None,
               uid: int = sandbox.SANDBOX_UID, cases: list | None = None) -> list[TestResult]:
    """Grade one submission folder with the course's checks, modules, notebooks, support files and time limits (the
    one call both graders make). reference_dir: the instructor's code (default: the course's root); cases: the
    course's cases file unless given; this interpreter's own installation stays visible to the sandbox."""
    return run_cases(load_cases(course.cases_path) if cases is None else cases, submission,
                     course.root if reference_dir is None else reference_dir, course.student_modules,
                     course.notebooks, course.case_timeout, hide=hide, keep=[Path(sys.prefix), Path(sys.base_prefix)],
                     support=course.check_support, uid=uid, budget=course.submission_timeout)


def load_modules(cases: list, child: Child, missing: dict[str, str], timeout: float) -> dict[str, str]:
    """Import each student module / notebook once, before any check, each under `timeout`: an import that hangs is
    found here, once, and every check that needs it scores 0 at once instead of timing out again and again.
    Returns {module key: why it cannot be used}. An import that raises is not recorded: each check reports it."""
    hung = {}
    keys = dict.fromkeys(c.module_key for c in cases if isinstance(c, Case) and c.module_key not in missing)
    for key in keys:
        reply, problem = child.call({"load": key}, timeout)
        if reply is None:
            name = key.split("[", 1)[0]
            hung[key] = f"loading {name} did not finish ({problem})"
    return hung


def _run_one(case, child: Child, reference: Reference, submission: Path, missing: dict[str, str],
             default_timeout: float) -> TestResult:
    def result(ok: bool, output: str) -> TestResult:
        return TestResult(case.name, case.points if ok else 0.0, case.points, output, case.nbgrader_cell)

    hint = f" ({case.hint})" if case.hint else ""
    if isinstance(case, FileCase):
        try:
            path = check_regular(submission, case.path)
        except (FileNotFoundError, Refused) as err:
            return result(False, str(err))
        try:
            message = case.check(path, reference.module)
        except Exception as err:  # noqa: BLE001 - an unreadable file is the submission's problem
            message = f"{case.path} could not be checked: {type(err).__name__}: {str(err)[:300]}"
        return result(message is None, (message + hint) if message else "passed")
    name = case.module_key if case.module.endswith(".ipynb") else case.module.split(".")[0]
    if name in missing or case.module_key in missing:
        return result(False, f"{missing.get(name) or missing[case.module_key]}: 0 points for this check")
    with REFERENCE_LOCK:                              # torch's global RNG is shared by grading threads
        request = build_request(case, reference)
        expected, expected_attrs = expected_output(case, request, reference)
    offset = child.log_offset()
    reply, problem = child.call(request, case.timeout or default_timeout)
    log = child.log_since(offset).strip()
    tail = f"\n--- output of your code ---\n{log}" if log else ""
    if reply is None:
        return result(False, f"{problem}{hint}{tail}")
    if not reply["ok"]:
        return result(False, f"your code raised an exception{hint}:\n{str(reply.get('error'))[-1500:]}{tail}")
    compare = case.compare or (lambda got, exp, req: compare_values(got, exp, case.atol, case.rtol))
    try:
        message = compare(reply.get("value"), expected, request)
        if message is None and expected_attrs:
            message = compare_values(reply.get("attrs"), expected_attrs, case.atol, case.rtol, "attributes")
    except Exception as err:  # noqa: BLE001 - odd values (wrong types) are the submission's problem
        message = f"the output could not be compared: {type(err).__name__}: {str(err)[:300]}"
    return result(message is None, (message + hint + tail) if message else "passed")


def write_results(path: Path, results: list[TestResult], output: str, seconds: float = 0.0) -> dict:
    """Write Gradescope's results.json atomically (after the student's processes are gone), with every key of its
    documented schema (grading/gradescope_check.py validates them)."""
    payload = {"score": round(sum(r.score for r in results), 4), "execution_time": round(seconds),
               "output": output, "output_format": "text", "visibility": "visible", "stdout_visibility": "hidden",
               "tests": [r.as_gradescope() for r in results]}
    write_atomically(path, json.dumps(payload, indent=1))
    return payload


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def gradescope(root: Path) -> dict:
    """The whole run_autograder step: grade root/submission with root/source, write root/results/results.json.

    $HW8_SANDBOX_EXTRA_HIDE (paths separated by ':') hides more folders from the student's code, for local tests
    on a machine that also holds the instructor repository."""
    source, results_path = root / "source", root / "results" / "results.json"
    results_path.unlink(missing_ok=True)          # whatever was there is not ours
    started = time.monotonic()
    try:
        course: Course = load_course(source / "course.toml")
        submission = find_root(root / "submission", course.submission_files)
        if sandbox.is_root():
            os.chmod(source, 0o700)
            results_path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(results_path.parent, 0o755)
        extra = [Path(p) for p in os.environ.get("HW8_SANDBOX_EXTRA_HIDE", "").split(os.pathsep) if p]
        results = run_course(course, submission, hide=[source, root / "results", *extra],
                             reference_dir=source / "reference")
        refused = special_entries(root / "submission")
        output = (f"{sandbox.describe()}\ngraded in {time.monotonic() - started:.1f} s"
                  + (f"\nrefused (not regular files): {', '.join(refused)}" if refused else ""))
    except BaseException as err:  # noqa: BLE001 - a panic or MemoryError while grading: say so, score 0
        if isinstance(err, KeyboardInterrupt):
            raise
        results = []
        output = "The autograder failed before grading (0 points); please tell the course staff.\n" + \
            traceback.format_exc()[-3000:]
    sandbox.kill_sandbox_processes()
    results_path.unlink(missing_ok=True)
    return write_results(results_path, results, output, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gradescope", action="store_true", help="run as Gradescope's run_autograder step")
    parser.add_argument("--root", default=os.environ.get("HW8_AUTOGRADER_ROOT", "/autograder"),
                        help="the /autograder folder ($HW8_AUTOGRADER_ROOT)")
    args = parser.parse_args(argv)
    if not args.gradescope:
        parser.error("only --gradescope is a command; autograde.py uses run_cases directly")
    payload = gradescope(Path(args.root))
    print(json.dumps({"score": payload["score"], "tests": len(payload["tests"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
