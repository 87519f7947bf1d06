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

    python -m grading.autograde SUBMISSIONS [--course grading/course.toml] [--out build/autograde] [--jobs 2]
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import html
import json
import multiprocessing
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from grading import sandbox
from grading.course import DEFAULT_COURSE, Course, load_course, validate_check_support, within
from grading.harness import TestResult, load_cases, run_course, write_atomically
from grading.nbgrader_course import make_course_dir, run_nbgrader
from grading.submitted import Refused, copy_regular, find_root, read_notebook, special_entries, typed_nbgrader
from homework.parts import cell_grade_id, nbgrader_meta

MAX_UNZIPPED = 2 * 2**30
MAX_MEMBERS = 10_000
RUN_LOCK = Path(tempfile.gettempdir()) / f"hw8-autograde-{sandbox.SANDBOX_UID}.lock"
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


def safe_unzip(zip_path: Path, dest: Path) -> list[str]:
    """Extract a student's zip without letting a member escape dest or exceed MAX_UNZIPPED in total (zipfile never
    inflates a member past its declared size); members are written as regular files (a symbolic link stored in the
    zip becomes a small file holding its target). A member that cannot be extracted (a compression method or flag
    Python refuses, a bad CRC) is skipped: returns the messages that name them. Raises when the zip as a whole is
    unusable."""
    skipped = []
    with zipfile.ZipFile(zip_path) as zf:
        members = zf.infolist()
        if len(members) > MAX_MEMBERS:
            raise ValueError(f"{zip_path.name} has {len(members)} members, more than {MAX_MEMBERS}")
        if sum(i.file_size for i in members) > MAX_UNZIPPED:
            raise ValueError(f"{zip_path.name} unpacks to more than {MAX_UNZIPPED >> 30} GiB")
        for info in members:
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise ValueError(f"{zip_path.name}: member {info.filename!r} points outside the submission")
        for info in members:
            try:
                zf.extract(info, dest)
            except Exception as err:  # noqa: BLE001 - NotImplementedError, RuntimeError (encrypted), BadZipFile
                skipped.append(f"{zip_path.name}: {info.filename} could not be unpacked ({type(err).__name__}: "
                               f"{str(err)[:200]}): it was left out")
    return skipped


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


# What nbconvert's markdown renderer makes of plain markdown (headings with anchors, tables, highlighted code, images):
# a student's rendered answer with any other tag, attribute or link protocol is shown as plain text (safe_markdown).
RENDERED_TAGS = {"a", "b", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
                 "i", "img", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup", "table", "tbody", "td",
                 "th", "thead", "tr", "ul"}
RENDERED_ATTRIBUTES = {"a": ["href", "title", "class"], "img": ["src", "alt", "title"], "th": ["style"],
                       "td": ["style"], "div": ["class"], "span": ["class"], "code": ["class"], "pre": ["class"],
                       **{f"h{k}": ["id"] for k in range(1, 7)}}


def safe_markdown(text: str) -> str:
    """A student's markdown as feedback and formgrader may render it (nbgrader's templates render markdown without
    nbconvert's sanitiser): unchanged if nbconvert's renderer makes only RENDERED_TAGS of it, with plain attributes
    and http(s)/mailto/# links (math, code, tables, images: every usual answer); otherwise the whole cell is shown as
    plain text in a code block, with a note, so that no <script>, onerror or javascript: link reaches a page."""
    import bleach
    from bleach.css_sanitizer import CSSSanitizer
    from nbconvert.filters.markdown import markdown2html

    rendered = markdown2html(text)
    cleaned = bleach.clean(rendered, tags=RENDERED_TAGS, attributes=RENDERED_ATTRIBUTES, strip=False,
                           protocols=["http", "https", "mailto"], css_sanitizer=CSSSanitizer(["text-align"]))
    if _start_tags(rendered) == _start_tags(cleaned):
        return text
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", text)), default=0))
    return (f"*(The grader shows this answer as plain text: it holds HTML that could run script.)*\n\n"
            f"{fence}text\n{text}\n{fence}")


def _start_tags(page: str) -> list[tuple]:
    """Every start tag of an HTML fragment with its attributes, in order."""
    from html.parser import HTMLParser

    found: list[tuple] = []
    parser = HTMLParser()
    parser.handle_starttag = lambda tag, attrs: found.append(           # (bleach writes styles with a final ';')
        (tag, sorted((k, (v or "").replace(" ", "").rstrip(";")) for k, v in attrs)))
    parser.handle_startendtag = parser.handle_starttag
    parser.feed(page)
    parser.close()
    return found


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
        if grade_id in released_ids and cell.cell_type != released_ids[grade_id].cell_type:
            messages.append(f"{stem}: a {cell.cell_type} cell carries the grade id {grade_id} of a "
                            f"{released_ids[grade_id].cell_type} cell: it was kept as an extra cell, not graded")
            grade_id = None                           # as the trusted checks see it: only a cell of the same type
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
        if copy.cell_type != "code":
            copy.source = safe_markdown(copy.source)
        if "outputs" in copy:
            copy.outputs = _bounded(copy.outputs, budget)
        extras.setdefault(anchor, []).append(copy)
    messages += [f"{stem}:{g} appears {n} times: only the first copy was graded" for g, n in counts.items() if n > 1]
    cells = list(extras[None])
    for cell in released.cells:
        grade_id, meta = cell_grade_id(cell), nbgrader_meta(cell)
        rebuilt = nbformat.from_dict(dict(cell))
        mine = taken.get(grade_id)
        if grade_id and mine is None:
            messages.append(f"{stem}:{grade_id} is missing (deleted, or its metadata was changed): "
                            + ("its checks score 0" if meta.get("solution") else "the release's cell was used"))
        elif mine is not None:
            if meta.get("solution"):
                rebuilt.source = mine.source if cell.cell_type == "code" else safe_markdown(mine.source)
            elif mine.get("source", "") != cell.source:
                messages.append(f"{stem}:{grade_id} was edited: the release's cell was graded instead")
            if mine.get("metadata", {}).get("nbgrader") != typed_nbgrader(meta):
                messages.append(f"{stem}:{grade_id} had its nbgrader metadata changed: the release's was used")
            if cell.cell_type == "code":
                rebuilt.outputs = [] if meta.get("grade") else _bounded(mine.get("outputs", []), budget)
        cells.append(rebuilt)
        cells += extras.get(grade_id, []) if grade_id else []
    return nbformat.v4.new_notebook(cells=cells, metadata=released.metadata), messages


def copy_to_nbgrader(course: Course, entry: Path, submitted: Path, scratch: Path, released: Path) -> list[str]:
    """Copy one submission into nbgrader's submitted folder: regular files only, notebooks rebuilt from the release.
    A zip upload (or a zip inside an uploaded folder that holds none of the expected files) is unpacked into
    `scratch` first. Returns the messages for the student."""
    messages = []
    if entry.suffix == ".zip":
        entry = unpack(entry, scratch / "upload", messages)
    root = find_root(entry, course.submission_files)
    if not any(os.path.lexists(root / rel) for rel in course.submission_files):
        inner = sorted(p for p in root.iterdir() if p.suffix == ".zip" and not p.is_symlink() and p.is_file())
        if inner:
            messages.append(f"{inner[0].name} (inside the upload) was unpacked and graded")
            root = find_root(unpack(inner[0], scratch / "inner", messages), course.submission_files)
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
            student, notes = read_notebook(root, rel)
        except (FileNotFoundError, Refused) as err:
            messages.append(f"{err}: its checks score 0")
            continue
        notebook, rebuilt = rebuild_notebook(nbformat.read(released / rel, as_version=4), student, Path(rel).stem)
        messages += notes + rebuilt
        (submitted / rel).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, submitted / rel)
    return messages


def unpack(zip_path: Path, dest: Path, messages: list[str]) -> Path:
    """`dest` holding what safe_unzip could extract of zip_path; a problem becomes a message (never raised)."""
    dest.mkdir(parents=True)
    try:
        if zip_path.is_symlink() or not zip_path.is_file():
            raise ValueError("it is not a regular file")
        messages += safe_unzip(zip_path, dest)
    except Exception as err:  # noqa: BLE001 - BadZipFile, unsupported methods or flags, encryption, sizes
        messages.append(f"{zip_path.name} cannot be unpacked ({type(err).__name__}: {str(err)[:200]})")
    return dest


# ------------------------------------------------------------------------------------------------ trusted checks


def grade_one(course: Course, root: Path, sid: str, entry: Path, hide: list[str], uid: int,
              cases: list | None = None) -> StudentResult:
    """Stage one submission and run its trusted checks (`cases`: the course's, loaded once by the caller, else
    here); never raises (KeyboardInterrupt aside): whatever goes wrong (an exception of any kind, a native library's
    panic, memory) becomes this student's message and 0 for the checks not run."""
    cases = load_cases(course.cases_path) if cases is None else cases
    result, started = StudentResult(sid), time.monotonic()
    scratch = sandbox.private_folder("hw8-unzip-")
    try:
        released = root / "release" / course.assignment_id
        submitted = root / "submitted" / sid / course.assignment_id
        shutil.rmtree(submitted, ignore_errors=True)                 # what a worker that died may have left
        result.messages += copy_to_nbgrader(course, entry, submitted, scratch, released)
        result.trusted = run_course(course, submitted, hide=[Path(p) for p in hide], uid=uid, cases=cases)
    except BaseException as err:  # noqa: BLE001 - e.g. pyo3's PanicException, MemoryError: this student's alone
        if isinstance(err, KeyboardInterrupt):
            raise
        result.messages.append(f"grading stopped by an error ({type(err).__name__}: {str(err)[:300]}): the checks "
                               "not run score 0; tell the course staff")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.trusted = complete(result.trusted, cases, "not run: grading stopped earlier")
    result.messages += [f"{t.name}: {summary(t.output)}" for t in result.trusted if t.score < t.max_score]
    result.seconds = time.monotonic() - started
    return result


def complete(trusted: list[TestResult], cases: list, why: str) -> list[TestResult]:
    """`trusted` with a 0-point row for every check of `cases` it lacks, in the cases' order."""
    have = {t.name: t for t in trusted}
    return [have.get(c.name) or TestResult(c.name, 0.0, c.points, why, c.nbgrader_cell) for c in cases]


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
            meta = nbgrader_meta(cell)
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
    manual: dict[str, float] = {}
    with Gradebook(f"sqlite:///{gradebook}") as gb:
        for rel in course.notebooks:
            name = Path(rel).stem
            source = gb.find_notebook(name, course.assignment_id)
            answers = {c.name for c in source.solution_cells}
            manual[rel] = sum(c.max_score for c in source.grade_cells if c.name in answers)
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
                meta = nbgrader_meta(cell)
                if meta.get("grade") and not meta.get("solution") and cell.cell_type == "code":
                    cell.source = released[meta["grade_id"]].source     # the test as released: no hidden tests
                    verdicts = "\n".join(f"[{t.score:g}/{t.max_score:g}] {t.name}: {t.output}"
                                         for t in by_cell.get(meta["grade_id"], []))
                    cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                           text=f"Graded by the trusted checks:\n{verdicts}\n")]
            nbformat.write(graded, path)
    result.manual_max = sum(manual.values())              # set, not added: a regrade records the same student again


def write_feedback(course: Course, course_dir: Path, dest: Path, result: StudentResult) -> None:
    """Copy nbgrader's feedback HTML and add trusted_checks.html (checks, messages, total)."""
    src = course_dir / "feedback" / result.student / course.assignment_id
    dest.mkdir(parents=True, exist_ok=True)
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


