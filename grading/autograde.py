"""`make autograde SUBMISSIONS=dir`: grade every submission with nbgrader plus the trusted out-of-process checks.

SUBMISSIONS holds one folder (or one .zip, as written by `make submission`) per student, named by student id.
For each student, in build/autograde/:
  1. the submitted notebooks, modules and checkpoint are copied into nbgrader's submitted/<id>/<assignment>/
     (a notebook that is not valid JSON is left out and scores 0, with a message);
  2. `nbgrader autograde` restores the test cells (edited or deleted ones too) with their hidden tests, keeps the
     student's own modules and checkpoint (Autograde.exclude_overwriting), runs every cell with a per-cell timeout,
     the whole submission with a per-submission timeout, and the kernel as the sandbox user (grading/sandbox_kernel.py);
  3. the trusted checks of the cases file run the student's functions in a sandboxed child and compare in this
     process (grading/harness.py). A grade cell that a trusted check confirms (Case.nbgrader_cell) keeps its nbgrader
     points only if the trusted check passes too, so tampering inside the notebook (a replaced torch.allclose, a
     swallowed AssertionError) earns nothing there; the other trusted checks add their own points;
  4. `nbgrader generate_feedback` writes per-student HTML, next to a page with the trusted checks.
Results: build/autograde/scores.csv (one row per student), feedback/<id>/, and a summary on stdout.

    python grading/autograde.py SUBMISSIONS [--course grading/course.toml] [--out build/autograde]
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import os
import queue
import re
import shutil
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nbformat

from grading import sandbox
from grading.course import DEFAULT_COURSE, GRADING_DIR, Course, load_course
from grading.harness import TestResult, find_submission_root, load_cases, read_notebook, run_cases
from grading.nbgrader_course import make_course_dir, run_nbgrader

MAX_UNZIPPED = 2 * 2**30


@dataclass
class StudentResult:
    student: str
    cells: dict[str, tuple[float, float]] = field(default_factory=dict)   # "nb:grade_id" -> (score, max)
    manual_max: float = 0.0
    trusted: list[TestResult] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(s for s, _ in self.cells.values()) + sum(t.score for t in self.trusted if not t.nbgrader_cell)

    @property
    def max_total(self) -> float:
        return sum(m for _, m in self.cells.values()) + sum(t.max_score for t in self.trusted if not t.nbgrader_cell)


def student_id(path: Path) -> str:
    """Student id from a folder or zip name (letters, digits, '_', '-', '.')."""
    name = path.name[:-4] if path.suffix == ".zip" else path.name
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    if not clean or clean.startswith("."):
        raise ValueError(f"cannot make a student id from {path.name!r}")
    return clean


def safe_unzip(zip_path: Path, dest: Path) -> None:
    """Extract a student's zip without letting a member escape dest or exceed MAX_UNZIPPED in total."""
    with zipfile.ZipFile(zip_path) as zf:
        if sum(i.file_size for i in zf.infolist()) > MAX_UNZIPPED:
            raise ValueError(f"{zip_path.name} unpacks to more than {MAX_UNZIPPED >> 30} GiB")
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise ValueError(f"{zip_path.name}: member {info.filename!r} points outside the submission")
        zf.extractall(dest)


def drop_duplicate_grade_ids(nb: nbformat.NotebookNode, stem: str) -> list[str]:
    """Keep the nbgrader metadata of the last cell of each grade_id only (what nbgrader's DeduplicateIds means to do;
    in nbgrader 0.9.6 it leaves an empty dict that crashes OverwriteCells with add_missing_cells)."""
    last, counts = {}, {}
    for index, cell in enumerate(nb.cells):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id is not None:
            last[grade_id], counts[grade_id] = index, counts.get(grade_id, 0) + 1
    for index, cell in enumerate(nb.cells):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id is not None and last[grade_id] != index:
            del cell.metadata["nbgrader"]
    return [f"{stem}:{g} appears {n} times: only one copy (restored from the release) was graded"
            for g, n in counts.items() if n > 1]


