"""Run untrusted student code as an unprivileged user that cannot see instructor material.

When the grader runs as root (Gradescope, CI, a grading container) the command is wrapped as
    unshare --mount  (private mount namespace: every hidden path is covered by an empty tmpfs, except `keep` paths
                      such as the venv, which are bound back)  ->  setpriv --reuid=UID --regid=UID --clear-groups
so the student's process runs as a dedicated uid (default 61182, $HW8_SANDBOX_UID) with no capabilities, sees empty
folders where the instructor source, hidden tests and gradebook are, and cannot write the results. If mount
namespaces are not allowed (an unprivileged container), only file permissions protect the hidden paths (the
Gradescope harness makes /autograder/source 0700) and nbgrader kernels run unsandboxed.
When the grader is not root (a TA's laptop) code runs unsandboxed, and `describe()` says so.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
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
    how = ("private mount namespace hides instructor files" if mount_namespaces_work() else
           "no mount namespaces here: instructor files are protected by their permissions only")
    return f"sandbox: student code runs as uid {SANDBOX_UID} without capabilities; {how}"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def wrap(argv: list[str], hide: list[Path], keep: list[Path], stash: Path, uid: int = SANDBOX_UID,
         workdir: tuple[Path, Path] | None = None) -> list[str]:
    """The command line that runs `argv` sandboxed (unchanged when not root).

    hide: folders/files to make invisible; keep: paths inside hidden folders to bind back (e.g. the venv);
    stash: an empty root-owned folder used while re-binding `keep` paths; uid: the user that runs argv;
    workdir: (folder, mount point): bind the folder at the mount point (outside anything hidden, with traversable
    parents) and start argv there.
    """
    if not is_root():
        return argv
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    if not mount_namespaces_work():
        return [*drop, *argv]      # hidden paths rely on their permissions (the harness makes /autograder/source 700)
    hide = [p.resolve() for p in hide if p.exists()]
    hide = [p for p in hide if not any(_inside(p, other) and p != other for other in hide)]  # outermost only
    keep = [p.resolve() for p in keep if p.exists() and any(_inside(p.resolve(), h) for h in hide)]
    lines = ["set -e"]
    if workdir is not None:
        lines += [f"mkdir -p {shlex.quote(str(workdir[1]))}",
                  f"mount --bind {shlex.quote(str(workdir[0]))} {shlex.quote(str(workdir[1]))}"]
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
    if workdir is not None:
        lines.append(f"cd {shlex.quote(str(workdir[1]))}")
    lines.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", "\n".join(lines), "sh",
            *drop, *argv]


def make_workdir(prefix: str = "hw8-sandbox-", uid: int = SANDBOX_UID, parent: str | None = None) -> Path:
    """A fresh folder in `parent` (default: the system temp dir), owned by the sandbox user (or the grader when
    not root)."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
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
    for _ in range(20):                      # again while a fork loop keeps making new ones
        alive = live_processes(uid)
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return killed


def live_processes(uid: int) -> list[int]:
    """Pids of the processes of `uid` that are not zombies."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1 0").split()[0]) == uid and not fields.get("State", "").strip().startswith("Z"):
            pids.append(int(status.parent.name))
    return pids