def nbgrader_step(root: Path, course: Course, command: str, students: list[str], everyone: list[str],
                  gradebook: Path, done: Callable[[str], bool], per_student: float) -> dict[str, str]:
    """`nbgrader COMMAND` for `students` (the others excluded, through a settings file of their own: nothing on the
    command line), then each student it left undone (`done`) alone again, so one notebook that breaks nbgrader
    costs only its own student. Returns {student: why it is still undone}."""
    settings = json.loads((root / "grading_settings.json").read_text())

    def run(group: list[str]) -> subprocess.CompletedProcess:
        mine = root / f"settings.{uuid.uuid4().hex}.json"
        mine.write_text(json.dumps({**settings, "db_url": f"sqlite:///{gradebook}",
                                    "student_id_exclude": [s for s in everyone if s not in group]}))
        try:
            return run_nbgrader(root, mine, [command, course.assignment_id, "--force"],
                                timeout=60 + per_student * len(group))
        finally:
            mine.unlink(missing_ok=True)

    run(students)
    undone = {}
    for sid in [s for s in students if not done(s)]:
        alone = run([sid])
        if not done(sid):
            tail = (alone.stderr or alone.stdout).strip().splitlines()
            undone[sid] = f"nbgrader {command} failed on this submission (exit {alone.returncode}: " \
                f"{tail[-1][:300] if tail else 'no output'})"
    return undone


def grade_group(course_file: str, course_dir: str, tag: str, students: dict[str, str], everyone: list[str],
                feedback_dir: str, hide: list[str], uids: dict[str, int], threads: int) -> None:
    """One worker process: a shard of the students, or one student again after a worker died. For each student, the
    staging and trusted checks (results/<id>.json, kept if an earlier worker wrote it), then nbgrader autograde and
    generate_feedback on these students alone with a gradebook of their own (gradebook.<tag>.db), then the feedback
    pages. Writes results/<tag>.done (with the seconds of each phase) once everything is written."""
    import torch

    _prefer_as_oom_victim(500)                     # the main process outlives a worker that runs out of memory
    torch.set_num_threads(threads)
    course, root = load_course(course_file), Path(course_dir)
    cases = load_cases(course.cases_path)
    phases, clock = {}, time.monotonic()
    results = {}
    for sid in students:                        # what a worker that died may have left must not count as done
        for folder in ("autograded", "feedback"):
            shutil.rmtree(root / folder / sid, ignore_errors=True)
        shutil.rmtree(Path(feedback_dir) / sid, ignore_errors=True)
    for sid, entry in students.items():
        path = root / "results" / f"{sid}.json"
        if not path.exists():
            write_atomically(path, json.dumps(asdict(grade_one(course, root, sid, Path(entry), hide, uids[sid],
                                                               cases))))
        results[sid] = read_result(path)
    phases["trusted checks"], clock = time.monotonic() - clock, time.monotonic()
    gradebook = root / f"gradebook.{tag}.db"
    shutil.copy2(root / "gradebook.db", gradebook)
    aid, ids = course.assignment_id, list(students)
    graded = lambda sid: all((root / "autograded" / sid / aid / rel).is_file() for rel in course.notebooks  # noqa: E731
                             if (root / "submitted" / sid / aid / rel).is_file())
    for sid, why in nbgrader_step(root, course, "autograde", ids, everyone, gradebook, graded, 10).items():
        results[sid].messages.append(f"not recorded in the nbgrader gradebook: {why}")
    phases["nbgrader autograde"], clock = time.monotonic() - clock, time.monotonic()
    for result in results.values():
        try:
            record_in_gradebook(course, root, gradebook, result)
        except Exception as err:  # noqa: BLE001 - nbgrader could not record this student: the CSV still has it
            result.messages.append(f"not recorded in the nbgrader gradebook ({type(err).__name__}: {err})")
    phases["gradebook"], clock = time.monotonic() - clock, time.monotonic()
    fed = lambda sid: not graded(sid) or any((root / "feedback" / sid / aid).glob("*.html"))  # noqa: E731
    for sid, why in nbgrader_step(root, course, "generate_feedback", ids, everyone, gradebook, fed, 30).items():
        results[sid].messages.append(f"nbgrader feedback HTML could not be generated (see trusted_checks.html): {why}")
    phases["nbgrader generate_feedback"] = time.monotonic() - clock
    for sid, result in results.items():
        write_feedback(course, root, Path(feedback_dir) / sid, result)
        write_atomically(root / "results" / f"{sid}.json", json.dumps(asdict(result)))
    write_atomically(root / "results" / f"{tag}.done", json.dumps(phases))


def _prefer_as_oom_victim(score: int) -> None:
    """Raise this process's oom_score_adj (Linux), so the kernel's OOM killer takes it before the main process."""
    try:
        Path("/proc/self/oom_score_adj").write_text(str(score))
    except OSError:
        pass


def read_result(path: Path) -> StudentResult:
    data = json.loads(path.read_text())
    return StudentResult(**{**data, "trusted": [TestResult(**t) for t in data["trusted"]]})


def run_workers(jobs: int, work: list[tuple[str, dict[str, str]]], start: Callable[[str, dict[str, str]], object],
                timeout: Callable[[int], float]) -> dict[str, str]:
    """Run `start(tag, students)` processes, at most `jobs` at a time, each killed after timeout(len(students))
    seconds. Returns {tag: why it ended without its done marker} for the ones that crashed (else nothing)."""
    pending, running, failed = list(work), {}, {}
    while pending or running:
        while pending and len(running) < jobs:
            tag, students = pending.pop(0)
            proc = start(tag, students)
            proc.start()
            running[tag] = (proc, time.monotonic() + timeout(len(students)))
        time.sleep(0.2)
        for tag, (proc, deadline) in list(running.items()):
            if proc.is_alive() and time.monotonic() < deadline:
                continue
            if proc.is_alive():
                proc.kill()
            proc.join()
            del running[tag]
            if proc.exitcode != 0:
                code = proc.exitcode
                failed[tag] = ("killed after its time limit" if time.monotonic() >= deadline else
                               "killed (out of memory?)" if code == -9 else f"exit status {code}")
    return failed


