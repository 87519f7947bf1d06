"""`make release`: build the student release (build/release/ and build/<id>_release.zip) from the instructor source.

Notebooks go through `nbgrader generate_assignment` (solutions -> stubs, hidden tests and written answers removed,
outputs cleared). Files on the course's allow-list are copied; every `.py` among them that holds solution regions
(and every student module) is stripped with nbgrader's ClearSolutions (grading/strip.py). The leak check
(grading/leakcheck.py) then proves that nothing secret came out; the release is refused otherwise.

    python -m grading.release [--course grading/course.toml] [--out build/release] [--no-leak-check]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path

from grading.course import (
    BEGIN_HIDDEN,
    BEGIN_INSTRUCTOR,
    BEGIN_SCHEME,
    DEFAULT_COURSE,
    END_INSTRUCTOR,
    Course,
    load_course,
    within,
)
from grading.nbgrader_course import IGNORED, make_course_dir, run_nbgrader
from grading.strip import strip_instructor_only, strip_solutions
from homework.markers import BEGIN_SOLUTION, has_marker_line

TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".ipynb", ".sh", ".json"}


def check_allow_list(course: Course) -> list[str]:
    """The release allow-list entries that exist; refuse folders that would carry hidden material."""
    present = []
    for rel in course.release_files:
        for hidden in course.hidden_paths:
            if within(hidden, rel) and (course.root / rel).is_dir():
                raise ValueError(f"release entry '{rel}' contains hidden material '{hidden}': list files explicitly")
        if (course.root / rel).exists():
            present.append(rel)
        else:
            print(f"release: warning: allow-listed {rel} does not exist in {course.root}; skipped", file=sys.stderr)
    return present


def released_python_files(release_dir: Path) -> list[Path]:
    return sorted(p for p in release_dir.rglob("*.py") if p.is_file())


def generate_notebooks(course: Course, work_dir: Path) -> Path:
    """Run nbgrader generate_assignment on the notebooks; returns the folder with the released notebooks."""
    course_dir = work_dir / "nbgrader_release"
    settings = make_course_dir(course, course_dir, support=[])
    result = run_nbgrader(course_dir, settings, ["generate_assignment", course.assignment_id, "--force"], timeout=600)
    released = course_dir / "release" / course.assignment_id
    if result.returncode != 0 or not released.is_dir():
        raise RuntimeError(f"nbgrader generate_assignment failed (exit {result.returncode}):\n{result.stdout[-4000:]}"
                           f"{result.stderr}")
    return released


def build_release(course: Course, out_dir: Path, leak_check: bool = True) -> tuple[Path, Path]:
    """Write the student release into out_dir and a zip next to it; returns (release folder, zip path)."""
    out_dir = out_dir.resolve()
    nb_release = generate_notebooks(course, out_dir.parent)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for nb in course.notebooks:
        (out_dir / nb).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(nb_release / nb, out_dir / nb)
    for rel in [*check_allow_list(course), *course.student_modules]:
        src = course.root / rel
        if src.is_dir():
            shutil.copytree(src, out_dir / rel, ignore=IGNORED, dirs_exist_ok=True)
        else:
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out_dir / rel)
    for dest, template in course.release_templates.items():
        (out_dir / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(course.root / template, out_dir / dest)
    for rel in course.instructor_only:
        (out_dir / rel).unlink(missing_ok=True)
    drop_instructor_text(out_dir, skip=set(course.notebooks))
    for path in released_python_files(out_dir):
        rel = path.relative_to(out_dir).as_posix()
        text = path.read_text()
        if has_marker_line(text, BEGIN_SOLUTION) or rel in course.student_modules:
            path.write_text(strip_solutions(text, rel))
    _refuse_markers(out_dir)
    zip_path = out_dir.parent / f"{course.assignment_id}_release.zip"
    write_zip(out_dir, zip_path, prefix=course.assignment_id)
    if leak_check:
        from grading.leakcheck import assert_no_leaks
        assert_no_leaks(course, out_dir, zip_path)
    return out_dir, zip_path


def drop_instructor_text(release_dir: Path, skip: set[str]) -> None:
    """Remove the instructor-only regions of every released text file (the notebooks in `skip` had theirs removed
    before nbgrader generated them)."""
    for path in sorted(release_dir.rglob("*")):
        rel = path.relative_to(release_dir).as_posix()
        if path.is_file() and path.suffix in TEXT_SUFFIXES and rel not in skip:
            text = path.read_text(errors="replace")
            if BEGIN_INSTRUCTOR.strip("= ") in text or END_INSTRUCTOR.strip("= ") in text:
                path.write_text(strip_instructor_only(text, rel))


def _refuse_markers(release_dir: Path) -> None:
    """A marker left in any released text file means a region was not processed: stop."""
    for path in release_dir.rglob("*"):
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            text = path.read_text(errors="replace")
            for marker in (BEGIN_HIDDEN, BEGIN_SCHEME, BEGIN_INSTRUCTOR.strip("= "), END_INSTRUCTOR.strip("= ")):
                if marker in text:
                    raise RuntimeError(f"{path} still contains '{marker}'")
            if path.suffix == ".ipynb" and BEGIN_SOLUTION in text:
                raise RuntimeError(f"{path} still contains '{BEGIN_SOLUTION}'")


def write_zip(folder: Path, zip_path: Path, prefix: str) -> None:
    """Zip every file under folder as prefix/<relative path> (no prefix if empty), in sorted order."""
    zip_path.unlink(missing_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                rel = path.relative_to(folder).as_posix()
                zf.write(path, f"{prefix}/{rel}" if prefix else rel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--course", default=str(DEFAULT_COURSE), help="course TOML file")
    parser.add_argument("--out", default=None, help="release folder (default: <build>/release)")
    parser.add_argument("--no-leak-check", action="store_true", help="skip the leak check (debugging only)")
    args = parser.parse_args(argv)
    course = load_course(args.course)
    out = Path(args.out) if args.out else course.build_dir / "release"
    release_dir, zip_path = build_release(course, out, leak_check=not args.no_leak_check)
    n_files = sum(1 for p in release_dir.rglob("*") if p.is_file())
    print(f"release: {n_files} files in {release_dir}\nrelease: zip {zip_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
