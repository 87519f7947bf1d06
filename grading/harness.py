"""Trusted grading harness: runs the student's code in a sandboxed child, compares outputs in this process.

Used by Gradescope (`run_autograder` calls `python -I grading/harness.py --gradescope`) and by
grading/autograde.py. For each check of the cases file (grading/checks.py) the parent draws the inputs from a seeded
generator, computes the expected output with the instructor's code (in this process), sends the inputs over a pipe
to one child process that imported the student's modules (grading/sandbox_child.py), and compares what comes back.
The child runs as an unprivileged user that cannot see instructor files (grading/sandbox.py); a crash, an exit, a
timeout or an unparsable reply scores 0 for that check with a message, and the child is restarted for the next.
Scores and results.json are written only by this process, after every child has been killed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import selectors
import shutil
import struct
import subprocess
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nbformat
import torch

from grading import sandbox
from grading.checks import Case, FileCase, compare_values
from grading.course import GRADING_DIR, Course, load_course
from grading.sandbox_child import MAX_MESSAGE, decode, encode, load_notebook_module
from grading.submitted import Refused, check_regular, copy_regular, find_root, read_regular, special_entries
from homework.parts import cell_grade_id

CHILD_SOURCE = (GRADING_DIR / "sandbox_child.py").read_text()
LOG_TAIL = 1500
REFERENCE_LOCK = threading.RLock()
STARTUP_TIMEOUT = 300   # seconds for the sandboxed Python to import torch (slow on a loaded machine)
WORK_MOUNT = "/tmp/hw8-work"     # the student's working folder inside the sandbox
MEMORY_LIMIT = 8 * 2**30         # address space of the student's process (torch alone reserves ~2 GiB)
OUTPUT_LIMIT = 16 * 2**20        # bytes of any file it writes, its printed output included


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
                "visibility": "visible"}


class Child:
    """One sandboxed student process that answers call requests; restarted after a timeout or a crash.

    staged: the root-only folder holding the student's files and the support files; the child sees a copy of it as
    its working folder (a fresh tmpfs in the sandbox, the folder itself when there is no namespace)."""

    def __init__(self, staged: Path, hide: list[Path], keep: list[Path], uid: int, budget: Budget) -> None:
        self.staged, self.hide, self.keep, self.uid, self.budget = staged, hide, keep, uid, budget
        self.private = sandbox.private_folder("hw8-harness-")              # root-only: the log
        self.log_path = self.private / "student_output.log"
        self.log = self.log_path.open("wb")
        self.proc: subprocess.Popen | None = None
        self.replies: int | None = None
        self.workdir = WORK_MOUNT if sandbox.namespaces_work() else str(staged)

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        argv = [sys.executable, "-I", "-c", CHILD_SOURCE, str(write_fd), self.workdir]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.workdir, "OMP_NUM_THREADS": "1",
               "HF_HUB_OFFLINE": "1", "LANG": "C.UTF-8", "HW8_FAST": "1", "TMPDIR": "/tmp"}
        if sandbox.is_root() and not sandbox.namespaces_work():
            give_to_sandbox(self.staged, self.uid)
        cpu = max(10, int(self.budget.left()) + 10)
        self.proc = subprocess.Popen(
            sandbox.wrap(argv, self.hide, self.keep, self.uid, workdir=(self.staged, WORK_MOUNT)),
            stdin=subprocess.PIPE, stdout=self.log, stderr=self.log, pass_fds=(write_fd,),
            cwd=self.staged if not sandbox.namespaces_work() else "/", env=env, start_new_session=True,
            preexec_fn=lambda: sandbox.limits(cpu, MEMORY_LIMIT, OUTPUT_LIMIT))
        os.close(write_fd)
        self.replies = read_fd
        ready, problem = self._read_reply(STARTUP_TIMEOUT, "starting Python and torch")
        if ready is None:
            raise RuntimeError(f"the grading sandbox did not start: {problem}\n{self.log_since(0)}")

    def call(self, request: dict, timeout: float) -> tuple[dict | None, str]:
        """(reply, "") or (None, why there is no usable reply). Never raises for anything the child does."""
        timeout = min(timeout, self.budget.left())
        if timeout <= 0:
            return None, self.budget.spent_message()
        if self.proc is None or self.proc.poll() is not None:
            try:
                self.start()
            except RuntimeError as err:
                self.stop()
                return None, f"{str(err)[:1000]} (a grader problem, not your code's: tell the course staff)"
        try:
            self.proc.stdin.write(encode(request))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None, self._ended()
        return self._read_reply(timeout)

    def _read_reply(self, timeout: float, doing: str = "") -> tuple[dict | None, str]:
        deadline = time.monotonic() + timeout
        buf = bytearray()
        sel = selectors.DefaultSelector()
        sel.register(self.replies, selectors.EVENT_READ)
        try:
            while True:
                need = 8 if len(buf) < 8 else 8 + struct.unpack(">Q", bytes(buf[:8]))[0]
                if len(buf) >= 8 and need - 8 > MAX_MESSAGE:
                    self.stop()
                    return None, f"the reply is larger than {MAX_MESSAGE >> 20} MiB"
                if len(buf) >= need and len(buf) >= 8:
                    break
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.stop()
                    why = doing or "an infinite loop, or far too slow"
                    return None, f"timed out after {timeout:.0f} s ({why})"
                chunk = os.read(self.replies, 1 << 20)
                if not chunk:
                    return None, self._ended()
                buf += chunk
        finally:
            sel.close()
        try:
            reply = decode(bytes(buf[8:need]))
        except Exception as err:  # noqa: BLE001 - any malformed reply is the submission's fault
            self.stop()
            return None, f"the submission's process sent an unreadable reply ({type(err).__name__})"
        if not isinstance(reply, dict) or "ok" not in reply:
            self.stop()
            return None, "the submission's process sent a reply without a result"
        return reply, ""

    def _ended(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self.stop()
        why = {-9: " (killed: a resource limit or the grader)", -24: " (CPU time limit)", -25: " (file size limit)"}
        return (f"the submission's process ended before answering (exit status {code}{why.get(code, '')}); "
                "no result counts as 0")

    def log_offset(self) -> int:
        self.log.flush()
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as f:
            f.seek(max(offset, self.log_path.stat().st_size - 4 * LOG_TAIL))
            data = f.read()
        text = data.decode("utf-8", errors="replace")
        return text if len(text) <= LOG_TAIL else "...(cut)...\n" + text[-LOG_TAIL:]

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait()
            self.proc = None
        if self.replies is not None:
            os.close(self.replies)
            self.replies = None
        sandbox.kill_sandbox_processes(self.uid)

    def close(self) -> None:
        self.stop()
        self.log.close()
        shutil.rmtree(self.private, ignore_errors=True)


class Budget:
    """Wall-clock seconds one submission may use across all its checks (its CPU time is capped to the same)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.started = seconds, time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def spent_message(self) -> str:
        return f"not run: the submission used up its {self.seconds:.0f} s grading time on earlier checks"