def autograde(course: Course, submissions: Path, out: Path, jobs: int = 2) -> list[StudentResult]:
    """Grade every entry of `submissions` in min(jobs, count) worker processes; returns the results (also written to
    out/scores.csv). A worker that dies (memory, a native crash, its time limit) costs nothing to its students but a
    regrade, each alone in a process of its own; a student whose own process dies too gets a row of zeros naming why."""
    entries, ignored, notes = {}, [], {}
    for path in sorted(submissions.iterdir()):
        if path.name.startswith(".") or path.is_symlink() or not (path.is_dir() or path.suffix == ".zip"):
            ignored.append(path.name)             # .ipynb_checkpoints, stray files: no student
            continue
        sid = student_id(path)
        if sid in entries:
            notes.setdefault(sid, []).append(f"{path.name} was ignored: {entries[sid].name} has the same student id")
        else:
            entries[sid] = path
    if ignored:
        print(f"not submissions (ignored): {', '.join(ignored[:20])}", flush=True)
    if not entries:
        raise FileNotFoundError(f"{submissions} holds no submission folders or zips")
    everyone = list(entries)
    out.mkdir(parents=True, exist_ok=True)
    for old in ("scores.csv", "phases.json", "autograde.log"):          # no file of an earlier run looks new
        (out / old).unlink(missing_ok=True)
    shutil.rmtree(out / "feedback", ignore_errors=True)
    course_dir = out / "course"
    support = [r for r in course.release_files
               if (course.root / r).exists() and not any(within(r, h) for h in course.hidden_paths)]
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
    hide = [str(p) for p in (course.root, out, course_dir, submissions.resolve())]
    entry_of = {sid: str(e) for sid, e in entries.items()}
    uids = {sid: sandbox.SANDBOX_UID + 1 + k for k, sid in enumerate(everyone)}
    shards = shards_of(everyone, jobs)
    threads = max(1, (os.cpu_count() or 1) // len(shards))        # torch threads per worker: the cores shared out
    context = multiprocessing.get_context("spawn")     # a fresh interpreter per worker: no forked torch threads

    def start(tag: str, students: dict[str, str]):
        return context.Process(target=grade_group, args=(str(course.path), str(course_dir), tag, students, everyone,
                                                         str(out / "feedback"), hide, uids, threads))

    per_student = course.submission_timeout + 120                  # checks, then nbgrader's share
    work = [(f"shard{k}", {s: entry_of[s] for s in shard}) for k, shard in enumerate(shards)]
    crashed = run_workers(len(shards), work, start, lambda n: 300 + per_student * n)
    again = [(f"alone{everyone.index(s)}", {s: entry_of[s]}) for tag, students in work if tag in crashed
             for s in students]
    crashed_alone = run_workers(1, again, start, lambda n: 300 + per_student * n)    # one at a time: least memory
    phases[f"{len(shards)} shards in parallel, {len(again)} students regraded alone (until the last)"] = \
        time.monotonic() - clock
    clock = time.monotonic()
    finished = [tag for tag, _ in work + again if (course_dir / "results" / f"{tag}.done").is_file()
                and tag not in crashed and tag not in crashed_alone]
    merge_gradebooks(course_dir / "gradebook.db", [course_dir / f"gradebook.{tag}.db" for tag in finished])
    for path in course_dir.glob("gradebook.*.db"):
        path.unlink()
    phases["gradebook merge"] = time.monotonic() - clock
    worker_phases = [json.loads((course_dir / "results" / f"{tag}.done").read_text()) for tag in finished]
    for name in worker_phases[0] if worker_phases else []:
        phases[f"{name} (sum over workers)"] = sum(timing.get(name, 0.0) for timing in worker_phases)
    results = []
    for k, sid in enumerate(everyone):
        path = course_dir / "results" / f"{sid}.json"
        why = crashed_alone.get(f"alone{k}")
        if path.is_file():
            result = read_result(path)
        else:
            result = StudentResult(sid, complete([], cases, f"not graded: the grader's process for this submission "
                                                            f"ended ({why})"))
            result.messages.append(f"grading this submission ended the grader's process ({why}): every check scores "
                                   "0; tell the course staff")
        result.messages[:0] = notes.get(sid, [])
        if why:
            result.messages.append(f"not recorded in nbgrader, no feedback pages: the grader's process ended ({why})")
            if not (out / "feedback" / sid).exists():
                write_feedback(course, course_dir, out / "feedback" / sid, result)
        results.append(result)
    for result in results:
        print(f"{result.student}: {result.total:g} / {result.max_total:g} ({result.seconds:.1f} s)"
              + "".join(f"\n    {m}" for m in result.messages), flush=True)
    write_csv(out / "scores.csv", results)
    (out / "phases.json").write_text(json.dumps({"students": len(everyone), "shards": len(shards),
                                                 "regraded alone": len(again), "seconds": phases}, indent=1))
    print("phases: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items()), flush=True)
    problems = {**crashed, **crashed_alone}
    print(f"summary: {len(results)} students, {sum(r.total == r.max_total for r in results)} with every check; "
          f"workers that ended early: {problems or 'none'}", flush=True)
    return results


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
    out = (Path(args.out) if args.out else course.build_dir / "autograde").resolve()
    out.mkdir(parents=True, exist_ok=True)
    with open(RUN_LOCK, "a") as lock:           # one run a machine: runs would share the sandbox users
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            parser.error(f"another autograde run is grading on this machine ({RUN_LOCK} is locked): its students "
                         "use the same sandbox users; wait for it to end")
        started = time.monotonic()
        results = autograde(course, submissions, out, jobs=args.jobs)
    print(f"autograde: {len(results)} submissions in {time.monotonic() - started:.1f} s with {args.jobs} jobs; "
          f"scores in {out / 'scores.csv'}, feedback in {out / 'feedback'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
