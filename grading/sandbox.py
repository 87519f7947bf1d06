"""Run untrusted student code as an unprivileged user that sees its own files only and has no network.

When the grader runs as root (Gradescope, CI, a grading container) a command is wrapped as
    unshare --mount --net --ipc --pid --fork --mount-proc  (private mount, network, IPC and PID namespaces: no
         interface but a loopback that is down, no System V / POSIX IPC object of anyone else, and a /proc that shows
         only the student's own processes, so no other student's or the grader's command line)
      -> sh script: every hidden path (the instructor source, gradebook, other students, /root, /home, /tmp, ...) is
         covered by an empty tmpfs, except `keep` paths (the venv, the base Python), which are bound back; the
         student's staged files are copied into a fresh size-limited tmpfs that becomes the working folder
      -> setpriv --reuid=UID --regid=UID --clear-groups  (no capabilities)
so the student's process runs as a dedicated uid (default 61182, $HW8_SANDBOX_UID), cannot read instructor files or
other students' work, cannot write the results, cannot reach any network and can fill only small tmpfs folders.
Resource limits (CPU seconds, address space, file size, processes) are set by `limits()` in the child before exec.
If namespaces are not allowed (an unprivileged container), only file permissions protect the hidden paths (the
Gradescope harness makes /autograder/source 0700) and `describe()` says so.
When the grader is not root (a TA's laptop) code runs unsandboxed, and `describe()` says so.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from functools import lru_cache
from pathlib import Path

SANDBOX_UID = int(os.environ.get("HW8_SANDBOX_UID", "61182"))
# Folders no submission needs: hidden wholesale (keep paths inside them are bound back).
ALWAYS_HIDDEN = ("/root", "/home", "/srv", "/opt", "/media", "/mnt", "/tmp", "/var/tmp", "/dev/shm", "/run/lock")
SCRATCH_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm")     # given back as small empty tmpfs folders, world-writable
SCRATCH_SIZE = "64m"
WORK_SIZE = "512m"                                      # the working folder (student files + support files)
STASH = "/run/hw8-sandbox-stash"                        # inside the namespace only
# The student's process is PID 1 of its own PID namespace: when it is killed, every process it started goes too.
UNSHARE = ["unshare", "--mount", "--net", "--ipc", "--pid", "--fork", "--mount-proc", "--propagation", "private"]


def is_root() -> bool:
    return os.geteuid() == 0


@lru_cache(maxsize=1)
def namespaces_work() -> bool:
    """True if `unshare` of every namespace the sandbox uses is permitted here (root with CAP_SYS_ADMIN)."""
    if not is_root() or shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run([*UNSHARE, "true"],
                              capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def describe() -> str:
    """One line for the grading log: how student code is isolated on this machine."""
    if not is_root():
        return "sandbox: grader is not root, student code runs as the grader's user (local mode, not isolated)"
    how = ("private mount, network, IPC and PID namespaces: instructor files and other students hidden, no network, "
           "no shared memory or process of anyone else in sight"
           if namespaces_work() else
           "no namespaces here: instructor files are protected by their permissions only, network reachable")
    return f"sandbox: student code runs as uid {SANDBOX_UID} without capabilities; {how}"


def _closed_ancestor(path: Path) -> Path | None:
    """The outermost ancestor of `path` that other users cannot traverse (e.g. a 0700 temp folder), or None."""
    for parent in reversed(path.parents):
        try:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return parent
        except OSError:
            return None
    return None


def wrap(argv: list[str], hide: list[Path], keep: list[Path], uid: int = SANDBOX_UID,
         workdir: tuple[Path, str] | None = None) -> list[str]:
    """The command line that runs `argv` sandboxed (unchanged when not root).

    hide: folders/files to make invisible (on top of ALWAYS_HIDDEN); keep: paths to bind back at their own path
    (the venv, even when it is a symlink or sits in a folder other users cannot traverse); uid: the user that runs
    argv; workdir: (staged folder, mount point): copy the staged folder into a fresh tmpfs of WORK_SIZE at the mount
    point, owned by uid, and start argv there.
    """
    if not is_root():
        return argv
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    if not namespaces_work():
        return [*drop, *argv]      # hidden paths rely on their permissions (the harness makes /autograder/source 700)
    keep_pairs = [(Path(os.path.abspath(p)), p.resolve()) for p in keep if p.exists()]
    hide_paths = [Path(p) for p in ALWAYS_HIDDEN] + [p.resolve() for p in hide if p.exists()]
    hide_paths += [a for _, real in keep_pairs if (a := _closed_ancestor(real)) is not None]
    hide_paths = [p for p in hide_paths if p.exists()]
    hide_paths = sorted({p for p in hide_paths if not any(p.is_relative_to(o) and p != o for o in hide_paths)},
                        key=lambda p: len(p.parts))                                   # outermost only
    q = shlex.quote
    lines = ["set -e", f"mkdir -p {STASH}", f"mount -t tmpfs -o size=1m,mode=700 hw8-stash {STASH}"]
    for i, (_, real) in enumerate(keep_pairs):
        lines += [f"mkdir -p {STASH}/k{i}", f"mount --bind {q(str(real))} {STASH}/k{i}"]
    if workdir is not None:
        lines += [f"mkdir -p {STASH}/src", f"mount --bind {q(str(workdir[0]))} {STASH}/src"]
    for path in hide_paths:
        if path.is_dir():
            mode, size = ("1777", SCRATCH_SIZE) if str(path) in SCRATCH_FOLDERS else ("755", "64k")
            lines.append(f"mount -t tmpfs -o size={size},mode={mode} hw8-hidden {q(str(path))}")
        else:
            lines.append(f"mount --bind /dev/null {q(str(path))}")
    for i, (given, real) in enumerate(keep_pairs):
        lines += [f"mkdir -p {q(str(real))}", f"mount --move {STASH}/k{i} {q(str(real))}"]
        if given != real:                        # a symlinked venv: its link may sit in a hidden folder
            lines.append(f"[ -e {q(str(given))} ] || {{ mkdir -p {q(str(given.parent))}; "
                         f"ln -s {q(str(real))} {q(str(given))}; }}")
    if workdir is not None:
        mount_point = q(workdir[1])
        lines += [f"mkdir -p {mount_point}",
                  f"mount -t tmpfs -o size={WORK_SIZE},mode=755 hw8-work {mount_point}",
                  f"cp -a {STASH}/src/. {mount_point}/", f"chown -R {uid}:{uid} {mount_point}",
                  f"umount {STASH}/src", f"cd {mount_point}"]
    # sh stays PID 1 of the namespace and runs the student's process as its child: a namespace's init ignores
    # signals it has no handler for (SIGXCPU, SIGXFSZ), which the limits rely on; sh exits with 128 + the signal.
    lines += [f"umount -l {STASH}", '"$@"', "exit $?"]
    return [*UNSHARE, "--", "sh", "-c", "\n".join(lines), "sh", *drop, *argv]


def limits(cpu_seconds: int, memory_bytes: int, file_bytes: int, processes: int = 64) -> None:
    """Resource limits for the student's process (call in the child before exec, e.g. as preexec_fn): CPU time,
    address space, size of any file it writes (its log included), processes of its uid, no core dumps."""
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.geteuid() == 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


def private_folder(prefix: str) -> Path:
    """A fresh root-only (0700) folder in the system temp dir (student processes cannot read it)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(folder, 0o700)
    return folder


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
