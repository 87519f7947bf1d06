"""Reading a student's upload without trusting it: regular files only, bounded sizes, never a link.

Both graders read submissions as root. A symbolic link (to the instructor's reference, to /etc/shadow), a hard link to
a file outside the upload, a FIFO (a read that never ends) or a device would make root read what the student chose,
so anything that is not a plain regular file is refused with a message and the checks that need it score 0.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_FILE_BYTES = 256 * 2**20      # a full-run checkpoint is ~12 MB, a notebook with its outputs a few MB


class Refused(ValueError):
    """A submitted path that is not a regular file of the upload (the message says why)."""


def check_regular(root: Path, rel: str) -> Path:
    """root/rel if every component is a real folder / regular file inside root; raises FileNotFoundError when it is
    missing and Refused when it is a link, a special file, a hard link or too large."""
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
        if last and info.st_size > MAX_FILE_BYTES:
            raise Refused(f"{shown} is larger than {MAX_FILE_BYTES >> 20} MiB: refused")
    return path


def read_regular(root: Path, rel: str) -> bytes:
    """The bytes of root/rel after `check_regular` (opened with O_NOFOLLOW, so a swap to a link in between fails)."""
    path = check_regular(root, rel)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused(f"{rel} changed while it was read: refused")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise Refused(f"{rel} is larger than {MAX_FILE_BYTES >> 20} MiB: refused")
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