def give_to_sandbox(path: Path, uid: int) -> None:
    """chown a folder tree to the sandbox user (only where no namespace copies it into the sandbox's tmpfs)."""
    for p in [path, *path.rglob("*")]:
        os.lchown(p, uid, uid)


def load_cases(path: Path) -> list[Case | FileCase]:
    """The CASES list of a cases file (trusted instructor code)."""
    spec = importlib.util.spec_from_file_location(f"hw8_cases_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return list(module.CASES)


def notebook_cells(instructor: nbformat.NotebookNode, student: nbformat.NotebookNode, cells: tuple[str, ...] = (),
                   preamble: str = "") -> list[str]:
    """The code a notebook check runs, in the instructor's cell order: the student's solution cells (matched by
    grade_id, first occurrence) and the instructor's locked set-up cells. Test cells and plain cells are left out,
    so edited or deleted test cells change nothing; IPython magics are dropped.
    cells: run only these solution cells, after `preamble` (trusted set-up code) instead of the locked cells."""
    student_cells: dict[str, str] = {}
    for cell in student.cells:
        grade_id = cell_grade_id(cell)
        if cell.cell_type == "code" and grade_id and grade_id not in student_cells:
            student_cells[grade_id] = cell.source
    code = [preamble] if preamble else []
    for cell in instructor.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        if meta.get("solution") and (not cells or meta["grade_id"] in cells):
            source = student_cells.get(meta["grade_id"],
                                       f"raise NotImplementedError('cell {meta['grade_id']} is missing')")
        elif meta.get("locked") and not meta.get("grade") and not cells:
            source = cell.source
        else:
            continue
        code.append("\n".join(line for line in source.split("\n") if not line.lstrip().startswith(("%", "!"))))
    return code


class Reference:
    """The instructor's modules and notebooks, imported in this (trusted) process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self.cache: dict = {}
        self.tmp = sandbox.private_folder("hw8-reference-")

    def module(self, name: str, cells: tuple[str, ...] = (), preamble: str = ""):
        key = f"{name}[{','.join(cells)}]" if cells else name
        if key not in self.cache:
            if str(self.folder) not in sys.path:
                sys.path.insert(0, str(self.folder))
            if name.endswith(".ipynb"):
                nb = nbformat.read(self.folder / name, as_version=4)
                cells_path = self.tmp / f"{key}.cells.json"
                cells_path.write_text(json.dumps(notebook_cells(nb, nb, cells, preamble)))
                self.cache[key] = load_notebook_module(str(cells_path), f"reference_{name[:-6]}")
            else:
                self.cache[key] = importlib.import_module(name)
        return self.cache[key]

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def build_request(case: Case, reference: Reference) -> dict:
    """Inputs drawn in the parent from the case's seed (and the instructor object's weights when asked)."""
    g = torch.Generator().manual_seed(case.seed)
    request = {"target": f"{case.module_key}:{case.attr}", "seed": case.seed, "args": [], "kwargs": {},
               "init": None, "method": None, "attrs": [], "call": case.call}
    request.update(case.inputs(g) if case.inputs is not None else {})
    if case.state_from_reference and request.get("init") is not None:
        torch.manual_seed(case.seed)
        obj = getattr(reference.module(case.module), case.attr)
        instance = obj(*request["init"].get("args", []), **request["init"].get("kwargs", {}))
        request["init"] = {**request["init"], "state": {k: v.clone() for k, v in instance.state_dict().items()}}
    return request


def expected_output(case: Case, request: dict, reference: Reference):
    from grading.sandbox_child import invoke

    if case.reference is not None:
        return case.reference(request), {}
    return invoke(reference.module(case.module, case.cells, case.preamble), request)


def stage_submission(cases: list, submission: Path, reference: Reference, staged: Path, modules: list[str],
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
                student, problem = read_notebook_bytes(read_regular(submission, rel), rel)
            except (FileNotFoundError, Refused) as err:
                student, problem = None, str(err)
            loaded[case.module] = (student, problem, nbformat.read(reference.folder / case.module, as_version=4))
        student, problem, instructor = loaded[case.module]
        if student is None:
            missing[case.module_key] = problem
            continue
        present = {cell_grade_id(c) for c in student.cells}
        absent = [c for c in case.cells if c not in present]
        if absent:
            missing[case.module_key] = (f"{case.module} has no cell {', '.join(absent)} (deleted, or its nbgrader "
                                        "metadata was changed)")
            continue
        (staged / f"{case.module_key}.cells.json").write_text(
            json.dumps(notebook_cells(instructor, student, case.cells, case.preamble)))
    return missing


def read_notebook_bytes(data: bytes, rel: str) -> tuple[nbformat.NotebookNode | None, str]:
    """(notebook, "") or (None, why it cannot be read)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                 # duplicate cell ids are repaired silently
            return nbformat.reads(data.decode("utf-8"), as_version=4), ""
    except Exception as err:  # noqa: BLE001 - corrupt JSON, wrong schema, binary junk
        return None, f"{Path(rel).name} is not a readable notebook ({type(err).__name__}: {str(err)[:200]})"


