"""Grading tools: release, leak check, nbgrader autograde, Gradescope harness, submission zip, threat model.

The whole cycle runs on the mini course (tests/fixtures/mini_course, canaries planted in every secret) with the
broken-submission corpus (tests/broken_submissions/corpus.py) through both graders. The real repository gets the
release + leak check and the student's view of the release (imports, NotImplementedError stubs, solutions pasted
back); tests/test_grading_hw8.py grades the real course on both routes.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "tests" / "fixtures" / "mini_course"

from grading import sandbox  # noqa: E402
from grading.course import load_course  # noqa: E402
from grading.gradescope import build_bundle  # noqa: E402
from grading.leakcheck import collect_secrets, find_leaks  # noqa: E402
from grading.release import build_release  # noqa: E402
from grading.strip import strip_solutions  # noqa: E402

_spec = importlib.util.spec_from_file_location("hw8_corpus", REPO / "tests" / "broken_submissions" / "corpus.py")
corpus = importlib.util.module_from_spec(_spec)
sys.modules["hw8_corpus"] = corpus          # dataclasses look their module up
_spec.loader.exec_module(corpus)

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def scratch():
    """A private (0700) folder for this module, outside pytest's basetemp: concurrent pytest sessions of the same
    user prune each other's basetemp folders, and the sandbox tests need folders the student uid cannot read."""
    folder = Path(tempfile.mkdtemp(prefix="hw8-grading-tests-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def tmp(scratch, request):
    folder = scratch / request.node.name
    folder.mkdir()
    return folder


def run(cmd: list[str], cwd: Path, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=timeout)


def execute_notebook(path: Path, timeout: int = 120) -> str | None:
    """Run a notebook in its folder; None if every cell ran, else the name of the first exception."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as err:
        return err.ename
    finally:
        nbformat.write(nb, path)
    return None


# ------------------------------------------------------------------------------------------------ the mini course


@pytest.fixture(scope="module")
def mini(scratch):
    """The mini course and its release (built, leak-checked and zipped by grading/release.py)."""
    course = load_course(MINI / "course.toml")
    build = scratch / "mini_build"
    started = time.monotonic()
    release, zip_path = build_release(course, build / "release")
    TIMINGS["mini release"] = time.monotonic() - started
    return {"course": course, "release": release, "zip": zip_path, "build": build}


@pytest.fixture(scope="module")
def submissions(mini, scratch):
    """The solution, the untouched release and every broken submission, as folders."""
    base = scratch / "corpus"
    made = corpus.build_corpus(mini["release"], base / "subs", autograder_base=base / "gs")
    return {"folders": made, "gs_base": base / "gs", "base": base}


def test_strip_solutions_keeps_signatures_docstrings_and_indents_the_stub():
    source = '''"""Module doc that quotes the markers: `### BEGIN SOLUTION` ... `### END SOLUTION`."""


def f(x):
    """Doc of f."""
### BEGIN SOLUTION
    y = x + 1  # SECRET_ONE
    return y
### END SOLUTION


class A:
    def g(self, x):
        """Doc of g."""
        if x:
            ### BEGIN SOLUTION
            return -x  # SECRET_TWO
            ### END SOLUTION
        return 0
'''
    out = strip_solutions(source, "m.py")
    assert "SECRET" not in out and "return y" not in out
    assert '"""Doc of f."""' in out and "def g(self, x):" in out and "quotes the markers" in out
    namespace = {}
    exec(compile(out, "m.py", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="f in m.py"):
        namespace["f"](1)
    with pytest.raises(NotImplementedError, match="A.g in m.py"):
        namespace["A"]().g(1)
    assert namespace["A"]().g(0) == 0
    with pytest.raises(ValueError, match="no end solution"):
        strip_solutions("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "bad.py")
    with pytest.raises(ValueError, match="hidden tests"):
        strip_solutions("### BEGIN HIDDEN TESTS\nassert 1\n### END HIDDEN TESTS\n", "bad.py")


def test_mini_release_is_the_allow_list_with_stubs(mini):
    release = mini["release"]
    files = sorted(p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file())
    assert files == ["Mini.ipynb", "README.md", "data/numbers.txt", "helper_mini.py", "mini_ops.py",
                     "tests/test_mini_ops.py"]
    module = (release / "mini_ops.py").read_text()
    assert module.count("raise NotImplementedError(") == 3
    assert '"""Softmax over the last axis: x (..., D) -> (..., D), rows sum to one."""' in module
    assert "def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:" in module
    nb = nbformat.read(release / "Mini.ipynb", as_version=4)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    assert "raise NotImplementedError()" in by_id["scale_rows_impl"].source
    assert by_id["answer_1a"].source == "YOUR ANSWER HERE"
    assert "HIDDEN" not in json.dumps(nb) and all(not c.get("outputs") for c in nb.cells)
    with zipfile.ZipFile(mini["zip"]) as zf:
        assert sorted(n.removeprefix("mini/") for n in zf.namelist()) == files


def test_a_notebook_cell_that_prints_is_graded_even_when_output_fails(tmp, monkeypatch):
    """What solution cells print is not graded: a print that fails (the process past its output limit, as a
    resource-hogging submission makes it) must not stop the cell before it defines what the checks read."""
    import io
    import json as json_

    from grading.sandbox_child import load_notebook_module

    class Full(io.TextIOBase):
        def write(self, text):
            raise OSError(27, "File too large")

    cells = tmp / "Nb.ipynb.cells.json"
    cells.write_text(json_.dumps(["print('sums:', [1, 1])\nSUM_AXIS = 1", "raise ValueError('a broken cell')",
                                  "AFTER = SUM_AXIS + 1"]))
    monkeypatch.setattr(sys, "stdout", Full())
    monkeypatch.setattr(sys, "stderr", Full())
    module = load_notebook_module(str(cells), "Nb")
    assert module.SUM_AXIS == 1 and module.AFTER == 2


def test_a_check_with_an_unknown_input_key_is_refused_by_name():
    from grading.checks import Case, randn
    from grading.reference import build_request

    good = Case("ok", 1, "mini_ops:softmax", lambda g: {"args": [randn(g, 2, 3)], "kwargs": {}})
    assert build_request(good, None)["args"][0].shape == (2, 3)
    typo = Case("typo", 1, "mini_ops:softmax", lambda g: {"args": [randn(g, 2, 3)], "kwarg": {"dim": 0}})
    with pytest.raises(ValueError, match=r"check 'typo': unknown input key\(s\) \['kwarg'\]"):
        build_request(typo, None)


def test_a_misspelt_course_key_is_refused_by_name(tmp):
    text = (MINI / "course.toml").read_text().replace("case_timeout = ", "case_timout = ")
    (tmp / "course.toml").write_text(f'root = "{MINI}"\n' + text)
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'case_timout'"):
        load_course(tmp / "course.toml")


def test_a_hidden_test_block_in_a_notebook_is_refused_with_where_trusted_checks_go(tmp):
    """Neither grader executes notebook code, so a '### BEGIN HIDDEN TESTS' block would change no grade: building the
    release (or the autograder's course folder) refuses it and says where the check belongs."""
    course_copy = tmp / "mini_course"
    shutil.copytree(MINI, course_copy)
    nb = nbformat.read(course_copy / "Mini.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_scale_rows")
    cell.source += "\n### BEGIN HIDDEN TESTS\nassert scale_rows(torch.ones(1, 1)).item() == 1\n### END HIDDEN TESTS"
    nbformat.write(nb, course_copy / "Mini.ipynb")
    with pytest.raises(ValueError, match=r"Mini.ipynb cell \d+ \(test_scale_rows\): '### BEGIN HIDDEN TESTS' block.*"
                       r"trusted check in grading_cases.py \(nbgrader_cell='test_scale_rows'\)"):
        build_release(load_course(course_copy / "course.toml"), tmp / "release")


def test_leak_check_finds_every_planted_secret(mini, tmp):
    course, clean = mini["course"], mini["release"]
    assert find_leaks(course, clean, mini["zip"]) == []
    secrets = collect_secrets(course).lines()
    assert any("CANARY_HIDDEN_FILE_0b9e" in s for s in secrets) and any("CANARY_ANSWER_e44d" in s for s in secrets)
    leaky = tmp / "release"
    shutil.copytree(clean, leaky)
    # a hidden-test line pasted into a released module, a solution line in a notebook output,
    # the written answer inside a compressed data file, the hidden checks file inside a zip
    hidden_line = "out = mini_ops.attention(q, q, torch.eye(4, 4)[:, :4], mask=mini_ops.causal_mask(4))"
    (leaky / "helper_mini.py").write_text((leaky / "helper_mini.py").read_text() + f"\n{hidden_line}\n")
    nb = nbformat.read(leaky / "Mini.ipynb", as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="    return x / x.abs().amax(dim=-1, keepdim=True)\n")]
    nbformat.write(nb, leaky / "Mini.ipynb")
    import gzip
    (leaky / "data" / "extra.txt.gz").write_bytes(gzip.compress(
        b"Over the keys: the softmax normalises each query's row of weights.\n"))
    with zipfile.ZipFile(leaky / "data" / "bundle.zip", "w") as zf:
        zf.write(MINI / "grading_cases.py", "grading_cases.py")
    where = {leak.where for leak in find_leaks(course, leaky)}
    assert {"helper_mini.py", "Mini.ipynb", "data/extra.txt", "data/bundle.zip!grading_cases.py"} <= where


def test_mini_release_runs_for_a_student_and_passes_with_solutions(mini, tmp):
    student = tmp / "student"
    shutil.copytree(mini["release"], student)
    assert execute_notebook(student / "Mini.ipynb") == "NotImplementedError"     # runs up to the first stub
    visible = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], student, 300)
    assert visible.returncode == 1 and "NotImplementedError" in visible.stdout
    assert "ImportError" not in visible.stdout and "ModuleNotFoundError" not in visible.stdout
    solved = corpus.make_solution(mini["release"], tmp / "solved_files")
    shutil.copy2(solved / "Mini.ipynb", student / "Mini.ipynb")
    shutil.copy2(solved / "mini_ops.py", student / "mini_ops.py")
    assert execute_notebook(student / "Mini.ipynb") is None
    assert (student / "checkpoints" / "tiny.pt").is_file()
    visible = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], student, 300)
    assert visible.returncode == 0, visible.stdout[-2000:]
    # make submission: refuses an unrun notebook and a missing checkpoint, then zips exactly the graded files
    args = [sys.executable, "-P", "-m", "homework.submission", "--root", str(student), "--notebooks",
            "Mini.ipynb", "--modules", "mini_ops.py", "--checkpoint", "checkpoints/tiny.pt"]
    tools = {**ENV, "PYTHONPATH": str(REPO)}                 # the repository's homework/, from the student's folder
    (student / "checkpoints" / "tiny.pt").rename(student / "tiny.pt")
    missing = run(args, student, 60, tools)
    assert missing.returncode == 1 and "checkpoints/tiny.pt not found" in missing.stderr
    (student / "tiny.pt").rename(student / "checkpoints" / "tiny.pt")
    ok = run(args, student, 60, tools)
    assert ok.returncode == 0, ok.stderr
    with zipfile.ZipFile(student / "build" / "submission" / "hw8_submission.zip") as zf:
        assert sorted(zf.namelist()) == ["Mini.ipynb", "checkpoints/tiny.pt", "mini_ops.py"]
    shutil.copy2(mini["release"] / "Mini.ipynb", student / "Mini.ipynb")          # never run
    unrun = run(args, student, 60, tools)
    assert unrun.returncode == 1 and "Mini.ipynb has no outputs" in unrun.stderr


