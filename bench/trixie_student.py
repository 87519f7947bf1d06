"""`make trixie-check`: the student release on Python 3.13 with an older torch, used the way a Colab student uses it.

1. A Debian trixie root filesystem (Python 3.13, Debian's python3-torch 2.6; `gradescope_check.build_rootfs`, cached
   in build/trixie-check/rootfs) with a venv that sees Debian's torch and holds this repository's pinned packages for
   Python 3.13 (this machine's `pip freeze`, with Debian torch's own exact pins instead of ours: sympy 1.13.1; all
   downloaded by this machine's pip: pip inside trixie cannot verify the registry's certificate), except bertviz and
   rouge-score, which Colab lacks too.
2. The model student (the release with the instructor's solutions, tests/test_release_students.make_student) on a
   stand-in Google Drive: /srv/gdrive/MyDrive/hw8, which the stand-in `google.colab.drive.mount` bind-mounts at
   /content/drive (the only part of Colab replaced; its pip is pointed at the wheel folder).
3. In the chroot (its own mount and PID namespaces): each notebook executed as Colab's "Run all" does, in a kernel
   started in /content with HW8_FAST=1 (its first cell mounts Drive, changes into the folder and installs bertviz and
   rouge-score); then the visible tests (`python -m pytest tests`) and `python -m homework.submission --allow-fast`
   in that folder; then a release zip uploaded to /content: the cell unpacks it once (a second run keeps an edit)
   and changes into it. torch's version is read before and after.
Report: build/trixie-check/report.json (times of each step). Needs root (debootstrap, chroot, mount).

    python -m bench.trixie_student
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grading.course import REPO_ROOT, load_course
from grading.gradescope_check import PLATFORMS, build_rootfs, contained
from homework.colab import SETUP_CELL, dist_name

OUT = REPO_ROOT / "build" / "trixie-check"
COLAB_LACKS = ("bertviz", "rouge-score")          # installed by the notebooks' first cell, as on Colab
FROM_DEBIAN = ("torch",)                           # Debian's python3-torch, seen through the venv

STAND_IN = '''\
"""Stand-in for Colab's google.colab.drive: "mounts" the local folder /srv/gdrive at the mount point."""
import os
import subprocess


def mount(mountpoint, force_remount=False, **kwargs):
    os.makedirs(mountpoint, exist_ok=True)
    if not os.path.ismount(mountpoint):
        subprocess.run(["mount", "--bind", "/srv/gdrive", mountpoint], check=True)
    print(f"Mounted at {mountpoint}")
'''

DRIVER = '''\
"""Runs inside the trixie chroot with the venv's Python: what a Colab student does, timed."""
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time

import nbclient
import nbformat

HOME = "/content/drive/MyDrive/hw8"
report = {"python": sys.version.split()[0], "torch_before": importlib.metadata.version("torch")}


def step(name, fn):
    started = time.monotonic()
    fn()
    report[name + "_s"] = round(time.monotonic() - started, 1)
    print(f"{name}: {report[name + '_s']} s", flush=True)


def run_notebook(name):
    path = "/srv/gdrive/MyDrive/hw8/" + name
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=3600, kernel_name="python3",
                                     resources={"metadata": {"path": "/content"}})
    client.execute()
    nbformat.write(nb, path)                                   # Colab saves the notebook back to Drive
    setup = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    report.setdefault("setup_cell", {})[name] = setup.strip()


for name in ("Summarization.ipynb", "Visualizing_BERT.ipynb", "Kernel_Attention.ipynb"):
    step(name, lambda: run_notebook(name))
report["bertviz_installed_by_cell"] = importlib.metadata.version("bertviz")
step("visible_tests", lambda: subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                              "tests"], cwd=HOME, check=True))
step("submission", lambda: subprocess.run([sys.executable, "-m", "homework.submission", "--allow-fast"], cwd=HOME,
                                          check=True))
report["submission_zip_bytes"] = os.path.getsize(HOME + "/build/submission/hw8_submission.zip")

shutil.copy("/srv/check/hw8_release.zip", "/content/hw8_release.zip")  # the student uploads the release zip
cell = open("/srv/check/setup_cell.py").read() + "\\nimport os\\nprint('CWD=' + os.getcwd())\\n"
first = subprocess.run([sys.executable, "-c", cell], cwd="/content", capture_output=True, text=True, check=True)
with open("/content/hw8_release/hw8/kernel_attention.py", "a") as f:
    f.write("# the student's edit\\n")
