"""`make gradescope`: build the Gradescope autograder zip (build/gradescope/autograder.zip).

The zip follows Gradescope's specification: `setup.sh` (installs Python and the pinned grading packages) and
`run_autograder` at the top level; Gradescope unpacks it to /autograder/source, puts the student's upload in
/autograder/submission and reads /autograder/results/results.json. Inside:
    grading/      the harness (grading/harness.py and what it imports), no other grading code
    course.toml   the course as the harness sees it (modules, notebooks, checkpoint, timeouts)
    cases.py      the trusted checks (hidden)
    reference/    the instructor's modules and notebooks (hidden; the harness makes source/ root-only)
`run_autograder` honours $HW8_AUTOGRADER_ROOT (default /autograder) and $HW8_PYTHON so the same zip can be tested
in a temporary folder (tests/test_grading.py does).

    python grading/gradescope.py [--course grading/course.toml] [--out build/gradescope]
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grading.checks import Case
from grading.course import DEFAULT_COURSE, REPO_ROOT, Course, load_course, validate_check_support
from grading.harness import load_cases
from grading.release import write_zip

PACKAGES = ("grading", "homework")                  # the repository packages the harness may import from
HARNESS_ROOTS = ["grading/__init__.py", "grading/harness.py"]   # run_autograder runs grading/harness.py


def package_imports(path: Path) -> set[str]:
    """The files of PACKAGES that a Python file imports (`from grading.x import`, `from grading import x`,
    `import grading.x`), as paths relative to the repository ("homework/parts.py"), each package's __init__.py too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module in PACKAGES:
            names |= {f"{node.module}/{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
            names.add(node.module.replace(".", "/"))
        elif isinstance(node, ast.Import):
            names |= {a.name.replace(".", "/") for a in node.names
                      if a.name.split(".")[0] in PACKAGES and "." in a.name}
    files = {f"{name}.py" for name in names if (REPO_ROOT / f"{name}.py").is_file()}
    return files | {f"{f.split('/')[0]}/__init__.py" for f in files}


def harness_files(cases_path: Path) -> list[str]:
    """Every repository file the harness and the cases file import, found by following their imports (no hand-kept
    list to forget one in); relative to the repository root."""
    needed, todo = set(HARNESS_ROOTS), [REPO_ROOT / n for n in HARNESS_ROOTS] + [cases_path]
    while todo:
        for rel in package_imports(todo.pop()) - needed:
            needed.add(rel)
            todo.append(REPO_ROOT / rel)
    return sorted(needed)
GRADING_PACKAGES = ["torch", "numpy", "nbformat", "tokenizers", "tqdm", "datasets"]  # harness + summarizer

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope entry point: grades /autograder/submission into /autograder/results/results.json.
# HW8_AUTOGRADER_ROOT and HW8_PYTHON let a local test use another folder and interpreter.
ROOT="${HW8_AUTOGRADER_ROOT:-/autograder}"
if [ -z "${HW8_PYTHON:-}" ]; then
  if [ -x /opt/hw8-grading/bin/python ]; then HW8_PYTHON=/opt/hw8-grading/bin/python; else HW8_PYTHON=python3; fi
fi
exec "$HW8_PYTHON" -I "$ROOT/source/grading/harness.py" --gradescope --root "$ROOT"
"""

SETUP_SH = """#!/usr/bin/env bash
# Gradescope image set-up (Ubuntu): Python, util-linux (setpriv/unshare for the sandbox), the pinned packages.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip util-linux
python3 -m venv /opt/hw8-grading
/opt/hw8-grading/bin/pip install --upgrade pip
/opt/hw8-grading/bin/pip install --index-url https://download.pytorch.org/whl/cpu \\
    "$(grep '^torch==' /autograder/source/requirements.txt)"
/opt/hw8-grading/bin/pip install -r /autograder/source/requirements.txt
"""


def grading_requirements(requirements: Path) -> str:
    """The pinned lines of requirements.txt for the packages the harness imports."""
    pins = []
    for line in requirements.read_text().splitlines():
        name = re.split(r"[=<>~ ]", line.strip(), maxsplit=1)[0].lower()
        if name in GRADING_PACKAGES:
            pins.append(line.strip())
    missing = set(GRADING_PACKAGES) - {re.split(r"[=<>~ ]", p, maxsplit=1)[0].lower() for p in pins}
    if missing:
        raise ValueError(f"{requirements} does not pin {sorted(missing)}, which the Gradescope harness needs")
    return "\n".join(pins) + "\n"


def bundle_course_toml(course: Course) -> str:
    def strings(items) -> str:
        return "[" + ", ".join(f'"{x}"' for x in items) + "]"

    checkpoint = f'checkpoint = "{course.checkpoint}"\n' if course.checkpoint else ""
    return (f'# The course as the Gradescope harness sees it (generated by grading/gradescope.py).\n'
            f'root = "reference"\nassignment_id = "{course.assignment_id}"\n'
            f"notebooks = {strings(course.notebooks)}\nstudent_modules = {strings(course.student_modules)}\n"
            f"release_files = []\n{checkpoint}cases = \"../cases.py\"\n"
            f"check_support = {strings(course.check_support)}\n"
            f"reference_support = {strings(course.reference_support)}\ncase_timeout = {course.case_timeout}\n"
            f"submission_timeout = {course.submission_timeout}\n")


def notebooks_checked(course: Course) -> set[str]:
    """Names of the notebooks whose functions the trusted checks call (their instructor copies go in the zip)."""
    return {c.module for c in load_cases(course.cases_path) if isinstance(c, Case) and c.module.endswith(".ipynb")}


def build_bundle(course: Course, out_dir: Path, requirements: Path = REPO_ROOT / "requirements.txt") -> Path:
    """Stage the autograder folder in out_dir/autograder and zip it to out_dir/autograder.zip; returns the zip."""
    stage = out_dir / "autograder"
    if stage.exists():
        shutil.rmtree(stage)
    for rel in harness_files(course.cases_path):
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, stage / rel)
    (stage / "run_autograder").write_text(RUN_AUTOGRADER)
    (stage / "setup.sh").write_text(SETUP_SH)
    for script in ("run_autograder", "setup.sh"):
        (stage / script).chmod(0o755)
    (stage / "requirements.txt").write_text(grading_requirements(requirements))
    (stage / "course.toml").write_text(bundle_course_toml(course))
    shutil.copy2(course.cases_path, stage / "cases.py")
    reference = stage / "reference"
    checked_notebooks = [nb for nb in course.notebooks if Path(nb).name in notebooks_checked(course)]
    validate_check_support(course)
    instructor_only = {course.root / rel for rel in course.instructor_only}
    for rel in [*course.student_modules, *checked_notebooks, *course.check_support, *course.reference_support]:
        src = course.root / rel
        if src.is_dir():
            shutil.copytree(src, reference / rel, ignore=lambda folder, names: [
                n for n in names if n == "__pycache__" or Path(folder) / n in instructor_only])
        elif src.is_file():
            (reference / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, reference / rel)
        else:
            raise FileNotFoundError(f"{src} is needed by the Gradescope harness but does not exist")
    zip_path = out_dir / "autograder.zip"
    write_zip(stage, zip_path, prefix="")
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--course", default=str(DEFAULT_COURSE))
    parser.add_argument("--out", default=None, help="default: <build>/gradescope")
    args = parser.parse_args(argv)
    course = load_course(args.course)
    out = Path(args.out) if args.out else course.build_dir / "gradescope"
    zip_path = build_bundle(course, out.resolve())
    print(f"gradescope: {zip_path} (upload it as the autograder of the code assignment)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
