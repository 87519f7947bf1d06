"""Reading a student's upload without trusting it: regular files only, bounded sizes, never a link.

Both graders read submissions as root. A symbolic link (to the instructor's reference, to /etc/shadow), a hard link to
a file outside the upload, a FIFO (a read that never ends) or a device would make root read what the student chose,
so anything that is not a plain regular file is refused with a message and the checks that need it score 0.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import nbformat

MAX_FILE_BYTES = 256 * 2**20      # a full-run checkpoint is ~12 MB, a notebook with its outputs a few MB
# A notebook is read as plain JSON and rebuilt from well-typed fields only (read_notebook), within these bounds: an
# executed full-run notebook is at most ~10 MB with a few hundred cells.
MAX_NOTEBOOK_BYTES = 40 * 2**20
MAX_CELLS = 2000
MAX_SOURCE_CHARS = 200_000
# Outputs that can run nothing in a page a TA or a student opens: anything else (HTML, JavaScript, SVG, widgets) is
# dropped (a cell that had one says so).
SAFE_MIME = ("text/plain", "image/png", "image/jpeg")
NBGRADER_FIELDS = {"grade_id": str, "solution": bool, "grade": bool, "locked": bool, "task": bool,
                   "points": (int, float), "checksum": str, "schema_version": int, "cell_type": str}


class Refused(ValueError):
    """A submitted path that is not a regular file of the upload (the message says why)."""


def check_regular(root: Path, rel: str, limit: int = MAX_FILE_BYTES) -> Path:
    """root/rel if every component is a real folder / regular file inside root; raises FileNotFoundError when it is
    missing and Refused when it is a link, a special file, a hard link or larger than `limit` bytes."""
    path = root
    parts = Path(rel).parts
    for i, part in enumerate(parts):
        path = path / part
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{rel} was not submitted") from None
        shown = Path(*parts[: i + 1]).as_posix()
        if stat.S_ISLNK(info.st_mode):
            raise Refused(f"{shown} is a symbolic link: refused (submit the file itself)")
        last = i == len(parts) - 1
        if not last and not stat.S_ISDIR(info.st_mode):
            raise Refused(f"{shown} is not a folder")
        if last and not stat.S_ISREG(info.st_mode):
            kind = "folder" if stat.S_ISDIR(info.st_mode) else "special file (FIFO, device or socket)"
            raise Refused(f"{shown} is a {kind}, not a regular file: refused")
        if last and info.st_nlink > 1:
            raise Refused(f"{shown} is a hard link to another file: refused (submit a copy)")
        if last and info.st_size > limit:
            raise Refused(f"{shown} is larger than {limit >> 20} MiB: refused")
    return path


def read_regular(root: Path, rel: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of root/rel after `check_regular` (opened with O_NOFOLLOW, so a swap to a link in between fails)."""
    path = check_regular(root, rel, limit)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused(f"{rel} changed while it was read: refused")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise Refused(f"{rel} is larger than {limit >> 20} MiB: refused")
    return data


def copy_regular(root: Path, rel: str, dest: Path) -> str | None:
    """Copy root/rel to dest (a new regular file); None if copied, else why not (missing or refused)."""
    try:
        data = read_regular(root, rel)
    except (FileNotFoundError, Refused) as err:
        return str(err)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return None