NEEDS_ROOT = {"reads_hidden_files", "writes_results"}     # isolation needs root (as on Gradescope and in CI)
EXPECTED = {"solution": (8, 8, ()), "untouched_release": (0, 0, ("NotImplementedError",)),
            **{b.name: (b.score, b.score, b.messages) for b in corpus.CORPUS}}


def _expected_messages(messages: tuple[str, ...], path: str) -> list[str]:
    other = "gs:" if path == "nb" else "nb:"
    return [m.removeprefix(f"{path}:") for m in messages if not m.startswith(other)]


def _gradescope_run(bundle: Path, root: Path, submission: Path, uid: int) -> dict:
    if root.exists():
        shutil.rmtree(root)
    (root / "results").mkdir(parents=True)
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(root / "source")
    shutil.copytree(submission, root / "submission")
    fake = {"score": 999, "tests": []}                      # planted before grading: must be replaced
    (root / "results" / "results.json").write_text(json.dumps(fake))
    env = {**ENV, "HW8_AUTOGRADER_ROOT": str(root), "HW8_PYTHON": sys.executable, "HW8_SANDBOX_UID": str(uid),
           "HW8_SANDBOX_EXTRA_HIDE": str(REPO)}              # a Gradescope image has no instructor repository
    started = time.monotonic()
    done = run(["bash", str(root / "source" / "run_autograder")], root, 600, env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    results["_seconds"], results["_root"] = time.monotonic() - started, str(root)
    return results


@pytest.fixture(scope="module")
def graded(mini, submissions):
    """The whole corpus graded by both graders at once (they are independent): nbgrader through
    `grading/autograde.py` (a subprocess) and Gradescope through `run_autograder` (4 at a time)."""
    out = submissions["base"] / "autograde"
    started = time.monotonic()
    autograde = subprocess.Popen([sys.executable, "-m", "grading.autograde",
                                  str(submissions["base"] / "subs"), "--course", str(MINI / "course.toml"),
                                  "--out", str(out)], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    bundle = build_bundle(mini["course"], submissions["base"] / "gradescope")
    folders = submissions["folders"]
    uids = [sandbox.SANDBOX_UID + 20 + i for i in range(len(folders))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_gradescope_run, bundle, submissions["gs_base"] / name, folder, uid)
                   for (name, folder), uid in zip(folders.items(), uids)}
        gradescope = {name: f.result() for name, f in futures.items()}
    TIMINGS["gradescope corpus (run_autograder, 4 at once)"] = time.monotonic() - started
    TIMINGS["gradescope one submission (mean)"] = sum(r["_seconds"] for r in gradescope.values()) / len(folders)
    log, _ = autograde.communicate(timeout=900)
    TIMINGS["both graders, whole corpus, together"] = time.monotonic() - started
    reported = re.search(r"autograde: (\d+) submissions in ([\d.]+) s", log)
    if reported:
        TIMINGS["nbgrader corpus (autograde.py, while Gradescope ran too)"] = float(reported.group(2))
        TIMINGS["nbgrader one submission (corpus time / count)"] = float(reported.group(2)) / int(reported.group(1))
    return {"bundle": bundle, "gradescope": gradescope, "uids": uids, "autograde_rc": autograde.returncode,
            "autograde_log": log, "autograde_out": out}


def test_autograde_nbgrader_grades_the_whole_corpus(graded):
    assert len(corpus.CORPUS) >= 12
    out = graded["autograde_out"]
    assert graded["autograde_rc"] == 0, graded["autograde_log"][-4000:]
    with (out / "scores.csv").open() as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert set(rows) == set(EXPECTED)
    for name, (nb_score, _, messages) in EXPECTED.items():
        if name in NEEDS_ROOT and not sandbox.is_root():
            continue
        row = rows[name]
        assert float(row["total"]) == nb_score, (name, row["total"], row["messages"])
        assert float(row["max"]) == corpus.MAX_POINTS and float(row["manual_points_pending"]) == 1
        for text in _expected_messages(messages, "nb"):
            assert text in row["messages"], (name, text, row["messages"])
        assert (out / "feedback" / name / "trusted_checks.html").is_file()
        assert (out / "feedback" / name / "Mini.html").is_file() or name == "corrupt_json"


def test_autograde_gradebook_holds_every_student_of_every_shard(graded):
    """The corpus is graded in 2 shards, each with a gradebook of its own; the merged gradebook.db (formgrader's) has
    every student, and each grade cell's auto score is the sum of its checks' scores in scores.csv."""
    from nbgrader.api import Gradebook, MissingEntry

    from grading.harness import load_cases
    out = graded["autograde_out"]
    assert "2 shards" in graded["autograde_log"], graded["autograde_log"][-2000:]
    cell_of = {c.name: c.nbgrader_cell for c in load_cases(MINI / "grading_cases.py")
               if getattr(c, "nbgrader_cell", None)}
    assert len(set(cell_of.values())) >= 2
    with (out / "scores.csv").open() as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    recorded = 0
    with Gradebook(f"sqlite:///{out / 'course' / 'gradebook.db'}") as gb:
        students = {s.id for s in gb.students}
        assert students <= set(rows)
        for name, row in rows.items():
            expected: dict[str, float] = {}
            for check, cell in cell_of.items():
                expected[cell] = expected.get(cell, 0.0) + float(row[check])
            try:
                if name not in students:
                    raise MissingEntry()
                notebook = gb.find_submission_notebook("Mini", "mini", name)
            except MissingEntry:
                assert "Mini.ipynb" in row["messages"], (name, row["messages"])   # not submitted or unreadable
                continue
            assert {g.name: g.auto_score for g in notebook.grades if g.name in expected} == expected, name
            recorded += 1
    assert recorded >= len(rows) - 2


def test_shards_split_students_evenly_in_order():
    from grading.autograde import shards_of
    students = [f"s{i}" for i in range(11)]
    for jobs in (1, 2, 3, 4, 11, 16):
        shards = shards_of(students, jobs)
        assert [s for shard in shards for s in shard] == students
        assert len(shards) == min(jobs, 11) and max(map(len, shards)) - min(map(len, shards)) <= 1


class FakePanic(BaseException):
    """Stands for pyo3's PanicException: a BaseException, not an Exception."""


def test_any_error_while_grading_a_student_is_that_students_message_and_zeros(tmp, monkeypatch):
    """grade_one never raises: a panic (a BaseException) while staging becomes the student's message, and every check
    of the course is in the row, at 0."""
    from grading import autograde
    from grading.harness import load_cases

    def panic(*args, **kwargs):
        raise FakePanic("a native library panicked")

    monkeypatch.setattr(autograde, "copy_to_nbgrader", panic)
    course = load_course(MINI / "course.toml")
    (tmp / "upload").mkdir()
    result = autograde.grade_one(course, tmp / "course", "alice", tmp / "upload", [], sandbox.SANDBOX_UID + 400)
    assert [t.name for t in result.trusted] == [c.name for c in load_cases(course.cases_path)]
    assert result.total == 0 and result.max_total > 0
    assert "grading stopped by an error (FakePanic: a native library panicked)" in " | ".join(result.messages)


def test_written_answers_render_as_written_and_script_never():
    """safe_markdown keeps every markdown cell of the instructor's notebooks (LaTeX, tables, code, links) as written,
    and turns answers that would run script in a page into plain text."""
    from grading.autograde import safe_markdown

    for name in ("Summarization.ipynb", "Visualizing_BERT.ipynb", "Kernel_Attention.ipynb"):
        for cell in nbformat.read(REPO / name, as_version=4).cells:
            if cell.cell_type == "markdown":
                assert safe_markdown(cell.source) == cell.source, (name, cell.source[:200])
    for hostile in ("<script>alert(1)</script>", '<img src=x onerror="alert(1)">', "[x](javascript:alert(1))",
                    "<div>\n$<script>alert(1)</script>$\n</div>", '<a href="javascript:alert(1)">a</a>',
                    "<iframe src=https://x></iframe>"):
        shown = safe_markdown(hostile)
        assert shown.startswith("*(The grader shows this answer as plain text") and hostile in shown, hostile


def test_a_check_that_raises_anything_costs_only_itself(submissions, monkeypatch):
    """A panic (a BaseException) while running one check: that check scores 0 with a message, every other check of
    the submission is graded as usual."""
    from grading import harness

    course = load_course(MINI / "course.toml")
    cases = harness.load_cases(course.cases_path)
    real_run_one = harness._run_one

    def run_one(case, *args):
        if case.name == cases[0].name:
            raise FakePanic("a native library panicked")
        return real_run_one(case, *args)

    monkeypatch.setattr(harness, "_run_one", run_one)
    results = harness.run_course(course, submissions["folders"]["solution"], hide=[], cases=cases,
                                 uid=sandbox.SANDBOX_UID + 450)
    assert [r.name for r in results] == [c.name for c in cases]
    assert results[0].score == 0 and "FakePanic: a native library panicked" in results[0].output
    assert all(r.score == r.max_score for r in results[1:]), [(r.name, r.output[:200]) for r in results[1:]]


def _worker(tag: str, students: dict[str, str]) -> None:
    if "bomb" in students:
        os.kill(os.getpid(), 9)                       # as the OOM killer would
    if "slow" in students:
        time.sleep(60)


def test_workers_that_die_or_hang_are_reported_and_the_others_finish():
    """run_workers, the loop that autograde's shards and its students regraded alone run in: a worker killed by a
    signal or past its time limit is named with the reason; the other workers finish normally."""
    from grading.autograde import run_workers

    context = __import__("multiprocessing").get_context("fork")
    work = [("shard0", {"alice": "", "bomb": ""}), ("shard1", {"bob": ""}), ("shard2", {"slow": ""})]
    started = time.monotonic()
    failed = run_workers(2, work, lambda tag, students: context.Process(target=_worker, args=(tag, students)),
                         lambda n: 3.0)
    assert failed == {"shard0": "killed (out of memory?)", "shard2": "killed after its time limit"}
    assert time.monotonic() - started < 30


def test_a_worker_killed_while_grading_costs_only_that_students_row(mini, submissions, scratch, monkeypatch):
    """A batch of three in two worker processes, one of which is SIGKILLed (as the OOM killer would) while grading
    "bomb": the shard's other student is regraded alone and keeps its full score, feedback and gradebook row; "bomb"
    gets a row of zeros that says why; the merged gradebook holds only the students who finished."""
    import multiprocessing

    from nbgrader.api import Gradebook

    from grading import autograde

    if not sandbox.is_root():
        pytest.skip("the sandbox users need root")
    subs = scratch / "killed_worker_subs"
    for name in ("alice", "bomb", "carol"):
        shutil.copytree(submissions["folders"]["solution"], subs / name)
    real_grade_one = autograde.grade_one

    def grade_one(course, root, sid, *args):
        if sid == "bomb":
            os.kill(os.getpid(), 9)
        return real_grade_one(course, root, sid, *args)

    monkeypatch.setattr(autograde, "grade_one", grade_one)        # forked workers inherit it
    fork = multiprocessing.get_context("fork")
    monkeypatch.setattr(autograde.multiprocessing, "get_context", lambda _: fork)
    out = scratch / "killed_worker_out"
    results = {r.student: r for r in autograde.autograde(mini["course"], subs, out, jobs=2)}
    assert {s: r.total for s, r in results.items()} == {"alice": 8, "bomb": 0, "carol": 8}
    assert "grading this submission ended the grader's process (killed (out of memory?))" in \
        " | ".join(results["bomb"].messages)
    assert results["alice"].manual_max == results["carol"].manual_max == 1
    for name in ("alice", "carol"):
        assert (out / "feedback" / name / "Mini.html").is_file(), name
    with (out / "scores.csv").open() as f:
        assert [row["student"] for row in csv.DictReader(f)] == ["alice", "bomb", "carol"]
    with Gradebook(f"sqlite:///{out / 'course' / 'gradebook.db'}") as gb:
        assert {s.id for s in gb.students} == {"alice", "carol"}
    phases = json.loads((out / "phases.json").read_text())
    assert phases["regraded alone"] == 2                        # the shard of alice and bomb


def test_gradescope_harness_grades_the_whole_corpus(graded):
    with zipfile.ZipFile(graded["bundle"]) as zf:
        names = set(zf.namelist())
    assert {"setup.sh", "run_autograder", "cases.py", "grading/harness.py", "reference/mini_ops.py"} <= names
    results = graded["gradescope"]
    for name, (_, gs_score, messages) in EXPECTED.items():
        if name in NEEDS_ROOT and not sandbox.is_root():
            continue
        res = results[name]
        assert res["score"] == gs_score, (name, res["score"], [(t["name"], t["score"], t["output"][:200])
                                                              for t in res["tests"]])
        assert len(res["tests"]) == 6 and sum(t["max_score"] for t in res["tests"]) == corpus.MAX_POINTS
        assert all({"name", "score", "max_score", "output"} <= set(t) for t in res["tests"])
        outputs = "\n".join(t["output"] for t in res["tests"])
        for text in _expected_messages(messages, "gs"):
            assert text in outputs, (name, text, outputs[-2000:])
    if not sandbox.is_root():
        return
    assert not any(sandbox.live_processes(uid) for uid in graded["uids"]), "a student's process outlived the grader"
    time.sleep(2)                                            # the writes_results daemon would have struck by now
    root = graded["gradescope"]["writes_results"]
    again = json.loads((Path(root["_root"]) / "results" / "results.json").read_text())
    assert again["score"] == 5 and [t["name"] for t in again["tests"]] == [t["name"] for t in results["solution"]
                                                                             ["tests"]]


needs_namespaces = pytest.mark.skipif(not sandbox.namespaces_work(), reason="needs root with mount/net namespaces")


@needs_namespaces
def test_sandbox_runs_a_symlinked_venv_from_a_private_folder_without_network(tmp):
    """The venv as a symlink inside a 0700 folder (a `mktemp -d` clone) still runs as the sandbox uid, which sees
    neither the folder's other files nor any network."""
    import socket

    private = tmp / "private"
    private.mkdir(mode=0o700)
    (private / "secret.txt").write_text("instructor only")
    venv = private / "venv"
    venv.symlink_to(Path(sys.prefix).resolve())
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    probe = ("import socket, torch\n"
             f"try:\n    open({str(private / 'secret.txt')!r}).read(); print('READ')\nexcept OSError: print('hidden')\n"
             f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')\n"
             "except OSError: print('no network')\n")
    staged = sandbox.private_folder("hw8-test-staged-")
    try:
        argv = sandbox.wrap([str(venv / "bin" / "python"), "-c", probe], hide=[private],
                            keep=[venv, Path(sys.base_prefix)],
                            uid=sandbox.SANDBOX_UID + 90, workdir=(staged, "/tmp/hw8-work"))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    finally:
        server.close()
        shutil.rmtree(staged)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["hidden", "no network"], done.stdout


def test_submitted_files_refuse_links_fifos_and_hard_links(tmp):
    from grading.submitted import Refused, check_regular, copy_regular, special_entries

    upload = tmp / "upload"
    (upload / "checkpoints").mkdir(parents=True)
    (upload / "ok.py").write_text("x = 1\n")
    (upload / "link.py").symlink_to(upload / "ok.py")
    (upload / "checkpoints" / "fifo.pt").parent.mkdir(exist_ok=True)
    os.mkfifo(upload / "checkpoints" / "fifo.pt")
    outside = tmp / "outside.py"
    outside.write_text("secret\n")
    os.link(outside, upload / "hard.py")
    (tmp / "real_dir").mkdir()
    (tmp / "real_dir" / "m.py").write_text("y = 2\n")
    (upload / "sub").symlink_to(tmp / "real_dir")
    assert check_regular(upload, "ok.py") == upload / "ok.py"
    for rel, why in (("link.py", "symbolic link"), ("checkpoints/fifo.pt", "not a regular file"),
                     ("hard.py", "hard link"), ("sub/m.py", "sub is a symbolic link")):
        with pytest.raises(Refused, match=why):
            check_regular(upload, rel)
    with pytest.raises(FileNotFoundError, match="was not submitted"):
        check_regular(upload, "missing.py")
    assert "symbolic link" in copy_regular(upload, "link.py", tmp / "copy.py") and not (tmp / "copy.py").exists()
    assert sorted(special_entries(upload)) == ["checkpoints/fifo.pt", "link.py", "sub"]


def test_gradescope_harness_failure_is_zero_with_a_message(mini, tmp):
    bundle = build_bundle(mini["course"], tmp / "gs")
    root = tmp / "root"
    solution = corpus.make_solution(mini["release"], tmp / "solution")
    (tmp / "gs" / "autograder" / "cases.py").write_text("raise RuntimeError('broken cases file')\n")
    from grading.release import write_zip
    write_zip(tmp / "gs" / "autograder", bundle, prefix="")
    res = _gradescope_run(bundle, root, solution, sandbox.SANDBOX_UID + 60)
    assert res["score"] == 0 and res["tests"] == [] and "autograder failed" in res["output"]


# ------------------------------------------------------------------------------------------------ the real course


@pytest.fixture(scope="module")
def real(real_release):
    release, zip_path = real_release                                      # (build_release raised if anything leaked)
    return {"course": load_course(REPO / "grading" / "course.toml"), "release": release, "zip": zip_path}


def test_real_release_leaks_nothing_and_carries_only_the_allow_list(real):
    course, release = real["course"], real["release"]
    secrets = collect_secrets(course).lines()
    assert len(secrets) > 200
    assert find_leaks(course, release, real["zip"]) == []
    files = {p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()}
    assert {*course.notebooks, "kernel_attention.py", "README.md", "Makefile", "homework/submission.py",
            "tests/test_kernel_attention.py", "requirements.txt"} <= files
    assert {"homework/submission.py", "homework/notebooks.py", "homework/parts.py", "homework/run_notebooks.py",
            "homework/preflight.py", "homework/pdf.py"} <= files                 # make run / pdf / submission
    assert not any(f.startswith("grading/") for f in files)                       # grading/ is the instructor's
    assert not any("hidden" in f or f.startswith(("tests/fixtures", "tests/broken")) for f in files)
    assert "tests/test_grading.py" not in files
    for nb in course.notebooks:
        text = (release / nb).read_text()
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text


STUB_CALLS = """
import torch, kernel_attention as ka
x = torch.randn(2, 3, 4, 8)
calls = {
    "scaled_dot_product_attention": lambda: ka.scaled_dot_product_attention(x, x, x),
    "split_heads": lambda: ka.split_heads(torch.randn(2, 3, 8), 2),
    "merge_heads": lambda: ka.merge_heads(x),
    "sinusoidal_positional_encoding": lambda: ka.sinusoidal_positional_encoding(5, 8),
    "positional_shift_matrix": lambda: ka.positional_shift_matrix(8),
    "RandomFourierFeatures": lambda: ka.RandomFourierFeatures(8, 4)(x),
    "SoftmaxRandomFourierFeatures": lambda: ka.SoftmaxRandomFourierFeatures(8, 4)(x),
    "FavorPositiveFeatures": lambda: ka.FavorPositiveFeatures(8, 4)(x),
    "linear_attention": lambda: ka.linear_attention(x.exp(), x.exp(), x),
    "causal_linear_attention_reference": lambda: ka.causal_linear_attention_reference(x.exp(), x.exp(), x),
}
for name, call in calls.items():
    try:
        call()
    except NotImplementedError:
        continue
    raise SystemExit(name + " did not raise NotImplementedError")
print("all stubs raise NotImplementedError")
"""


def test_real_release_works_for_a_student(real, tmp):
    student = tmp / "student"
    shutil.copytree(real["release"], student)
    stubs = run([sys.executable, "-c", STUB_CALLS], student, 120)
    assert stubs.returncode == 0, stubs.stdout + stubs.stderr
    tests = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/test_kernel_attention.py"]
    visible = run(tests, student, 300)
    assert visible.returncode == 1 and "NotImplementedError" in visible.stdout, visible.stdout[-2000:]
    assert "ImportError" not in visible.stdout and "ModuleNotFoundError" not in visible.stdout
    shutil.copy2(real["course"].root / "kernel_attention.py", student / "kernel_attention.py")   # solutions back
    solved = run([arg for arg in tests if arg != "-x"], student, 600)
    assert solved.returncode == 0, solved.stdout[-3000:]


def test_real_release_pdf_command_without_flags_is_the_students(real, tmp):
    """In the release (no grading/), `python -m homework.pdf` is `make pdf`'s student export: notebooks not run yet
    are named with what to do, never a ModuleNotFoundError of the instructor's tools."""
    student = tmp / "student"
    shutil.copytree(real["release"], student)
    done = run([sys.executable, "-m", "homework.pdf"], student, 120)
    assert done.returncode != 0 and "not been run: run `make run`" in done.stderr, done.stdout + done.stderr
    assert "ModuleNotFoundError" not in done.stderr


def test_real_release_notebooks_run_up_to_the_first_stub(real, tmp, monkeypatch):
    student = tmp / "student"
    shutil.copytree(real["release"], student)
    monkeypatch.setenv("HW8_FAST", "1")                    # the kernel inherits the environment
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in real["course"].notebooks:
        nbformat.validate(nbformat.read(student / name, as_version=4))        # every notebook opens
    # Visualizing_BERT.ipynb has written answers only (no code stub): tests/test_visualizing_bert.py runs it whole.
    for name in ("Kernel_Attention.ipynb", "Summarization.ipynb"):
        assert execute_notebook(student / name, timeout=300) == "NotImplementedError", name


@pytest.fixture(scope="module", autouse=True)
def report_timings():
    """After this module's tests, print the measured times (pytest -s shows them): a report, not a check."""
    yield
    for name, seconds in TIMINGS.items():
        print(f"timing: {name}: {seconds:.1f} s")
