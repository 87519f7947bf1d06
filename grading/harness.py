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
import tempfile
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

CHILD_SOURCE = (GRADING_DIR / "sandbox_child.py").read_text()
LOG_TAIL = 1500
REFERENCE_LOCK = threading.RLock()
STARTUP_TIMEOUT = 300   # seconds for the sandboxed Python to import torch (slow on a loaded machine)


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
    """One sandboxed student process that answers call requests; restarted after a timeout or a crash."""

    def __init__(self, workdir: Path, hide: list[Path], keep: list[Path], uid: int) -> None:
        self.workdir, self.hide, self.keep, self.uid = workdir, hide, keep, uid
        self.private = Path(tempfile.mkdtemp(prefix="hw8-harness-"))    # root-only: log and mount stash
        self.log_path = self.private / "student_output.log"
        self.log = self.log_path.open("wb")
        self.proc: subprocess.Popen | None = None
        self.replies: int | None = None

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        stash = self.private / "stash"
        stash.mkdir(exist_ok=True)
        argv = [sys.executable, "-I", "-c", CHILD_SOURCE, str(write_fd), str(self.workdir)]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir), "OMP_NUM_THREADS": "1",
               "HF_HUB_OFFLINE": "1", "LANG": "C.UTF-8", "HW8_FAST": "1"}
        self.proc = subprocess.Popen(sandbox.wrap(argv, self.hide, self.keep, stash, self.uid), stdin=subprocess.PIPE,
                                     stdout=self.log, stderr=self.log, pass_fds=(write_fd,), cwd=self.workdir,
                                     env=env, start_new_session=True, preexec_fn=_limits)
        os.close(write_fd)
        self.replies = read_fd
        ready, problem = self._read_reply(STARTUP_TIMEOUT, "starting Python and torch")
        if ready is None:
            raise RuntimeError(f"the grading sandbox did not start: {problem}\n{self.log_since(0)}")

    def call(self, request: dict, timeout: float) -> tuple[dict | None, str]:
        """(reply, "") or (None, why there is no usable reply). Never raises for anything the child does."""
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
                    return None, f"timed out after {timeout:g} s ({why})"
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
        return f"the submission's process ended before answering (exit status {code}); no result counts as 0"

    def log_offset(self) -> int:
        self.log.flush()
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            data = f.read()
        text = data.decode("utf-8", errors="replace")
        return text if len(text) <= LOG_TAIL else f"...({len(text) - LOG_TAIL} characters cut)...\n" + text[-LOG_TAIL:]

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


def _limits() -> None:
    """Resource limits for the student's process: files it writes, processes it starts."""
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 2**20, 256 * 2**20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.geteuid() == 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (256, 256))