def special_entries(root: Path, limit: int = 20) -> list[str]:
    """Paths in the upload that are not regular files or folders (links, FIFOs, devices), for the grading report."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                found.append(Path(os.path.relpath(os.path.join(folder, name), root)).as_posix())
                if len(found) >= limit:
                    return found
    return found


def find_root(upload: Path, expected: list[str]) -> Path:
    """The folder holding the submitted files: the upload itself, or the sub-folder (a zip made with one) that holds
    one of the expected files; symbolic links are never followed."""
    if any(os.path.lexists(upload / rel) for rel in expected):
        return upload
    names = {Path(rel).name: rel for rel in expected}
    for folder, dirs, files in sorted(os.walk(upload, followlinks=False)):
        for name in files:
            rel = names.get(name)
            if rel is None:
                continue
            candidate = Path(folder)
            for _ in Path(rel).parent.parts:
                candidate = candidate.parent
            if candidate.is_relative_to(upload):
                return candidate
    return upload


def read_notebook(root: Path, rel: str) -> tuple[nbformat.NotebookNode, list[str]]:
    """The submitted notebook root/rel rebuilt from its well-typed fields only, and what was dropped or cut.

    Every field a grader reads has its expected type afterwards, whatever the JSON held: a cell is code, markdown or
    raw with a string source (at most MAX_SOURCE_CHARS); its metadata keeps only the typed nbgrader fields; outputs
    keep only streams, errors and SAFE_MIME data. Raises FileNotFoundError (not submitted) or Refused (a link, too
    large, not a notebook, more than MAX_CELLS cells)."""
    data = read_regular(root, rel, MAX_NOTEBOOK_BYTES)
    name = Path(rel).name
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise Refused(f"{name} is not a readable notebook ({type(err).__name__}: {str(err)[:200]})") from None
    cells = raw.get("cells") if isinstance(raw, dict) else None
    if not isinstance(cells, list):
        raise Refused(f"{name} is not a readable notebook (no list of cells)")
    if len(cells) > MAX_CELLS:
        raise Refused(f"{name} has {len(cells)} cells, more than {MAX_CELLS}: refused")
    notes: list[str] = []
    kept = [c for c in (_clean_cell(cell, notes) for cell in cells) if c is not None]
    if len(kept) < len(cells):
        notes.append(f"{name}: {len(cells) - len(kept)} cell(s) could not be read and were left out")
    return nbformat.v4.new_notebook(cells=kept), [f"{name}: {n}" for n in dict.fromkeys(notes)]


def _text(value) -> str | None:
    """A notebook string field (a string or a list of strings), else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return None


def _clean_cell(cell, notes: list[str]) -> nbformat.NotebookNode | None:
    if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
        return None
    source = _text(cell.get("source", ""))
    if source is None:
        return None
    if len(source) > MAX_SOURCE_CHARS:
        notes.append(f"a cell's source was cut to {MAX_SOURCE_CHARS} characters")
        source = source[:MAX_SOURCE_CHARS]
    metadata = cell.get("metadata")
    nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    meta = typed_nbgrader(nbgrader)
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
            "raw": nbformat.v4.new_raw_cell}[cell["cell_type"]]
    clean = make(source=source, metadata={"nbgrader": meta} if meta else {})
    if cell["cell_type"] == "code":
        outputs = cell.get("outputs")
        clean.outputs = [o for o in map(_clean_output, outputs if isinstance(outputs, list) else []) if o]
    return clean


def typed_nbgrader(nbgrader) -> dict:
    """The NBGRADER_FIELDS of a cell's nbgrader metadata that have their type ({} for anything but a dict)."""
    if not isinstance(nbgrader, dict):
        return {}
    return {k: v for k, v in nbgrader.items() if k in NBGRADER_FIELDS and isinstance(v, NBGRADER_FIELDS[k])
            and not (NBGRADER_FIELDS[k] is not bool and isinstance(v, bool))}


def _clean_output(output) -> nbformat.NotebookNode | None:
    """A stream, error or display output with only SAFE_MIME data (None: nothing safe to keep)."""
    kind = output.get("output_type") if isinstance(output, dict) else None
    if kind == "stream":
        text = _text(output.get("text", ""))
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return nbformat.v4.new_output("stream", name=name, text=text) if text is not None else None
    if kind == "error":
        trace = output.get("traceback")
        return nbformat.v4.new_output("error", ename=str(output.get("ename", ""))[:200],
                                      evalue=str(output.get("evalue", ""))[:2000],
                                      traceback=[t for t in trace if isinstance(t, str)] if isinstance(trace, list)
                                      else [])
    if kind not in ("display_data", "execute_result") or not isinstance(output.get("data"), dict):
        return None
    data = {k: t for k in SAFE_MIME if (t := _text(output["data"].get(k))) is not None}
    if len(data) < len(output["data"]):
        data.setdefault("text/plain", "")
        data["text/plain"] += "\n(an HTML/JavaScript output is not shown by the grader)"
    if kind == "execute_result":
        count = output.get("execution_count")
        return nbformat.v4.new_output(kind, data=data, execution_count=count if type(count) is int else None)
    return nbformat.v4.new_output(kind, data=data)