def stage(course: Course, entry: Path, submitted: Path, scratch: Path) -> tuple[Path, list[str]]:
    """Copy the graded files of one submission into nbgrader's submitted folder; returns (that folder, messages)."""
    messages = []
    if entry.suffix == ".zip":
        unpacked = scratch / student_id(entry)
        unpacked.mkdir(parents=True)
        try:
            safe_unzip(entry, unpacked)
        except (zipfile.BadZipFile, ValueError) as err:
            messages.append(f"{entry.name} cannot be unpacked: {err}")
        entry = unpacked
    root = find_submission_root(entry, course.submission_files)
    submitted.mkdir(parents=True)
    for rel in course.submission_files:
        src = root / rel
        if not src.is_file():
            messages.append(f"{rel} was not submitted: the checks that need it score 0")
            continue
        (submitted / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".ipynb"):
            nb, problem = read_notebook(src)      # also repairs duplicated cell ids (a copied cell)
            if nb is None:
                messages.append(f"{problem}: the whole notebook scores 0")
                continue
            messages += drop_duplicate_grade_ids(nb, Path(rel).stem)
            nbformat.write(nb, submitted / rel)
        else:
            shutil.copy2(src, submitted / rel)
    return submitted, messages


def install_sandbox_kernel(course_dir: Path) -> dict[str, str]:
    """A `python3` kernelspec that starts the kernel through grading/sandbox_kernel.py; returns the env to use it."""
    if not sandbox.is_root():
        return {}
    spec_dir = course_dir / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, str(GRADING_DIR / "sandbox_kernel.py"), "{connection_file}"],
            "display_name": "Python 3 (grading sandbox)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return {"JUPYTER_PATH": str(course_dir / "jupyter")}


def gradebook_scores(course: Course, course_dir: Path, student: str) -> tuple[dict, float]:
    """({"nb:grade_id": (auto score, max)} for autograded cells, max points of manually graded cells)."""
    from nbgrader.api import Gradebook, MissingEntry

    cells, manual = {}, 0.0
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        for nb in course.notebooks:
            name = Path(nb).stem
            try:
                notebook = gb.find_submission_notebook(name, course.assignment_id, student)
            except MissingEntry:
                notebook = None
            source = gb.find_notebook(name, course.assignment_id)
            answers = {c.name for c in source.solution_cells}     # grade + solution = a written answer
            for cell in source.grade_cells:
                grade = next((g for g in notebook.grades if g.name == cell.name), None) if notebook else None
                if cell.name in answers:
                    manual += cell.max_score
                    continue
                score = grade.auto_score if grade is not None and grade.auto_score is not None else 0.0
                cells[f"{name}:{cell.name}"] = (float(score), float(cell.max_score))
    return cells, manual


def notebook_messages(course: Course, course_dir: Path, sid: str) -> list[str]:
    """What happened to the graded cells: deleted, duplicated or edited test cells, and the errors of failing ones."""
    import nbformat

    messages = []
    submitted = course_dir / "submitted" / sid / course.assignment_id
    for rel in course.notebooks:
        stem = Path(rel).stem
        student, _ = read_notebook(submitted / rel)
        if student is None:
            continue
        released = nbformat.read(course_dir / "release" / course.assignment_id / rel, as_version=4)
        ids = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in student.cells]
        sources = {}
        for cell, grade_id in zip(student.cells, ids):
            sources.setdefault(grade_id, cell.source)
        for cell in released.cells:
            meta = cell.metadata.get("nbgrader", {})
            if not (meta.get("grade") or meta.get("locked")) or meta.get("solution"):
                continue
            grade_id, count = meta["grade_id"], ids.count(meta["grade_id"])
            if count == 0:
                messages.append(f"{stem}:{grade_id} was deleted: nbgrader put it back and ran it")
            elif sources[grade_id] != cell.source:
                messages.append(f"{stem}:{grade_id} was edited: the original (with its hidden tests) was restored")
        graded, _ = read_notebook(course_dir / "autograded" / sid / course.assignment_id / rel)
        for cell in graded.cells if graded is not None else []:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if meta.get("grade") and errors:
                err = errors[0]
                messages.append(f"{stem}:{meta.get('grade_id')} failed: {err.get('ename')}: "
                                f"{str(err.get('evalue'))[:200]}")
    return messages


def summary(output: str) -> str:
    """One line for the CSV: the exception line of a traceback, else the first line."""
    text = output.split("\n--- output of your code ---")[0].strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if "Traceback" in text and lines:
        return f"{lines[0].rstrip(':')}: {lines[-1].strip()}"[:300]
    return lines[0][:300] if lines else "failed"


def combine(result: StudentResult) -> None:
    """A grade cell confirmed by a trusted check keeps its points only if that check passed."""
    for t in result.trusted:
        if not t.nbgrader_cell:
            continue
        for key, (score, max_score) in result.cells.items():
            if key.split(":", 1)[1] == t.nbgrader_cell and t.score < t.max_score:
                if score > 0:
                    result.messages.append(f"{key}: the nbgrader cell passed but the out-of-process check "
                                           f"'{t.name}' failed ({summary(t.output)}): counted 0")
                result.cells[key] = (0.0, max_score)


