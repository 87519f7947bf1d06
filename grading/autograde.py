"""`make autograde SUBMISSIONS=dir [JOBS=n]`: grade every submission with the trusted checks, record it in nbgrader.

SUBMISSIONS holds one folder (or one .zip, as written by `make submission`) per student, named by student id.
  1. Each submission's notebooks are rebuilt from the release (`rebuild_notebook`): the student's solution cells and
     written answers (matched by grade id), the release's own test and set-up cells, the student's extra cells and
     outputs (bounded). Edited, deleted or duplicated test cells and changed metadata or cell ids therefore cost
     nothing but themselves, and each change is reported. Only regular files are read (grading/submitted.py).
  2. The students are split into JOBS shards, one worker process each. A worker grades its students one after another
     with the trusted checks of the cases file (grading/harness.py), each student in its own sandbox (own uid, own
     tmpfs folder, no network, CPU/memory/output limits). They decide every autograded point: module functions,
     notebook functions and the checkpoint's validation loss, exactly as on Gradescope. Nothing is retrained and no
     notebook is executed.
  3. The same worker runs `nbgrader autograde` on its shard's students only (the others excluded) against a copy of
     the gradebook of its own, which records the rebuilt notebooks without executing them
     (grading/nbgrader_config.py); the trusted scores are written into that gradebook's grade cells, and each test
     cell of the graded notebook shows its checks' verdicts instead of its (hidden) test code. Then
     `nbgrader generate_feedback` writes its students' HTML, next to trusted_checks.html (every check, messages,
     total). nbgrader's bookkeeping thus runs JOBS at a time instead of one student after another.
  4. The shards' gradebooks are merged into the course's gradebook.db (every row nbgrader adds for a student has a
     unique id), so formgrader sees every student as if one nbgrader process had graded them all.
Results: build/autograde/scores.csv (one row per student), feedback/<id>/, phases.json (seconds of each phase) and a
summary on stdout.

    python grading/autograde.py SUBMISSIONS [--course grading/course.toml] [--out build/autograde] [--jobs 2]
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import multiprocessing
import os
import re
import shutil
import sqlite3
import sys
import time
import uuid
import zipfile
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nbformat

from grading import sandbox
from grading.course import DEFAULT_COURSE, Course, load_course, validate_check_support
from grading.harness import TestResult, load_cases, read_notebook_bytes, run_course
from grading.nbgrader_course import make_course_dir, run_nbgrader
from grading.submitted import Refused, copy_regular, find_root, read_regular, special_entries
from homework.parts import cell_grade_id

MAX_UNZIPPED = 2 * 2**30
MAX_CELL_OUTPUT = 2 * 2**20       # bytes of outputs kept per cell (plots included) ...
MAX_NOTEBOOK_OUTPUT = 20 * 2**20  # ... and per notebook
MAX_TEXT_OUTPUT = 20_000          # characters kept of one text output


@dataclass
class StudentResult:
    student: str
    trusted: list[TestResult] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    manual_max: float = 0.0
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(t.score for t in self.trusted)

    @property
    def max_total(self) -> float:
        return sum(t.max_score for t in self.trusted)


def student_id(path: Path) -> str:
    """Student id from a folder or zip name (letters, digits, '_', '-', '.')."""
    name = path.name[:-4] if path.suffix == ".zip" else path.name
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    if not clean or clean.startswith("."):
        raise ValueError(f"cannot make a student id from {path.name!r}")
    return clean


def safe_unzip(zip_path: Path, dest: Path) -> None:
    """Extract a student's zip without letting a member escape dest or exceed MAX_UNZIPPED in total; members are
    written as regular files (a symbolic link stored in the zip becomes a small file holding its target)."""
    with zipfile.ZipFile(zip_path) as zf:
        if sum(i.file_size for i in zf.infolist()) > MAX_UNZIPPED:
            raise ValueError(f"{zip_path.name} unpacks to more than {MAX_UNZIPPED >> 30} GiB")
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise ValueError(f"{zip_path.name}: member {info.filename!r} points outside the submission")
        zf.extractall(dest)


# ---------------------------------------------------------------------------------------------- rebuilding notebooks


def _bounded(outputs: list, budget: list[int]) -> list:
    """The outputs of one cell, text cut to MAX_TEXT_OUTPUT characters, at most MAX_CELL_OUTPUT bytes per cell and
    what is left of the notebook's budget (budget[0], decreased)."""
    kept, size = [], 0
    for output in outputs:
        output = nbformat.from_dict(dict(output))
        if output.get("output_type") == "stream":
            text = "".join(output.get("text", ""))
            output["text"] = text if len(text) <= MAX_TEXT_OUTPUT else \
                text[:MAX_TEXT_OUTPUT] + f"\n... ({len(text) - MAX_TEXT_OUTPUT} characters cut by the grader)\n"
        length = len(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[output])])))
        if size + length > min(MAX_CELL_OUTPUT, budget[0]):
            kept.append(nbformat.v4.new_output("stream", name="stdout", text="(output cut by the grader: too large)"))
            break
        kept.append(output)
        size += length
    budget[0] -= size
    return kept