second = subprocess.run([sys.executable, "-c", cell], cwd="/content", capture_output=True, text=True, check=True)
kept = open("/content/hw8_release/hw8/kernel_attention.py").read().endswith("# the student's edit\\n")
report["uploaded_zip"] = {"first_run": first.stdout.strip(), "edit_kept_on_second_run": kept}
assert "CWD=/content/hw8_release/hw8" in first.stdout and kept, report["uploaded_zip"]
report["torch_after"] = importlib.metadata.version("torch")
assert report["torch_after"] == report["torch_before"], report
json.dump(report, open("/srv/check/report.json", "w"), indent=1)
print("trixie driver: done", flush=True)
'''


def torch_pins(rootfs: Path) -> dict[str, str]:
    """{name: "name==version"} of the exact pins in the rootfs torch's metadata (Debian's torch 2.6: sympy==1.13.1), so
    that the venv agrees with them, as Colab's packages agree with its torch."""
    requires = subprocess.run(["chroot", str(rootfs), "python3", "-c",
                               "import importlib.metadata as m; print('\\n'.join(m.requires('torch') or []))"],
                              capture_output=True, text=True, check=True).stdout.splitlines()
    pins = [line.split(";")[0].replace(" ", "") for line in requires if "==" in line.split(";")[0]]
    return {dist_name(pin.split("==")[0]): pin for pin in pins}


def freeze_for_313(exclude: tuple[str, ...]) -> list[str]:
    """This machine's venv as exact pins (the closure `make install` resolved), without the excluded names."""
    lines = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                           text=True, check=True).stdout.split()
    excluded = {dist_name(name) for name in exclude}
    return [line for line in lines if "==" in line and dist_name(line.split("==")[0]) not in excluded]


def download(pins: list[str], dest: Path, python: str) -> None:
    """Wheels of `pins` for `python` on manylinux (no dependencies: the pins are a closure); a package with no such
    wheel (an sdist only) is built into one here."""
    dest.mkdir(parents=True, exist_ok=True)
    wheel_only = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(dest),
                  "--python-version", python, "--only-binary=:all:", *[f"--platform={p}" for p in PLATFORMS]]
    if subprocess.run(wheel_only + pins, capture_output=True).returncode == 0:
        return
    for pin in pins:                                   # one at a time, to find the ones without a wheel
        if subprocess.run(wheel_only + [pin], capture_output=True).returncode != 0:
            subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dest), pin],
                           check=True)


def prepare(rootfs: Path, python: str) -> None:
    """The venv with its wheels, the stand-in google.colab and the model student on the stand-in Drive."""
    wheels = OUT / f"wheels-{python}"
    overrides = torch_pins(rootfs)
    pins = [overrides.get(dist_name(pin.split("==")[0]), pin) for pin in freeze_for_313(FROM_DEBIAN)]
    download(pins, wheels, python)
    shutil.rmtree(rootfs / "wheels", ignore_errors=True)
    shutil.copytree(wheels, rootfs / "wheels")
    install = [p for p in pins if dist_name(p.split("==")[0]) not in COLAB_LACKS]
    (rootfs / "srv" / "check").mkdir(parents=True, exist_ok=True)
    (rootfs / "srv" / "check" / "install.txt").write_text("\n".join(install) + "\n")
    if not (rootfs / "venv" / "bin" / "python").exists():
        subprocess.run(["chroot", str(rootfs), "python3", "-m", "venv", "--system-site-packages", "/venv"], check=True)
    subprocess.run(["chroot", str(rootfs), "/venv/bin/pip", "install", "--quiet", "--no-index", "--no-deps",
                    "--find-links", "/wheels", "-r", "/srv/check/install.txt"], check=True)
    for name in COLAB_LACKS:
        subprocess.run(["chroot", str(rootfs), "/venv/bin/pip", "uninstall", "--quiet", "-y", name], check=False)
    site = next((rootfs / "venv" / "lib").glob("python3*/site-packages"))
    (site / "google" / "colab").mkdir(parents=True, exist_ok=True)
    (site / "google" / "colab" / "__init__.py").write_text("")
    (site / "google" / "colab" / "drive.py").write_text(STAND_IN)

    from grading.release import build_release
    from tests.test_release_students import make_student

    for folder in ("content", "srv/gdrive"):
        shutil.rmtree(rootfs / folder, ignore_errors=True)
    (rootfs / "content").mkdir()
    base = Path(tempfile.mkdtemp(prefix="hw8-trixie-"))
    try:
        release, zip_path = build_release(load_course(REPO_ROOT / "grading" / "course.toml"), base / "release")
        home = make_student(release, base / "hw8", keep_optional=True)
        (home / ".venv").unlink()
        (rootfs / "srv" / "gdrive" / "MyDrive").mkdir(parents=True)
        shutil.copytree(home, rootfs / "srv" / "gdrive" / "MyDrive" / "hw8")
        shutil.copy2(zip_path, rootfs / "srv" / "check" / "hw8_release.zip")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    (rootfs / "srv" / "check" / "setup_cell.py").write_text(SETUP_CELL)
    (rootfs / "srv" / "check" / "driver.py").write_text(DRIVER)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("the check needs root (debootstrap, chroot, mount)")
    started = time.monotonic()
    rootfs = OUT / "rootfs"
    build_rootfs(rootfs)
    python = subprocess.run(["chroot", str(rootfs), "python3", "-c",
                             "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                            capture_output=True, text=True, check=True).stdout.strip()
    prepare(rootfs, python)
    prepared = time.monotonic() - started
    print(f"trixie-check: rootfs, wheels, venv and student ready in {prepared:.0f} s", flush=True)
    env = {"PATH": "/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "HW8_FAST": "1",
           "HF_HUB_OFFLINE": "1", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/wheels", "MPLBACKEND": "Agg"}
    run = contained("/venv/bin/python /srv/check/driver.py", memory_bytes=16 * 2**30, cpu=float(os.cpu_count()),
                    timeout=3600, root=rootfs, env=env, drop_sys_admin=False)
    report_file = rootfs / "srv" / "check" / "report.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() and run["returncode"] == 0 else {}
    report.update(prepare_s=round(prepared, 1), run_s=round(run["seconds"], 1), returncode=run["returncode"],
                  peak_mib=run["peak_bytes"] // 2**20, rootfs=f"Debian trixie, Python {python}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(report, indent=1))
    print(run["output"][-3000:])
    print(f"trixie-check: {'passed' if run['returncode'] == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s; "
          f"report in {OUT / 'report.json'}")
    return 0 if run["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