def nbgrader_env(course: Course, out: Path, course_dir: Path, kernel_env: dict[str, str], kernel_tmp: Path
                 ) -> dict[str, str]:
    hide = [course.root, out, course_dir]
    return {**course.execute_env, **kernel_env, "HW8_SANDBOX_HIDE": json.dumps([str(p) for p in hide]),
            "HW8_SANDBOX_KEEP": json.dumps([sys.prefix]), "HW8_SANDBOX_TMP": str(kernel_tmp)}


def run_autograde(course: Course, course_dir: Path, students: list[str], env: dict[str, str], log: Path
                  ) -> dict[str, str]:
    """nbgrader autograde for all students in one process (nbgrader starts slowly), each cell under its timeout;
    a student it did not finish (the batch hit its limit, or nbgrader failed) is rerun alone under the
    per-submission limit. Returns {student: message} for submissions that could not be graded completely."""
    settings = course_dir / "grading_settings.json"
    batch = run_nbgrader(course_dir, settings, ["autograde", course.assignment_id, "--force"],
                         timeout=course.submission_timeout * max(1, len(students)), extra_env=env)
    log.write_text(batch.stdout + batch.stderr)
    problems = {}
    for sid in students:
        if _autograded(course, course_dir, sid) and batch.returncode != -9:
            continue
        alone = run_nbgrader(course_dir, settings, ["autograde", course.assignment_id, "--student", sid, "--force"],
                             timeout=course.submission_timeout, extra_env=env)
        with log.open("a") as f:
            f.write(alone.stdout)
        if alone.returncode == -9:
            problems[sid] = f"nbgrader stopped after {course.submission_timeout} s (the per-submission limit)"
        elif not _autograded(course, course_dir, sid):
            errors = [line for line in alone.stdout.splitlines() if "ERROR" in line][:2]
            problems[sid] = "nbgrader could not grade the notebooks: " + (" / ".join(errors) or "see autograde.log")
    return problems


def _autograded(course: Course, course_dir: Path, sid: str) -> bool:
    """True if every submitted notebook of the student has an autograded copy."""
    submitted = course_dir / "submitted" / sid / course.assignment_id
    done = course_dir / "autograded" / sid / course.assignment_id
    return all((done / nb).is_file() for nb in course.notebooks if (submitted / nb).is_file())


def write_feedback(course: Course, course_dir: Path, dest: Path, result: StudentResult) -> None:
    """Copy nbgrader's feedback HTML and add trusted_checks.html (checks, messages, total)."""
    src = course_dir / "feedback" / result.student / course.assignment_id
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for page in sorted(src.rglob("*.html")) if src.is_dir() else []:
        (dest / page.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(page, dest / page.relative_to(src))
    rows = "".join(f"<tr><td>{html.escape(t.name)}</td><td>{t.score:g} / {t.max_score:g}</td>"
                   f"<td><pre>{html.escape(t.output)}</pre></td></tr>" for t in result.trusted)
    notes = "".join(f"<li>{html.escape(m)}</li>" for m in result.messages) or "<li>none</li>"
    (dest / "trusted_checks.html").write_text(
        f"<html><body><h1>{html.escape(result.student)}: {result.total:g} / {result.max_total:g} "
        f"autograded points</h1><p>Written answers ({result.manual_max:g} points) are graded by hand.</p>"
        f"<h2>Messages</h2><ul>{notes}</ul><h2>Checks run outside your notebook</h2>"
        f"<table border=1><tr><th>check</th><th>score</th><th>details</th></tr>{rows}</table></body></html>")


def write_csv(path: Path, results: list[StudentResult]) -> None:
    cells = sorted({k for r in results for k in r.cells})
    trusted = [t.name for t in results[0].trusted if not t.nbgrader_cell] if results else []
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "total", "max", *cells, *[f"trusted: {n}" for n in trusted],
                         "manual_points_pending", "seconds", "messages"])
        for r in results:
            by_name = {t.name: t.score for t in r.trusted}
            writer.writerow([r.student, f"{r.total:g}", f"{r.max_total:g}",
                             *[f"{r.cells.get(c, (0, 0))[0]:g}" for c in cells],
                             *[f"{by_name.get(n, 0):g}" for n in trusted], f"{r.manual_max:g}", f"{r.seconds:.1f}",
                             " | ".join(r.messages)])


def _trusted(course: Course, cases: list, submitted: Path, hide: list[Path], uids: queue.Queue
             ) -> tuple[list[TestResult], float]:
    """The trusted checks of one submission under a sandbox uid that no concurrent run uses."""
    uid = uids.get()
    started = time.monotonic()
    try:
        return run_cases(cases, submitted, course.root, course.student_modules, course.notebooks, course.case_timeout,
                         hide=hide, keep=[Path(sys.prefix)], support=course.check_support, uid=uid), \
            time.monotonic() - started
    finally:
        uids.put(uid)