def rebuild_notebook(released: nbformat.NotebookNode, student: nbformat.NotebookNode, stem: str
                     ) -> tuple[nbformat.NotebookNode, list[str]]:
    """The notebook nbgrader records: the release's cells with the student's solution / answer sources (first cell of
    each grade id), the student's own extra cells (nbgrader metadata dropped) where they were, every output bounded.
    Test and set-up cells are the release's, whatever the student did to them. Returns (notebook, messages)."""
    released_ids = {cell_grade_id(c): c for c in released.cells if cell_grade_id(c)}
    plain_sources = {c.source for c in released.cells if not cell_grade_id(c)}
    budget = [MAX_NOTEBOOK_OUTPUT]
    messages, taken, counts = [], {}, {}
    extras: dict[str | None, list] = {None: []}
    anchor = None
    for cell in student.cells:
        grade_id = cell_grade_id(cell)
        if grade_id in released_ids:
            counts[grade_id] = counts.get(grade_id, 0) + 1
            if grade_id not in taken:
                taken[grade_id], anchor = cell, grade_id
                extras.setdefault(anchor, [])
                continue
        if grade_id is None and cell.get("source", "") in plain_sources:
            continue                                  # a plain cell of the release (its text, not the student's)
        copy = nbformat.from_dict({**cell, "id": uuid.uuid4().hex[:12]})
        copy.metadata = {k: v for k, v in copy.get("metadata", {}).items() if k != "nbgrader"}
        if "outputs" in copy:
            copy.outputs = _bounded(copy.outputs, budget)
        extras.setdefault(anchor, []).append(copy)
    messages += [f"{stem}:{g} appears {n} times: only the first copy was graded" for g, n in counts.items() if n > 1]
    cells = list(extras[None])
    for cell in released.cells:
        grade_id, meta = cell_grade_id(cell), cell.get("metadata", {}).get("nbgrader", {})
        rebuilt = nbformat.from_dict(dict(cell))
        mine = taken.get(grade_id)
        if grade_id and mine is None:
            messages.append(f"{stem}:{grade_id} is missing (deleted, or its metadata was changed): "
                            + ("its checks score 0" if meta.get("solution") else "the release's cell was used"))
        elif mine is not None:
            if meta.get("solution"):
                rebuilt.source = mine.get("source", "")
            elif mine.get("source", "") != cell.source:
                messages.append(f"{stem}:{grade_id} was edited: the release's cell was graded instead")
            if mine.get("metadata", {}).get("nbgrader") != meta:
                messages.append(f"{stem}:{grade_id} had its nbgrader metadata changed: the release's was used")
            if cell.cell_type == "code":
                rebuilt.outputs = [] if meta.get("grade") else _bounded(mine.get("outputs", []), budget)
        cells.append(rebuilt)
        cells += extras.get(grade_id, []) if grade_id else []
    return nbformat.v4.new_notebook(cells=cells, metadata=released.metadata), messages


