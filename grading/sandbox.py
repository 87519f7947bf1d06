"""Run untrusted student code as an unprivileged user that cannot see instructor material.

When the grader runs as root (Gradescope, CI, a grading container) the command is wrapped as
    unshare --mount  (private mount namespace: every hidden path is covered by an empty tmpfs, except `keep` paths
                      such as the venv, which are bound back)  ->  setpriv --reuid=UID --regid=UID --clear-groups
so the student's process runs as a dedicated uid (default 61182, $HW8_SANDBOX_UID) with no capabilities, sees empty
folders where the instructor source, hidden tests and gradebook are, and cannot write the results. If mount
namespaces are not allowed (an unprivileged container), hidden folders are `chmod 700` root-only instead.
When the grader is not root (a TA's laptop) code runs unsandboxed, and `describe()` says so.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

SANDBOX_UID = int(os.environ.get("HW8_SANDBOX_UID", "61182"))


def is_root() -> bool:
    return os.geteuid() == 0


@lru_cache(maxsize=1)
def mount_namespaces_work() -> bool:
    """True if `unshare --mount` is permitted here (root with CAP_SYS_ADMIN)."""
    if not is_root() or shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                              capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def describe() -> str:
    """One line for the grading log: how student code is isolated on this machine."""
    if not is_root():
        return "sandbox: grader is not root, student code runs as the grader's user (local mode, not isolated)"
    how = "private mount namespace hides instructor files" if mount_namespaces_work() else "hidden folders chmod 700"
    return f"sandbox: student code runs as uid {SANDBOX_UID} without capabilities; {how}"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def wrap(argv: list[str], hide: list[Path], keep: list[Path], stash: Path, uid: int = SANDBOX_UID) -> list[str]:
    """The command line that runs `argv` sandboxed (unchanged when not root).

    hide: folders/files to make invisible; keep: paths inside hidden folders to bind back (e.g. the venv);
    stash: an empty root-owned folder used while re-binding `keep` paths; uid: the user that runs argv.
    """
    if not is_root():
        return argv
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    if not mount_namespaces_work():
        for path in hide:
            if path.exists():
                os.chmod(path, 0o700 if path.is_dir() else 0o600)
        return [*drop, *argv]
    hide = [p.resolve() for p in hide if p.exists()]
    hide = [p for p in hide if not any(_inside(p, other) and p != other for other in hide)]  # outermost only
    keep = [p.resolve() for p in keep if p.exists() and any(_inside(p.resolve(), h) for h in hide)]
    lines = ["set -e"]
    for i, path in enumerate(keep):
        lines += [f"mkdir -p {stash}/{i}", f"mount --bind {shlex.quote(str(path))} {stash}/{i}"]
    for path in sorted(hide, key=lambda p: len(p.parts)):
        q = shlex.quote(str(path))
        if path.is_dir():
            lines.append(f"mount -t tmpfs -o size=64k,mode=755 hw8-hidden {q}")
        else:
            lines.append(f"mount --bind /dev/null {q}")
    for i, path in enumerate(keep):
        lines += [f"mkdir -p {shlex.quote(str(path))}", f"mount --move {stash}/{i} {shlex.quote(str(path))}"]
    lines.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", "\n".join(lines), "sh",
            *drop, *argv]


def make_workdir(prefix: str = "hw8-sandbox-", uid: int = SANDBOX_UID) -> Path:
    """A fresh folder in the system temp dir, owned by the sandbox user (or the grader when not root)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    if is_root():
        os.chown(work, uid, uid)
    return work


def give_to_sandbox(path: Path, uid: int = SANDBOX_UID) -> None:
    """chown a file or folder tree to the sandbox user (no-op when not root)."""
    if not is_root():
        return
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        os.lchown(p, uid, uid)


def kill_sandbox_processes(uid: int = SANDBOX_UID) -> int:
    """Kill every process of a dedicated sandbox uid (daemons a submission may have left); returns how many.

    Only when root and only for the sandbox uids (SANDBOX_UID and the few above it), which nothing else uses.
    """
    if not is_root():
        return 0
    killed = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid_line = next(line for line in status.read_text().splitlines() if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if int(uid_line.split()[1]) == uid:
            try:
                os.kill(int(status.parent.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed
