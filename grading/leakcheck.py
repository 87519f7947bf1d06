"""Leak check: no solution code, hidden test or written answer of the instructor source may appear in the release.

Secrets are every line inside a solution / hidden-test / mark-scheme / instructor-only region (notebooks, `.py` and
Markdown files), every line of a whole-cell solution, and every line of the hidden and instructor-only files (course
`hidden_paths`, `instructor_only`). Answers can leak without any marker, so the release is also searched for answer
fingerprints: per written question, phrases and formulas of its worked answer (course `answer_fingerprints`).
A secret line counts when it is non-trivial (>= 12 characters once whitespace is collapsed) and does not also occur in
the public part of the source (an `import torch` inside a solution is not a secret). Every file of the release is
scanned: notebook JSON (sources, outputs, metadata), text, compressed files (.gz/.bz2/.xz), and every member of the
release zip; canary tokens (CANARY_<NAME>_<hex>) are also searched byte-wise in binary files.

    python -m grading.leakcheck [--course grading/course.toml] [--release build/release] [--zip build/hw8_release.zip]
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import json
import lzma
import re
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from grading.course import DEFAULT_COURSE, Course, load_course
from grading.strip import ALL_REGION_PAIRS, outside_regions, regions
from homework.parts import nbgrader_meta

MIN_LENGTH = 12
CANARY = re.compile(rb"CANARY_[A-Z0-9_]+_[0-9a-f]{4}")
MAX_DECOMPRESSED = 500_000_000
_DECOMPRESS = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}


def normalize(line: str) -> str:
    return " ".join(line.split())


@dataclass
class Leak:
    where: str     # release file (zip members as zip!member)
    line: str
    origin: str    # instructor file the secret came from


class Secrets:
    """Secret lines (normalized) with their origin, and public lines that are never counted as secret."""

    def __init__(self) -> None:
        self.secret: dict[str, str] = {}
        self.public: set[str] = set()

    def add_secret(self, text: str, origin: str) -> None:
        for line in text.split("\n"):
            norm = normalize(line)
            if len(norm) >= MIN_LENGTH:
                self.secret.setdefault(norm, origin)

    def add_public(self, text: str) -> None:
        self.public.update(normalize(line) for line in text.split("\n"))

    def lines(self) -> dict[str, str]:
        return {line: origin for line, origin in self.secret.items() if line not in self.public}


def _split_regions(text: str, origin: str, secrets: Secrets) -> None:
    for begin, end in ALL_REGION_PAIRS:
        for body in regions(text, begin, end):
            secrets.add_secret(body, origin)
    secrets.add_public(outside_regions(text, ALL_REGION_PAIRS))


def _files_under(root: Path, rel: str) -> list[Path]:
    path = root / rel
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return [path] if path.is_file() else []


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (UnicodeDecodeError, OSError):
        return None


def collect_secrets(course: Course) -> Secrets:
    """Every secret line of the instructor source, and the public lines around them."""
    secrets = Secrets()
    for rel in course.notebooks:
        nb = nbformat.read(course.root / rel, as_version=4)
        for cell in nb.cells:
            meta = nbgrader_meta(cell)
            origin = f"{rel}:{meta.get('grade_id', 'cell')}"
            has_region = any(begin in cell.source for begin, _ in ALL_REGION_PAIRS)
            if meta.get("solution") and not has_region:
                secrets.add_secret(cell.source, origin)        # nbgrader replaces the whole cell
            else:
                _split_regions(cell.source, origin, secrets)
    released = [*course.release_files, *course.release_templates.values()]
    allowed = {p.resolve() for rel in released for p in _files_under(course.root, rel)}
    for rel in course.hidden_paths:
        for path in _files_under(course.root, rel):
            text = _read_text(path)
            if text is not None and path.resolve() not in allowed:
                secrets.add_secret(text, str(path.relative_to(course.root)))
    instructor_only = {(course.root / rel).resolve() for rel in course.instructor_only}
    for rel in [*course.release_files, *course.student_modules]:
        for path in _files_under(course.root, rel):
            text = _read_text(path)
            if text is None:
                continue
            if path.resolve() in instructor_only:
                secrets.add_secret(text, str(path.relative_to(course.root)))
            else:
                _split_regions(text, str(path.relative_to(course.root)), secrets)
    return secrets


def load_fingerprints(course: Course) -> dict[str, list[str]]:
    """{question: [phrase, ...]} from the course's answer-fingerprint file ({} if the course has none)."""
    if not course.answer_fingerprints:
        return {}
    path = course.root / course.answer_fingerprints
    if not path.is_file():
        raise FileNotFoundError(f"answer fingerprint file {path} (course key answer_fingerprints) not found")
    with path.open("rb") as f:
        raw = tomllib.load(f)
    return {question: list(entry["phrases"]) for question, entry in raw.items()}