def stage(course: Course, entry: Path, submitted: Path, scratch: Path, released: Path) -> list[str]:
    """Copy one submission into nbgrader's submitted folder: regular files only, notebooks rebuilt from the release.
    Returns the messages for the student."""
    messages = []
    if entry.suffix == ".zip":
        unpacked = scratch / student_id(entry)
        unpacked.mkdir(parents=True)
        try:
            if entry.is_symlink() or not entry.is_file():
                raise ValueError("it is not a regular file")
            safe_unzip(entry, unpacked)
        except (zipfile.BadZipFile, ValueError, OSError) as err:
            messages.append(f"{entry.name} cannot be unpacked: {err}")
        entry = unpacked
    root = find_root(entry, course.submission_files)
    submitted.mkdir(parents=True)
    refused = special_entries(root)
    if refused:
        messages.append(f"refused (not regular files, never read): {', '.join(refused)}")
    for rel in course.submission_files:
        if not rel.endswith(".ipynb"):
            problem = copy_regular(root, rel, submitted / rel)
            if problem:
                messages.append(f"{problem}: the checks that need it score 0")
            continue
        try:
            student, problem = read_notebook_bytes(read_regular(root, rel), rel)
        except (FileNotFoundError, Refused) as err:
            student, problem = None, str(err)
        if student is None:
            messages.append(f"{problem}: its checks score 0")
            continue
        notebook, notes = rebuild_notebook(nbformat.read(released / rel, as_version=4), student, Path(rel).stem)
        messages += notes
        (submitted / rel).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, submitted / rel)
    return messages


# ------------------------------------------------------------------------------------------------ trusted checks


def grade_student(course_file: str, submitted: str, hide: list[str], uid: int, threads: int
                  ) -> tuple[list[TestResult], float]:
    """The trusted checks of one submission (runs in a worker process; `uid` is this student's sandbox user,
    `threads` the torch threads of this worker's reference computations: the cores shared out among the jobs)."""
    import torch

    torch.set_num_threads(threads)
    course = load_course(course_file)
    started = time.monotonic()
    results = run_course(course, Path(submitted), hide=[Path(p) for p in hide], uid=uid)
    return results, time.monotonic() - started


