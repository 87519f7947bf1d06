"""Broken-submission corpus, generated from the mini course (tests/fixtures/mini_course): honest mistakes and
attempts to cheat, each with the score both graders must give (the same on both) and a message that must explain it.

Each entry is a small patch applied to a correct submission (the student release with the solutions pasted back),
so the corpus stays a few lines per case. Scores are out of 8, the six trusted checks of the mini course
(1 + 2 + 1 + 1 + 2 + 1); two of them decide the grade cells test_attention and test_scale_rows on the nbgrader route.

    python tests/broken_submissions/corpus.py OUT_DIR [--release build/release]   # writes OUT_DIR/<case>/
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import torch

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mini_course"
MAX_POINTS = 8


@dataclass
class Broken:
    name: str
    what: str
    patch: Callable[[Path, dict], None]   # (submission folder, context) -> edits the folder in place
    score: float                          # expected total through make autograde and through run_autograder
    messages: tuple[str, ...]             # substrings of the explanation (both paths unless prefixed "nb:"/"gs:")


# ---------------------------------------------------------------------------------------------- building blocks


def make_solution(release: Path, dest: Path, course_root: Path = FIXTURE) -> Path:
    """What a student who solved everything submits: the released notebook with the instructor's solution cells
    pasted back (by grade_id), the instructor's module, and the checkpoint the notebook writes."""
    dest.mkdir(parents=True)
    instructor = nbformat.read(course_root / "Mini.ipynb", as_version=4)
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in instructor.cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(release / "Mini.ipynb", as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in solutions and cell.metadata["nbgrader"].get("solution"):
            cell.source = re.sub(r"\s*### (BEGIN|END) SOLUTION", "", solutions[grade_id])
    nbformat.write(nb, dest / "Mini.ipynb")
    shutil.copy2(course_root / "mini_ops.py", dest / "mini_ops.py")
    (dest / "checkpoints").mkdir()
    torch.save({"weights": torch.tensor([[0.25, -1.0, 0.5]])}, dest / "checkpoints" / "tiny.pt")
    return dest


def _edit_module(folder: Path, old: str, new: str) -> None:
    path = folder / "mini_ops.py"
    text = path.read_text()
    if old not in text:
        raise ValueError(f"patch target {old!r} not in mini_ops.py")
    path.write_text(text.replace(old, new, 1))


def _edit_notebook(folder: Path, edit: Callable[[nbformat.NotebookNode], None]) -> None:
    nb = nbformat.read(folder / "Mini.ipynb", as_version=4)
    edit(nb)
    nbformat.write(nb, folder / "Mini.ipynb")


def _cell(nb, grade_id: str):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _wrong_scale_rows(nb) -> None:
    _cell(nb, "scale_rows_impl").source = 'def scale_rows(x):\n    """Forgot to divide."""\n    return x'


SOFTMAX_LINE = "    return shifted.exp() / shifted.exp().sum(dim=-1, keepdim=True)"
MASK_LINE = "    return torch.ones(n, n, dtype=torch.bool).tril()"
ATTENTION_LINE = "    return softmax_rows(scores) @ v"


# ---------------------------------------------------------------------------------------------- honest mistakes


def syntax_error(f: Path, ctx: dict) -> None:
    (f / "mini_ops.py").write_text((f / "mini_ops.py").read_text() + "\n\ndef unfinished(x:\n    return x\n")


def infinite_loop(f: Path, ctx: dict) -> None:
    _edit_module(f, MASK_LINE, "    while True:\n        pass")


def missing_function(f: Path, ctx: dict) -> None:
    text = (f / "mini_ops.py").read_text()
    start = text.index("def causal_mask")
    end = text.index("def attention")
    (f / "mini_ops.py").write_text(text[:start] + text[end:])


def wrong_shape(f: Path, ctx: dict) -> None:
    _edit_module(f, ATTENTION_LINE, "    return (softmax_rows(scores) @ v).transpose(-2, -1)")


def nan_output(f: Path, ctx: dict) -> None:
    _edit_module(f, SOFTMAX_LINE, "    return shifted.exp() * float('nan')  # a 0/0 somewhere")


def deleted_test_cell(f: Path, ctx: dict) -> None:
    def edit(nb):
        _wrong_scale_rows(nb)
        nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_scale_rows"]
    _edit_notebook(f, edit)


def edited_test_cell(f: Path, ctx: dict) -> None:
    def edit(nb):
        _wrong_scale_rows(nb)
        _cell(nb, "test_scale_rows").source = "assert True  # the test was too strict"
    _edit_notebook(f, edit)


def duplicated_grade_cell(f: Path, ctx: dict) -> None:
    _edit_module(f, "/ math.sqrt(q.shape[-1])", "")             # forgot the 1/sqrt(D) scaling

    def edit(nb):
        cell = _cell(nb, "test_attention")
        weak = nbformat.from_dict(json.loads(json.dumps(cell)))
        weak.source = "assert True"
        nb.cells.insert(nb.cells.index(cell), weak)           # a weakened copy first, same grade_id
        nb.cells.append(nbformat.from_dict(json.loads(json.dumps(cell))))
    _edit_notebook(f, edit)


def corrupt_json(f: Path, ctx: dict) -> None:
    text = (f / "Mini.ipynb").read_text()
    (f / "Mini.ipynb").write_text(text[: len(text) // 2])


def huge_output(f: Path, ctx: dict) -> None:
    _edit_module(f, MASK_LINE, "    print('debug ' * 20000)\n    return torch.ones(n, n, dtype=torch.bool).triu()")

    def edit(nb):
        _cell(nb, "scale_rows_impl").source += "\n\nfor i in range(200_000):\n    print('step', i, 'x' * 40)"
    _edit_notebook(f, edit)


def missing_checkpoint(f: Path, ctx: dict) -> None:
    (f / "checkpoints" / "tiny.pt").unlink()


# ---------------------------------------------------------------------------------------------- cheating attempts

READ_HIDDEN = '''
import os as _os
from pathlib import Path as _Path

def _instructor_solution():
    """Look for the instructor's module or the hidden checks where a grader keeps them (the known places; copies
    that a TA leaves world-readable elsewhere on the machine are out of scope)."""
    candidates = [{candidates}, "../../../source/mini/Mini.ipynb", "../../../gradebook.db"]
    visited = 0
    for root in ("/autograder", {roots}):
        for dirpath, dirs, files in _os.walk(root):
            dirs[:] = [d for d in dirs if d not in (".venv", "site-packages", ".git")]
            candidates += [_os.path.join(dirpath, f) for f in files if f in ("cases.py", "grading_cases.py")]
            visited += 1
            if visited > 3000:
                break
    errors = []
    for path in candidates:
        try:
            text = _Path(path).read_text(errors="replace")
        except OSError as err:
            errors.append(type(err).__name__)
            continue
        if "CANARY_MOD_SOLUTION" in text or "CANARY_HIDDEN" in text:
            namespace = {{}}
            exec(text, namespace)
            return namespace
    raise RuntimeError(f"hidden files unreadable ({{len(candidates)}} tried: {{sorted(set(errors))}})")
'''


def reads_hidden_files(f: Path, ctx: dict) -> None:
    paths = [str(ctx["course_root"] / "mini_ops.py"), str(ctx["course_root"] / "grading_cases.py"),
             "/autograder/source/reference/mini_ops.py", "/autograder/source/cases.py"]
    if ctx.get("autograder_base"):
        root = f"{ctx['autograder_base']}/{ctx['name']}"
        paths += [f"{root}/source/reference/mini_ops.py", f"{root}/source/cases.py"]
    roots = [str(ctx["course_root"]), "../../.."]               # ../../.. = nbgrader's course folder
    if ctx.get("autograder_base"):
        roots.append(str(ctx["autograder_base"]))
    helper = READ_HIDDEN.format(candidates=", ".join(repr(p) for p in paths), roots=", ".join(repr(r) for r in roots))
    _edit_module(f, "def softmax_rows", helper + "\n\ndef softmax_rows")
    _edit_module(f, SOFTMAX_LINE, "    return _instructor_solution()['softmax_rows'](x)")


def monkeypatch_checks(f: Path, ctx: dict) -> None:
    _edit_module(f, "from torch import Tensor",
                 "from torch import Tensor\n\ntorch.allclose = lambda *a, **k: True   # every comparison passes\n"
                 "torch.testing.assert_close = lambda *a, **k: None\ntorch.equal = lambda *a, **k: True")
    _edit_module(f, ATTENTION_LINE, "    return torch.zeros(*q.shape[:-1], v.shape[-1])")


SWALLOW = """

def _swallow(lines):  # wrap every later cell in try/except: no test cell can fail in this kernel
    return ["try:\\n"] + ["    " + line for line in lines] + ["\\nexcept BaseException:\\n", "    pass\\n"]


get_ipython().input_transformers_post.append(_swallow)"""


def swallow_exceptions(f: Path, ctx: dict) -> None:
    def edit(nb):
        _wrong_scale_rows(nb)
        _cell(nb, "scale_rows_impl").source += SWALLOW
    _edit_notebook(f, edit)


def exit_early(f: Path, ctx: dict) -> None:
    _edit_module(f, SOFTMAX_LINE, "    import sys\n    sys.exit(0)")
    _edit_module(f, MASK_LINE, "    import os\n    os._exit(0)")


WRITE_RESULTS = '''
import json as _json
import os as _os
import time as _time

_FAKE = {{"score": 1000, "tests": [{{"name": "everything", "score": 1000, "max_score": 8, "output": "ok"}}]}}
for _path in {paths}:
    try:
        _os.makedirs(_os.path.dirname(_path), exist_ok=True)
        with open(_path, "w") as _f:
            _json.dump(_FAKE, _f)
    except OSError:
        pass
if _os.fork() == 0:                                    # a daemon that writes again after the grader is done
    _os.setsid()
    for _ in range(30):
        _time.sleep(1)
        for _path in {paths}:
            try:
                with open(_path, "w") as _f:
                    _json.dump(_FAKE, _f)
            except OSError:
                pass
    _os._exit(0)
'''


def writes_results(f: Path, ctx: dict) -> None:
    paths = ["/autograder/results/results.json"]
    if ctx.get("autograder_base"):
        paths.append(f"{ctx['autograder_base']}/{ctx['name']}/results/results.json")
    _edit_module(f, "from torch import Tensor", "from torch import Tensor\n" + WRITE_RESULTS.format(paths=paths))
    _edit_module(f, ATTENTION_LINE, "    return softmax_rows(scores) @ v * 2")


CORPUS = [
    Broken("syntax_error", "mini_ops.py does not parse", syntax_error, 3,
           ("SyntaxError",)),
    Broken("infinite_loop", "causal_mask never returns", infinite_loop, 7, ("timed out",)),
    Broken("missing_function", "causal_mask deleted", missing_function, 7, ("has no attribute 'causal_mask'",)),
    Broken("wrong_shape", "attention returns (..., M, N_q)", wrong_shape, 5, ("expected shape",)),
    Broken("nan_output", "softmax divides by zero", nan_output, 4, ("NaN",)),
    Broken("deleted_test_cell", "test cell deleted, scale_rows wrong", deleted_test_cell, 6,
           ("nb:test_scale_rows is missing", "values differ")),
    Broken("edited_test_cell", "test cell weakened, scale_rows wrong", edited_test_cell, 6,
           ("nb:test_scale_rows was edited", "values differ")),
    Broken("duplicated_grade_cell", "weakened copy of a grade cell, attention unscaled", duplicated_grade_cell, 5,
           ("nb:test_attention appears 3 times", "values differ")),
    Broken("corrupt_json", "Mini.ipynb cut in half", corrupt_json, 6, ("not a readable notebook",)),
    Broken("huge_output", "debug prints everywhere, causal_mask upper-triangular", huge_output, 7,
           ("gs:cut", "entries differ")),
    Broken("missing_checkpoint", "checkpoints/tiny.pt not submitted", missing_checkpoint, 7,
           ("checkpoints/tiny.pt was not submitted",)),
    Broken("reads_hidden_files", "softmax_rows loads the instructor's solution from disk", reads_hidden_files, 4,
           ("hidden files unreadable",)),
    Broken("monkeypatch_checks", "replaces torch.allclose/assert_close/equal, attention returns zeros",
           monkeypatch_checks, 5, ("values differ",)),
    Broken("swallow_exceptions", "an IPython input transformer wraps every cell in try/except, scale_rows wrong",
           swallow_exceptions, 6, ("values differ",)),
    Broken("exit_early", "sys.exit(0) and os._exit(0) inside the functions", exit_early, 3,
           ("SystemExit", "ended before answering")),
    Broken("writes_results", "writes results.json (and a daemon that rewrites it), attention doubled",
           writes_results, 5, ("values differ",)),
]


def build_corpus(release: Path, out: Path, autograder_base: Path | None = None, names: list[str] | None = None,
                 course_root: Path = FIXTURE) -> dict[str, Path]:
    """Write the solution, the untouched release and every corpus case as submission folders under `out`.

    autograder_base: where a local Gradescope test puts each case's /autograder folder (autograder_base/<case>), so
    that the cheating cases aim at the real paths."""
    made = {"solution": make_solution(release, out / "solution", course_root)}
    made["untouched_release"] = out / "untouched_release"
    made["untouched_release"].mkdir(parents=True)
    for name in ("Mini.ipynb", "mini_ops.py"):
        shutil.copy2(release / name, made["untouched_release"] / name)
    for case in CORPUS:
        if names is not None and case.name not in names:
            continue
        folder = out / case.name
        shutil.copytree(made["solution"], folder)
        case.patch(folder, {"course_root": course_root, "autograder_base": autograder_base, "name": case.name})
        made[case.name] = folder
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--release", required=True, help="the mini course's release folder (grading/release.py)")
    args = parser.parse_args(argv)
    made = build_corpus(Path(args.release), Path(args.out))
    print("\n".join(f"{name}: {path}" for name, path in made.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