def run_cases(cases: list, submission: Path, reference_dir: Path, modules: list[str], notebooks: list[str],
              default_timeout: float, hide: list[Path], keep: list[Path], support: list[str] = (),
              uid: int = sandbox.SANDBOX_UID, budget: float = 600) -> list[TestResult]:
    """Grade one submission folder with every case; never raises because of the submission.

    uid: the sandbox user (grading runs at the same time must use different ones); budget: wall-clock seconds for
    the whole submission (checks after it is spent score 0 with a message)."""
    reference = Reference(reference_dir)
    staged = sandbox.private_folder("hw8-staged-")
    missing = stage_submission(cases, submission, reference, staged, modules, notebooks, list(support))
    child = Child(staged, hide=[*hide, submission], keep=keep, uid=uid, budget=Budget(budget))
    results = []
    try:
        hung = load_modules(cases, child, missing, default_timeout)
        for case in cases:
            results.append(_run_one(case, child, reference, submission, {**missing, **hung}, default_timeout))
    finally:
        child.close()
        reference.close()
        shutil.rmtree(staged, ignore_errors=True)
    return results


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


def write_results(path: Path, results: list[TestResult], output: str) -> dict:
    """Write Gradescope's results.json atomically (after the student's processes are gone)."""
    payload = {"score": round(sum(r.score for r in results), 4), "output": output,
               "tests": [r.as_gradescope() for r in results], "stdout_visibility": "hidden"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)
    return payload


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
        results = run_cases(load_cases(course.cases_path), submission, source / "reference", course.student_modules,
                            course.notebooks, course.case_timeout, hide=[source, root / "results", *extra],
                            keep=[Path(sys.prefix), Path(sys.base_prefix)], support=course.check_support,
                            budget=course.submission_timeout)
        refused = special_entries(root / "submission")
        output = (f"{sandbox.describe()}\ngraded in {time.monotonic() - started:.1f} s"
                  + (f"\nrefused (not regular files): {', '.join(refused)}" if refused else ""))
    except Exception:  # noqa: BLE001 - the harness itself failed: say so, score 0
        results = []
        output = "The autograder failed before grading (0 points); please tell the course staff.\n" + \
            traceback.format_exc()[-3000:]
    sandbox.kill_sandbox_processes()
    results_path.unlink(missing_ok=True)
    return write_results(results_path, results, output)


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