def check_cell_points(course: Course, course_dir: Path, cases: list) -> None:
    """Every autograded grade cell of the notebooks is decided by trusted checks whose points add up to its own."""
    from grading.checks import Case, FileCase

    by_cell: dict[str, float] = {}
    for case in cases:
        if isinstance(case, (Case, FileCase)) and case.nbgrader_cell:
            by_cell[case.nbgrader_cell] = by_cell.get(case.nbgrader_cell, 0) + case.points
    problems = []
    for rel in course.notebooks:
        for cell in nbformat.read(course_dir / "source" / course.assignment_id / rel, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                got = by_cell.pop(meta["grade_id"], 0)
                if got != meta.get("points"):
                    problems.append(f"{rel}:{meta['grade_id']} has {meta.get('points')} points, its trusted checks "
                                    f"{got:g}")
    problems += [f"trusted checks name grade cell {cell!r}, which no notebook has" for cell in by_cell]
    if problems:
        raise ValueError("the cases file does not match the notebooks' grade cells:\n  " + "\n  ".join(problems))


# ------------------------------------------------------------------------------------------------- the gradebook


def record_in_gradebook(course: Course, course_dir: Path, gradebook: Path, result: StudentResult) -> None:
    """Write the trusted scores into `gradebook` (each test cell: the sum of its checks) and put each check's
    verdict, in place of the test code, into the graded notebook that feedback is made from."""
    from nbgrader.api import Gradebook, MissingEntry

    by_cell: dict[str, list[TestResult]] = {}
    for t in result.trusted:
        if t.nbgrader_cell:
            by_cell.setdefault(t.nbgrader_cell, []).append(t)
    graded_dir = course_dir / "autograded" / result.student / course.assignment_id
    released_dir = course_dir / "release" / course.assignment_id
    with Gradebook(f"sqlite:///{gradebook}") as gb:
        for rel in course.notebooks:
            name = Path(rel).stem
            source = gb.find_notebook(name, course.assignment_id)
            answers = {c.name for c in source.solution_cells}
            result.manual_max += sum(c.max_score for c in source.grade_cells if c.name in answers)
            for cell in source.grade_cells:
                if cell.name in answers:
                    continue
                try:
                    grade = gb.find_grade(cell.name, name, course.assignment_id, result.student)
                except MissingEntry:
                    continue                                   # the notebook was not submitted
                grade.auto_score = sum(t.score for t in by_cell.get(cell.name, []))
            gb.db.commit()
            path = graded_dir / rel
            if not path.is_file():
                continue
            graded = nbformat.read(path, as_version=4)
            released = {cell_grade_id(c): c for c in nbformat.read(released_dir / rel, as_version=4).cells}
            for cell in graded.cells:
                meta = cell.metadata.get("nbgrader", {})
                if meta.get("grade") and not meta.get("solution") and cell.cell_type == "code":
                    cell.source = released[meta["grade_id"]].source     # the test as released: no hidden tests
                    verdicts = "\n".join(f"[{t.score:g}/{t.max_score:g}] {t.name}: {t.output}"
                                         for t in by_cell.get(meta["grade_id"], []))
                    cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                           text=f"Graded by the trusted checks:\n{verdicts}\n")]
            nbformat.write(graded, path)


def write_feedback(course: Course, course_dir: Path, dest: Path, result: StudentResult) -> None:
    """Copy nbgrader's feedback HTML and add trusted_checks.html (checks, messages, total)."""
    src = course_dir / "feedback" / result.student / course.assignment_id
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
        f"<h2>Messages</h2><ul>{notes}</ul><h2>Checks</h2>"
        f"<table border=1><tr><th>check</th><th>score</th><th>details</th></tr>{rows}</table></body></html>")


def summary(output: str) -> str:
    """One line for the CSV: the exception line of a traceback, else the first line."""
    text = output.split("\n--- output of your code ---")[0].strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):             # "your code raised an exception:" + traceback
        return f"{lines[0].rstrip(':')}: {lines[-1].strip()}"[:300]
    return lines[0][:300] if lines else "failed"


def write_csv(path: Path, results: list[StudentResult]) -> None:
    checks = [t.name for t in results[0].trusted] if results else []
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "total", "max", *checks, "manual_points_pending", "seconds", "messages"])
        for r in results:
            by_name = {t.name: t.score for t in r.trusted}
            writer.writerow([r.student, f"{r.total:g}", f"{r.max_total:g}", *[f"{by_name.get(n, 0):g}" for n in checks],
                             f"{r.manual_max:g}", f"{r.seconds:.1f}", " | ".join(r.messages)])


# Tables to which `nbgrader autograde` adds a student's rows (each row's id is a fresh uuid, a student's is its id);
# the others (course, assignment, notebooks, cells) are written once by generate_assignment before the shards copy it.
STUDENT_TABLES = ("student", "submitted_assignment", "submitted_notebook", "grade", "comment")


def merge_gradebooks(gradebook: Path, shards: list[Path]) -> None:
    """Add every student row of the shards' gradebooks (copies of `gradebook` made before autograde) to `gradebook`."""
    with closing(sqlite3.connect(gradebook)) as db:
        for shard in shards:
            db.execute("ATTACH DATABASE ? AS shard", (str(shard),))
            for table in STUDENT_TABLES:
                db.execute(f"INSERT OR IGNORE INTO main.{table} SELECT * FROM shard.{table}")
            db.commit()
            db.execute("DETACH DATABASE shard")


