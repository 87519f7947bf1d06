"""The sandboxed child of the grading harness: one unprivileged student process and the pipe protocol to it.

`Child` starts Python (grading/sandbox_child.py) as the sandbox user with resource limits (grading/sandbox.py), sends
it length-prefixed call requests and reads its replies under a timeout; a crash, an exit, a timeout or an unparsable
reply is reported to the caller, and the child is restarted for the next call. `Budget` is one submission's
wall-clock allowance across its checks.
"""

from __future__ import annotations

import os
import selectors
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

from grading import sandbox
from grading.course import GRADING_DIR
from grading.sandbox_child import MAX_MESSAGE, decode, encode

CHILD_SOURCE = (GRADING_DIR / "sandbox_child.py").read_text()
LOG_TAIL = 1500
STARTUP_TIMEOUT = 300   # seconds for the sandboxed Python to import torch (slow on a loaded machine)
WORK_MOUNT = "/tmp/hw8-work"     # the student's working folder inside the sandbox
MEMORY_LIMIT = 2 * 2**30         # address space of the student's process (one torch thread: ~0.6 GiB at its peak
                                 # on the checks); the complexity checks of grading/cases_hw8.py need more to cheat
OUTPUT_LIMIT = 16 * 2**20        # bytes of any file it writes, its printed output included


class Child:
    """One sandboxed student process that answers call requests; restarted after a timeout or a crash.

    staged: the root-only folder holding the student's files and the support files; the child sees a copy of it as
    its working folder (a fresh tmpfs in the sandbox, the folder itself when there is no namespace)."""

    def __init__(self, staged: Path, hide: list[Path], keep: list[Path], uid: int, budget: Budget) -> None:
        self.staged, self.hide, self.keep, self.uid, self.budget = staged, hide, keep, uid, budget
        self.private = sandbox.private_folder("hw8-harness-")              # root-only: the log
        self.log_path = self.private / "student_output.log"
        self.log = self.log_path.open("wb")
        self.proc: subprocess.Popen | None = None
        self.replies: int | None = None
        self.workdir = WORK_MOUNT if sandbox.namespaces_work() else str(staged)

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        argv = [sys.executable, "-I", "-c", CHILD_SOURCE, str(write_fd), self.workdir]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.workdir, "OMP_NUM_THREADS": "1",
               "HF_HUB_OFFLINE": "1", "LANG": "C.UTF-8", "HW8_FAST": "1", "TMPDIR": "/tmp"}
        if sandbox.is_root() and not sandbox.namespaces_work():
            give_to_sandbox(self.staged, self.uid)
        cpu = max(10, int(self.budget.left()) + 10)
        self.proc = subprocess.Popen(
            sandbox.wrap(argv, self.hide, self.keep, self.uid, workdir=(self.staged, WORK_MOUNT)),
            stdin=subprocess.PIPE, stdout=self.log, stderr=self.log, pass_fds=(write_fd,),
            cwd=self.staged if not sandbox.namespaces_work() else "/", env=env, start_new_session=True,
            preexec_fn=lambda: sandbox.limits(cpu, MEMORY_LIMIT, OUTPUT_LIMIT))
        os.close(write_fd)
        self.replies = read_fd
        ready, problem = self._read_reply(STARTUP_TIMEOUT, "starting Python and torch")
        if ready is None:
            raise RuntimeError(f"the grading sandbox did not start: {problem}\n{self.log_since(0)}")

    def call(self, request: dict, timeout: float) -> tuple[dict | None, str]:
        """(reply, "") or (None, why there is no usable reply). Never raises for anything the child does."""
        timeout = min(timeout, self.budget.left())
        if timeout <= 0:
            return None, self.budget.spent_message()
        if self.proc is None or self.proc.poll() is not None:
            try:
                self.start()
            except RuntimeError as err:
                self.stop()
                return None, f"{str(err)[:1000]} (a grader problem, not your code's: tell the course staff)"
        try:
            self.proc.stdin.write(encode(request))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None, self._ended()
        return self._read_reply(timeout)

    def _read_reply(self, timeout: float, doing: str = "") -> tuple[dict | None, str]:
        deadline = time.monotonic() + timeout
        buf = bytearray()
        sel = selectors.DefaultSelector()
        sel.register(self.replies, selectors.EVENT_READ)
        try:
            while True:
                need = 8 if len(buf) < 8 else 8 + struct.unpack(">Q", bytes(buf[:8]))[0]
                if len(buf) >= 8 and need - 8 > MAX_MESSAGE:
                    self.stop()
                    return None, f"the reply is larger than {MAX_MESSAGE >> 20} MiB"
                if len(buf) >= need and len(buf) >= 8:
                    break
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.stop()
                    why = doing or "an infinite loop, or far too slow"
                    return None, f"timed out after {timeout:.0f} s ({why})"
                chunk = os.read(self.replies, 1 << 20)
                if not chunk:
                    return None, self._ended()
                buf += chunk
        finally:
            sel.close()
        try:
            reply = decode(bytes(buf[8:need]))
        except Exception as err:  # noqa: BLE001 - any malformed reply is the submission's fault
            self.stop()
            return None, f"the submission's process sent an unreadable reply ({type(err).__name__})"
        if not isinstance(reply, dict) or "ok" not in reply:
            self.stop()
            return None, "the submission's process sent a reply without a result"
        return reply, ""

    def _ended(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self.stop()
        why = {-9: " (killed: a resource limit or the grader)", -24: " (CPU time limit)", -25: " (file size limit)"}
        why.update({128 - code: text for code, text in why.items()})     # 137, 152, 153: from the namespace's sh
        return (f"the submission's process ended before answering (exit status {code}{why.get(code, '')}); "
                "no result counts as 0")

    def log_offset(self) -> int:
        self.log.flush()
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as f:
            f.seek(max(offset, self.log_path.stat().st_size - 4 * LOG_TAIL))
            data = f.read()
        text = data.decode("utf-8", errors="replace")
        return text if len(text) <= LOG_TAIL else "...(cut)...\n" + text[-LOG_TAIL:]

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait()
            self.proc = None
        if self.replies is not None:
            os.close(self.replies)
            self.replies = None
        sandbox.kill_sandbox_processes(self.uid)

    def close(self) -> None:
        self.stop()
        self.log.close()
        shutil.rmtree(self.private, ignore_errors=True)


class Budget:
    """Wall-clock seconds one submission may use across all its checks (its CPU time is capped to the same)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.started = seconds, time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def spent_message(self) -> str:
        return f"not run: the submission used up its {self.seconds:.0f} s grading time on earlier checks"


def give_to_sandbox(path: Path, uid: int) -> None:
    """chown a folder tree to the sandbox user (only where no namespace copies it into the sandbox's tmpfs)."""
    for p in [path, *path.rglob("*")]:
        os.lchown(p, uid, uid)