def load_cases(path: Path) -> list[Case | FileCase]:
    """The CASES list of a cases file (trusted instructor code)."""
    spec = importlib.util.spec_from_file_location(f"hw8_cases_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return list(module.CASES)


def read_notebook(path: Path) -> tuple[nbformat.NotebookNode | None, str]:
    """(notebook, "") or (None, why it cannot be read)."""
    if not path.is_file():
        return None, f"{path.name} was not submitted"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                 # duplicate cell ids are repaired silently
            return nbformat.read(path, as_version=4), ""
    except Exception as err:  # noqa: BLE001 - corrupt JSON, wrong schema, binary junk
        return None, f"{path.name} is not a readable notebook ({type(err).__name__}: {str(err)[:200]})"


def notebook_cells(instructor: nbformat.NotebookNode, student: nbformat.NotebookNode) -> list[str]:
    """The code a notebook check runs, in the instructor's cell order: the student's solution cells (matched by
    grade_id, first occurrence) and the instructor's locked set-up cells. Test cells and plain cells are left out,
    so edited or deleted test cells change nothing; IPython magics are dropped."""
    student_cells: dict[str, str] = {}
    for cell in student.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and grade_id and grade_id not in student_cells:
            student_cells[grade_id] = cell.source
    code = []
    for cell in instructor.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        if meta.get("solution"):
            source = student_cells.get(meta["grade_id"],
                                       f"raise NotImplementedError('cell {meta['grade_id']} is missing')")
        elif meta.get("locked") and not meta.get("grade"):
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
        self.tmp = Path(tempfile.mkdtemp(prefix="hw8-reference-"))
        os.chmod(self.tmp, 0o700)

    def module(self, name: str):
        if name not in self.cache:
            if str(self.folder) not in sys.path:
                sys.path.insert(0, str(self.folder))
            if name.endswith(".ipynb"):
                nb = nbformat.read(self.folder / name, as_version=4)
                cells_path = self.tmp / f"{name}.cells.json"
                cells_path.write_text(json.dumps(notebook_cells(nb, nb)))
                self.cache[name] = load_notebook_module(str(cells_path), f"reference_{name[:-6]}")
            else:
                self.cache[name] = importlib.import_module(name)
        return self.cache[name]

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def build_request(case: Case, reference: Reference) -> dict:
    """Inputs drawn in the parent from the case's seed (and the instructor object's weights when asked)."""
    g = torch.Generator().manual_seed(case.seed)
    request = {"target": case.target, "seed": case.seed, "args": [], "kwargs": {}, "init": None, "method": None,
               "attrs": []}
    request.update(case.inputs(g))
    if case.state_from_reference and request.get("init") is not None:
        torch.manual_seed(case.seed)
        obj = getattr(reference.module(case.module), case.target.split(":", 1)[1])
        instance = obj(*request["init"].get("args", []), **request["init"].get("kwargs", {}))
        request["init"] = {**request["init"], "state": {k: v.clone() for k, v in instance.state_dict().items()}}
    return request


def expected_output(case: Case, request: dict, reference: Reference):
    from grading.sandbox_child import invoke

    if case.reference is not None:
        return case.reference(request), {}
    return invoke(reference.module(case.module), request)


def stage_submission(submission: Path, reference: Reference, workdir: Path, modules: list[str],
                     notebooks: list[str], support: list[str], uid: int) -> dict[str, str]:
    """Copy the student's modules and notebook code (and the instructor's support files) into the sandbox folder;
    returns {module: why it is missing}."""
    missing = {}
    for rel in support:
        src = reference.folder / rel
        if src.is_dir():
            shutil.copytree(src, workdir / rel, dirs_exist_ok=True)
        elif src.is_file():
            (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, workdir / rel)
    for rel in modules:
        src = submission / rel
        if src.is_file():
            (workdir / Path(rel).name).write_bytes(src.read_bytes())
        else:
            missing[Path(rel).stem] = f"{rel} was not submitted"
    for rel in notebooks:
        student, problem = read_notebook(submission / rel)
        if student is None:
            missing[Path(rel).name] = problem
            continue
        instructor = nbformat.read(reference.folder / Path(rel).name, as_version=4)
        (workdir / f"{Path(rel).name}.cells.json").write_text(json.dumps(notebook_cells(instructor, student)))
    sandbox.give_to_sandbox(workdir, uid)
    return missing


def run_cases(cases: list, submission: Path, reference_dir: Path, modules: list[str], notebooks: list[str],
              default_timeout: float, hide: list[Path], keep: list[Path], support: list[str] = (),
              uid: int = sandbox.SANDBOX_UID) -> list[TestResult]:
    """Grade one submission folder with every case; never raises because of the submission.

    uid: the sandbox user (runs grading concurrently must use different ones)."""
    reference = Reference(reference_dir)
    workdir = sandbox.make_workdir(uid=uid)
    used_notebooks = sorted({c.module for c in cases if isinstance(c, Case) and c.module.endswith(".ipynb")})
    missing = stage_submission(submission, reference, workdir, modules,
                               [n for n in notebooks if Path(n).name in used_notebooks], list(support), uid)
    child = Child(workdir, hide=[*hide, submission], keep=keep, uid=uid)
    results = []
    try:
        for case in cases:
            results.append(_run_one(case, child, reference, submission, missing, default_timeout))
    finally:
        child.close()
        reference.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def _run_one(case, child: Child, reference: Reference, submission: Path, missing: dict[str, str],
             default_timeout: float) -> TestResult:
    def result(ok: bool, output: str) -> TestResult:
        return TestResult(case.name, case.points if ok else 0.0, case.points, output, case.nbgrader_cell)

    if isinstance(case, FileCase):
        path = submission / case.path
        if not path.is_file():
            return result(False, f"{case.path} was not submitted")
        try:
            message = case.check(path, reference.module)
        except Exception as err:  # noqa: BLE001 - an unreadable file is the submission's problem
            message = f"{case.path} could not be checked: {type(err).__name__}: {str(err)[:300]}"
        return result(message is None, message or "passed")
    name = case.module if case.module.endswith(".ipynb") else case.module.split(".")[0]
    if name in missing:
        return result(False, f"{missing[name]}: 0 points for this check")
    with REFERENCE_LOCK:                              # torch's global RNG is shared by grading threads
        request = build_request(case, reference)
        expected, expected_attrs = expected_output(case, request, reference)
    offset = child.log_offset()
    reply, problem = child.call(request, case.timeout or default_timeout)
    log = child.log_since(offset).strip()
    tail = f"\n--- output of your code ---\n{log}" if log else ""
    hint = f" ({case.hint})" if case.hint else ""
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


def find_submission_root(submission: Path, expected: list[str]) -> Path:
    """The folder holding the submitted files: the upload itself, or its single sub-folder if zipped with one."""
    if any((submission / rel).exists() for rel in expected):
        return submission
    for candidate in sorted(p.parent for rel in expected for p in submission.rglob(Path(rel).name)):
        if any((candidate / rel).exists() for rel in expected):
            return candidate
    return submission


def gradescope(root: Path) -> dict:
    """The whole run_autograder step: grade root/submission with root/source, write root/results/results.json.

    $HW8_SANDBOX_EXTRA_HIDE (paths separated by ':') hides more folders from the student's code, for local tests
    on a machine that also holds the instructor repository."""
    source, results_path = root / "source", root / "results" / "results.json"
    results_path.unlink(missing_ok=True)          # whatever was there is not ours
    started = time.monotonic()
    try:
        course: Course = load_course(source / "course.toml")
        submission = find_submission_root(root / "submission", course.submission_files)
        if sandbox.is_root():
            os.chmod(source, 0o700)
            results_path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(results_path.parent, 0o755)
        extra = [Path(p) for p in os.environ.get("HW8_SANDBOX_EXTRA_HIDE", "").split(os.pathsep) if p]
        results = run_cases(load_cases(course.cases_path), submission, source / "reference", course.student_modules,
                            course.notebooks, course.case_timeout, hide=[source, root / "results", *extra],
                            keep=[Path(sys.prefix), Path(sys.base_prefix)], support=course.check_support)
        output = f"{sandbox.describe()}\ngraded in {time.monotonic() - started:.1f} s"
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