def shards_of(students: list[str], jobs: int) -> list[list[str]]:
    """`students` in min(jobs, len) contiguous shards whose sizes differ by at most one."""
    count = min(jobs, len(students))
    size, extra = divmod(len(students), count)
    bounds = [k * size + min(k, extra) for k in range(count + 1)]
    return [students[bounds[k]:bounds[k + 1]] for k in range(count)]


def grade_shard(course_file: str, course_dir: str, shard: int, students: dict[str, list[str]], everyone: list[str],
                feedback_dir: str, hide: list[str], first_uid: int, threads: int
                ) -> tuple[list[StudentResult], dict[str, float], str]:
    """One worker process: the trusted checks of `students` ({id: staging messages}), then nbgrader autograde and
    generate_feedback on them alone with a gradebook of the shard's own (gradebook.shard<k>.db). Returns the
    results, the seconds of each phase and nbgrader's log."""
    course, root = load_course(course_file), Path(course_dir)
    settings, aid = root / "grading_settings.json", course.assignment_id
    phases, clock = {}, time.monotonic()
    results = []
    for i, (sid, messages) in enumerate(students.items()):
        result = StudentResult(sid, messages=list(messages))
        result.trusted, result.seconds = grade_student(course_file, str(root / "submitted" / sid / aid), hide,
                                                       first_uid + i, threads)
        result.messages += [f"{t.name}: {summary(t.output)}" for t in result.trusted if t.score < t.max_score]
        results.append(result)
    phases["trusted checks"], clock = time.monotonic() - clock, time.monotonic()
    gradebook = root / f"gradebook.shard{shard}.db"
    shutil.copy2(root / "gradebook.db", gradebook)
    only_these = [f"--db=sqlite:///{gradebook}",
                  "--CourseDirectory.student_id_exclude=" + ",".join(s for s in everyone if s not in students)]
    recorded = run_nbgrader(root, settings, ["autograde", aid, "--force", *only_these],
                            timeout=120 + 10 * len(students))
    phases["nbgrader autograde"], clock = time.monotonic() - clock, time.monotonic()
    for result in results:
        try:
            record_in_gradebook(course, root, gradebook, result)
        except Exception as err:  # noqa: BLE001 - nbgrader could not record this student: the CSV still has it
            result.messages.append(f"not recorded in the nbgrader gradebook ({type(err).__name__}: {err})")
    phases["gradebook"], clock = time.monotonic() - clock, time.monotonic()
    feedback = run_nbgrader(root, settings, ["generate_feedback", aid, "--force", *only_these],
                            timeout=60 + 30 * len(students))
    phases["nbgrader generate_feedback"] = time.monotonic() - clock
    for result in results:
        if feedback.returncode != 0:
            result.messages.append("nbgrader feedback HTML could not be generated (see trusted_checks.html)")
        write_feedback(course, root, Path(feedback_dir) / result.student, result)
    return results, phases, recorded.stdout + recorded.stderr


