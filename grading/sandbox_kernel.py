"""Kernel launcher for nbgrader autograde: starts ipykernel as the sandbox user, with instructor files hidden.

grading/autograde.py installs a `python3` kernelspec whose argv is
    python grading/sandbox_kernel.py {connection_file}
This runs as the grader (root) in the notebook's folder (autograded/<student>/<assignment>/). It hands that folder to
the sandbox user, makes the notebook files there root-only (during execution they hold the restored hidden tests),
copies the connection file where the kernel can read it, and execs ipykernel through grading/sandbox.py with the
paths listed in $HW8_SANDBOX_HIDE hidden (the course folder, the instructor source) and $HW8_SANDBOX_KEEP kept.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grading import sandbox  # noqa: E402


def main(connection_file: str) -> None:
    if not sandbox.mount_namespaces_work():     # the notebook folder's parents may not be traversable: run as is
        os.execvp(sys.executable, [sys.executable, "-m", "ipykernel_launcher", "-f", connection_file])
    here = Path.cwd().resolve()
    sandbox.kill_sandbox_processes()        # leftovers of the previous notebook or student (kernels run one by one)
    hide = [Path(p) for p in json.loads(os.environ.get("HW8_SANDBOX_HIDE", "[]"))]
    keep = [Path(p) for p in json.loads(os.environ.get("HW8_SANDBOX_KEEP", "[]"))]
    parent = os.environ.get("HW8_SANDBOX_TMP")             # autograde removes it when it is done
    private = sandbox.make_workdir(prefix="hw8-kernel-", parent=parent)
    conn = private / "connection.json"
    shutil.copyfile(connection_file, conn)
    sandbox.give_to_sandbox(here)
    sandbox.give_to_sandbox(private)
    if sandbox.is_root():
        for nb in here.glob("*.ipynb"):
            os.chown(nb, 0, 0)
            os.chmod(nb, 0o600)
        os.chmod(private, 0o700)
    stash = sandbox.make_workdir(prefix="hw8-stash-", parent=parent)
    if sandbox.is_root():
        os.chown(stash, 0, 0)
    # the notebook's folder is bound at private/work: its real parents (the hidden course folder, maybe a 0700
    # temp folder) need not be traversable by the sandbox user
    argv = sandbox.wrap([sys.executable, "-m", "ipykernel_launcher", "-f", str(conn)], hide, keep, stash,
                        workdir=(here, private / "work") if sandbox.mount_namespaces_work() else None)
    os.environ["HOME"] = str(private)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1])
