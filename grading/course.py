"""What a course is made of (notebooks, student modules, release allow-list), read from a TOML file.

The real homework is described by grading/course.toml; the tests use a miniature course with the same
conventions (tests/fixtures/mini_course/course.toml). Every grading entry point takes `--course PATH`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath

try:
    import tomllib  # novermin (3.11+; tomli below on 3.10)
except ModuleNotFoundError:          # Python 3.10 (Gradescope's default image): the same parser, as a package
    import tomli as tomllib

from homework.markers import BEGIN_SOLUTION

GRADING_DIR = Path(__file__).resolve().parent
REPO_ROOT = GRADING_DIR.parent
DEFAULT_COURSE = GRADING_DIR / "course.toml"

BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
BEGIN_SCHEME, END_SCHEME = "=== BEGIN MARK SCHEME ===", "=== END MARK SCHEME ==="
# Instructor-only text (a docstring paragraph that derives an answer, a narrating comment or markdown sentence): whole
# marker lines, in any released file -- `# === BEGIN INSTRUCTOR ONLY ===` in code, `<!-- BEGIN INSTRUCTOR ONLY -->`
# in markdown, `=== BEGIN INSTRUCTOR ONLY ===` inside a docstring. The release drops the lines between them.
BEGIN_INSTRUCTOR, END_INSTRUCTOR = "=== BEGIN INSTRUCTOR ONLY ===", "=== END INSTRUCTOR ONLY ==="


def within(rel: str, folder: str) -> bool:
    """True if the relative path `rel` is the relative path `folder` or lies inside it ('a/b' is within 'a')."""
    return PurePosixPath(rel).is_relative_to(folder)


@dataclass
class Course:
    """One assignment: where its instructor source lives and what is released, submitted and graded."""

    root: Path                      # instructor source (repository root for the real course)
    assignment_id: str
    notebooks: list[str]            # graded notebooks, relative to root
    student_modules: list[str]      # .py files students edit (solution regions stripped in the release)
    release_files: list[str]        # allow-list: files or folders copied into the release (.py stripped)
    release_templates: dict[str, str]   # release path -> template path (relative to root)
    checkpoint: str | None          # file a student must submit besides notebooks and modules
    cases: str                      # trusted out-of-process checks (Python file, relative to root)
    hidden_paths: list[str]         # instructor-only material (never released): hidden tests, grading code
    build_dir: Path                 # where release/, autograde/, gradescope/ are written
    submission_timeout: int = 300   # wall-clock (and CPU) seconds for all trusted checks of one submission
    case_timeout: int = 60          # seconds per trusted check (and per import of a student module)
    check_support: list[str] = field(default_factory=list)     # files student code needs in the sandbox (public)
    reference_support: list[str] = field(default_factory=list)  # files the trusted parent needs (never in a sandbox)
    instructor_only: list[str] = field(default_factory=list)   # files inside released folders that stay out
    answer_fingerprints: str | None = None   # TOML: per written question, phrases of its answer the release must lack
    path: Path | None = None                 # the course file itself (worker processes load it again)

    @property
    def submission_files(self) -> list[str]:
        """Everything a student hands in: the notebooks, the edited modules, the checkpoint."""
        extra = [self.checkpoint] if self.checkpoint else []
        return [*self.notebooks, *self.student_modules, *extra]

    @property
    def cases_path(self) -> Path:
        return self.root / self.cases


def load_course(path: str | Path = DEFAULT_COURSE) -> Course:
    """Read a course TOML file; relative paths inside it are relative to the file's `root` (default: its folder)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"course file {path} not found (the real course is {DEFAULT_COURSE})")
    with path.open("rb") as f:
        raw = tomllib.load(f)
    known = {f.name for f in fields(Course)} - {"path"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"course file {path}: unknown key(s) {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(sorted(known))})")
    root = (path.parent / raw.get("root", ".")).resolve()
    build_dir = (root / raw.get("build_dir", "build")).resolve()
    try:
        return Course(
            root=root,
            assignment_id=raw["assignment_id"],
            notebooks=list(raw["notebooks"]),
            student_modules=list(raw["student_modules"]),
            release_files=list(raw["release_files"]),
            release_templates=dict(raw.get("release_templates", {})),
            checkpoint=raw.get("checkpoint"),
            cases=raw["cases"],
            hidden_paths=list(raw.get("hidden_paths", [])),
            instructor_only=list(raw.get("instructor_only", [])),
            answer_fingerprints=raw.get("answer_fingerprints"),
            build_dir=build_dir,
            submission_timeout=int(raw.get("submission_timeout", 300)),
            case_timeout=int(raw.get("case_timeout", 60)),
            check_support=list(raw.get("check_support", [])),
            reference_support=list(raw.get("reference_support", [])),
            path=path,
        )
    except KeyError as missing:
        raise ValueError(f"course file {path} lacks the key {missing}") from None


def validate_check_support(course: Course) -> None:
    """check_support files are copied next to the student's code: none may be hidden, instructor-only or carry
    instructor-only / solution text (student code could print it into its feedback). Raises ValueError if one is."""
    problems = []
    for rel in course.check_support:
        if any(within(rel, h) for h in [*course.hidden_paths, *course.instructor_only]):
            problems.append(f"{rel} is hidden or instructor-only")
        base = course.root / rel
        for path in ([base, *base.rglob("*")] if base.is_dir() else [base]):
            if path.is_file() and path.suffix in (".py", ".md", ".txt", ".json", ".toml"):
                text = path.read_text(errors="replace")
                if any(m.strip("#= ") in text for m in (BEGIN_INSTRUCTOR, BEGIN_SOLUTION, BEGIN_HIDDEN)):
                    problems.append(f"{path.relative_to(course.root)} holds instructor-only or solution text")
    if problems:
        raise ValueError("check_support would put instructor material next to student code:\n  "
                         + "\n  ".join(problems))