def autograde(course: Course, submissions: Path, out: Path, jobs: int = 2) -> list[StudentResult]:
    """Grade every entry of `submissions` in min(jobs, count) worker processes; returns the results (also written to
    out/scores.csv)."""
    entries = sorted(p for p in submissions.iterdir() if (p.is_dir() or p.suffix == ".zip") and not p.is_symlink())
    if not entries:
        raise FileNotFoundError(f"{submissions} holds no submission folders or zips")
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "feedback", ignore_errors=True)          # no page of an earlier run survives
    course_dir = out / "course"
    support = [r for r in course.release_files
               if (course.root / r).exists() and not any(r == h or r.startswith(h + "/") for h in course.hidden_paths)]
    validate_check_support(course)
    settings = make_course_dir(course, course_dir, support)
    cases = load_cases(course.cases_path)
    check_cell_points(course, course_dir, cases)
    phases: dict[str, float] = {}
    clock = time.monotonic()
    gen = run_nbgrader(course_dir, settings, ["generate_assignment", course.assignment_id, "--force"], timeout=600)
    phases["nbgrader generate_assignment"], clock = time.monotonic() - clock, time.monotonic()
    if gen.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{gen.stdout[-3000:]}")
    print(sandbox.describe(), flush=True)
    released = course_dir / "release" / course.assignment_id
    staged: dict[str, list[str]] = {}
    scratch = sandbox.private_folder("hw8-unzip-")
    try:
        for entry in entries:
            sid = student_id(entry)
            staged[sid] = stage(course, entry, course_dir / "submitted" / sid / course.assignment_id, scratch,
                                released)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    phases["staging (notebooks rebuilt)"], clock = time.monotonic() - clock, time.monotonic()
    hide = [str(p) for p in (course.root, out, course_dir, submissions.resolve())]
    everyone, shards = list(staged), shards_of(list(staged), jobs)
    threads = max(1, (os.cpu_count() or 1) // len(shards))        # torch threads per worker: the cores shared out
    context = multiprocessing.get_context("spawn")     # a fresh interpreter per worker: no forked torch threads
    results, logs, shard_phases = {}, [], []
    with ProcessPoolExecutor(max_workers=len(shards), mp_context=context) as pool:
        futures = [pool.submit(grade_shard, str(course.path), str(course_dir), k, {s: staged[s] for s in shard},
                               everyone, str(out / "feedback"), hide,
                               sandbox.SANDBOX_UID + 1 + everyone.index(shard[0]), threads)
                   for k, shard in enumerate(shards)]
        for future in futures:
            graded, timing, log = future.result()
            results.update((r.student, r) for r in graded)
            shard_phases.append(timing)
            logs.append(log)
    phases[f"{len(shards)} shards in parallel (until the last)"] = time.monotonic() - clock
    for name in shard_phases[0]:
        phases[f"{name} (sum over shards)"] = sum(timing[name] for timing in shard_phases)
    clock = time.monotonic()
    shard_gradebooks = [course_dir / f"gradebook.shard{k}.db" for k in range(len(shards))]
    merge_gradebooks(course_dir / "gradebook.db", shard_gradebooks)
    for path in shard_gradebooks:
        path.unlink()
    phases["gradebook merge"] = time.monotonic() - clock
    (out / "autograde.log").write_text("\n".join(logs))
    for sid in everyone:
        result = results[sid]
        print(f"{result.student}: {result.total:g} / {result.max_total:g} ({result.seconds:.1f} s)"
              + "".join(f"\n    {m}" for m in result.messages), flush=True)
    write_csv(out / "scores.csv", [results[sid] for sid in everyone])
    (out / "phases.json").write_text(json.dumps({"students": len(everyone), "shards": len(shards), "seconds": phases},
                                                indent=1))
    print("phases: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items()), flush=True)
    return [results[sid] for sid in everyone]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", help="folder with one sub-folder or .zip per student")
    parser.add_argument("--course", default=str(DEFAULT_COURSE))
    parser.add_argument("--out", default=None, help="default: <build>/autograde")
    parser.add_argument("--jobs", type=int, default=2, help="students graded at once (worker processes)")
    args = parser.parse_args(argv)
    course = load_course(args.course)
    submissions = Path(args.submissions)
    if not submissions.is_dir():
        parser.error(f"{submissions} is not a folder (make autograde SUBMISSIONS=folder)")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    out = Path(args.out) if args.out else course.build_dir / "autograde"
    started = time.monotonic()
    results = autograde(course, submissions, out.resolve(), jobs=args.jobs)
    print(f"autograde: {len(results)} submissions in {time.monotonic() - started:.1f} s with {args.jobs} jobs; "
          f"scores in {out / 'scores.csv'}, feedback in {out / 'feedback'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