def fingerprint_key(text: str) -> str:
    """Text compared case-insensitively with whitespace collapsed (a phrase may wrap across lines)."""
    return " ".join(text.split()).lower()


def scan_fingerprints(paths: list[tuple[str, bytes]], fingerprints: dict[str, list[str]]) -> list[Leak]:
    """A Leak for every answer phrase found in the given files or anything packed inside them."""
    leaks = []
    wanted = [(fingerprint_key(p), question) for question, phrases in fingerprints.items() for p in phrases]
    for top_name, top_data in paths:
        for name, data in _blobs(top_name, top_data):
            lines = _text_lines(name, data)
            if lines is None:
                continue
            text = fingerprint_key("\n".join(lines))
            leaks += [Leak(name, phrase, f"answer {question}") for phrase, question in wanted if phrase in text]
    return leaks


def _strings(obj) -> list[str]:
    """Every string inside a JSON value (notebook sources, outputs, metadata)."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for key, value in obj.items() for s in (_strings(key) + _strings(value))]
    if isinstance(obj, list):
        return [s for item in obj for s in _strings(item)]
    return []


def _blobs(name: str, data: bytes) -> list[tuple[str, bytes]]:
    """(name, bytes) of a file and of everything packed inside it (zip members, compressed payloads)."""
    out = [(name, data)]
    suffix = Path(name).suffix
    if suffix == ".zip":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if not info.is_dir() and info.file_size <= MAX_DECOMPRESSED:
                    out += _blobs(f"{name}!{info.filename}", zf.read(info))
    elif suffix in _DECOMPRESS:
        try:
            payload = _DECOMPRESS[suffix](data)
        except (OSError, EOFError, lzma.LZMAError, ValueError):
            payload = b""
        if payload:
            out += _blobs(name[: -len(suffix)], payload)
    return out


def _text_lines(name: str, data: bytes) -> list[str] | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if name.endswith(".ipynb"):
        try:
            text = "\n".join(_strings(json.loads(text)))
        except json.JSONDecodeError:
            pass
    return text.split("\n")


def scan(paths: list[tuple[str, bytes]], secret_lines: dict[str, str]) -> list[Leak]:
    """Leaks (secret lines and canary tokens) in the given files and everything packed inside them."""
    leaks = []
    for top_name, top_data in paths:
        for name, data in _blobs(top_name, top_data):
            for token in set(CANARY.findall(data)):
                leaks.append(Leak(name, token.decode(), "canary"))
            lines = _text_lines(name, data)
            for line in lines or []:
                norm = normalize(line)
                if norm in secret_lines:
                    leaks.append(Leak(name, norm, secret_lines[norm]))
    return leaks


def find_leaks(course: Course, release_dir: Path, zip_path: Path | None = None) -> list[Leak]:
    """All leaks of the course's secrets into the release folder and zip."""
    secret_lines = collect_secrets(course).lines()
    files = [(str(p.relative_to(release_dir)), p.read_bytes()) for p in sorted(release_dir.rglob("*")) if p.is_file()]
    if zip_path is not None:
        files.append((zip_path.name, zip_path.read_bytes()))
    return scan(files, secret_lines) + scan_fingerprints(files, load_fingerprints(course))


def assert_no_leaks(course: Course, release_dir: Path, zip_path: Path | None = None) -> None:
    """Raise RuntimeError listing every leak (file, line, origin) if there is one."""
    leaks = find_leaks(course, release_dir, zip_path)
    if leaks:
        listing = "\n".join(f"  {leak.where}: {leak.line[:100]!r}  (from {leak.origin})" for leak in leaks[:40])
        raise RuntimeError(f"the release leaks {len(leaks)} secret line(s):\n{listing}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--course", default=str(DEFAULT_COURSE))
    parser.add_argument("--release", default=None, help="release folder (default: <build>/release)")
    parser.add_argument("--zip", default=None, help="release zip (default: <build>/<id>_release.zip)")
    args = parser.parse_args(argv)
    course = load_course(args.course)
    release = Path(args.release) if args.release else course.build_dir / "release"
    zip_path = Path(args.zip) if args.zip else course.build_dir / f"{course.assignment_id}_release.zip"
    n_secret = len(collect_secrets(course).lines())
    leaks = find_leaks(course, release, zip_path if zip_path.exists() else None)
    for leak in leaks:
        print(f"LEAK {leak.where}: {leak.line[:120]!r} (from {leak.origin})")
    print(f"leakcheck: {n_secret} secret lines checked, {len(leaks)} leaks")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