def autograde(course: Course, submissions: Path, out: Path, jobs: int = 2) -> list[StudentResult]:
    """Grade every entry of `submissions`; returns the results (also written to out/scores.csv)."""
    entries = sorted(p for p in submissions.iterdir() if p.is_dir() or p.suffix == ".zip")
    if not entries:
        raise FileNotFoundError(f"{submissions} holds no submission folders or zips")
    out.mkdir(parents=True, exist_ok=True)
    course_dir = out / "course"
    support = [r for r in course.release_files
               if (course.root / r).exists() and not any(r == h or r.startswith(h + "/") for h in course.hidden_paths)]
    settings = make_course_dir(course, course_dir, support)
    kernel_env = install_sandbox_kernel(course_dir)
    gen = run_nbgrader(course_dir, settings, ["generate_assignment", course.assignment_id, "--force"], timeout=600)
    if gen.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{gen.stdout[-3000:]}")
    print(sandbox.describe(), flush=True)
    results: dict[str, StudentResult] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hw8-unzip-") as scratch:
        for entry in entries:
            sid = student_id(entry)
            results[sid] = StudentResult(sid)
            submitted = course_dir / "submitted" / sid / course.assignment_id
            _, results[sid].messages = stage(course, entry, submitted, Path(scratch))
    cases = load_cases(course.cases_path)
    with ThreadPoolExecutor(max_workers=jobs) as pool:     # trusted checks run while nbgrader works
        uids: queue.Queue[int] = queue.Queue()
        for slot in range(jobs):
            uids.put(sandbox.SANDBOX_UID + 1 + slot)      # SANDBOX_UID itself runs the nbgrader kernels
        trusted = {sid: pool.submit(_trusted, course, cases, course_dir / "submitted" / sid / course.assignment_id,
                                    [course.root, out, course_dir], uids) for sid in results}
        kernel_tmp = Path(tempfile.mkdtemp(prefix="hw8-kernels-"))
        os.chmod(kernel_tmp, 0o711)
        try:
            problems = run_autograde(course, course_dir, list(results),
                                     nbgrader_env(course, out, course_dir, kernel_env, kernel_tmp),
                                     out / "autograde.log")
        finally:
            sandbox.kill_sandbox_processes()
            shutil.rmtree(kernel_tmp, ignore_errors=True)
        per_student_nbgrader = (time.monotonic() - started) / len(results)
        for sid, result in results.items():
            if sid in problems:
                result.messages.append(problems[sid])
            result.cells, result.manual_max = gradebook_scores(course, course_dir, sid)
            result.messages += notebook_messages(course, course_dir, sid)
            result.trusted, trusted_seconds = trusted[sid].result()
            result.messages += [f"{t.name}: {summary(t.output)}" for t in result.trusted if t.score < t.max_score]
            combine(result)
            result.seconds = per_student_nbgrader + trusted_seconds
    feedback = run_nbgrader(course_dir, settings, ["generate_feedback", course.assignment_id, "--force"],
                            timeout=60 + 30 * len(results))
    for result in results.values():
        if feedback.returncode != 0:
            result.messages.append("nbgrader feedback HTML could not be generated (see trusted_checks.html)")
        write_feedback(course, course_dir, out / "feedback" / result.student, result)
        print(f"{result.student}: {result.total:g} / {result.max_total:g}"
              + "".join(f"\n    {m}" for m in result.messages), flush=True)
    write_csv(out / "scores.csv", list(results.values()))
    return list(results.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", help="folder with one sub-folder or .zip per student")
    parser.add_argument("--course", default=str(DEFAULT_COURSE))
    parser.add_argument("--out", default=None, help="default: <build>/autograde")
    parser.add_argument("--jobs", type=int, default=2, help="submissions checked at once by the trusted checks")
    args = parser.parse_args(argv)
    course = load_course(args.course)
    submissions = Path(args.submissions)
    if not submissions.is_dir():
        parser.error(f"{submissions} is not a folder (make autograde SUBMISSIONS=folder)")
    out = Path(args.out) if args.out else course.build_dir / "autograde"
    started = time.monotonic()
    results = autograde(course, submissions, out.resolve(), jobs=args.jobs)
    print(f"autograde: {len(results)} submissions in {time.monotonic() - started:.1f} s; "
          f"scores in {out / 'scores.csv'}, feedback in {out / 'feedback'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
