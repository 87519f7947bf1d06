"""`make gradescope-check`: the Gradescope route run on an emulation of Gradescope's own image and limits.

Gradescope (its autograder documentation: base images, troubleshooting, best practices) builds an image once with
`setup.sh` and grades each submission in a fresh Docker container of it: root without CAP_SYS_ADMIN (so our sandbox
runs without namespaces), 768 MB of memory and half a CPU by default, a 10-minute timeout. Here:
  1. a root filesystem of another Python than this machine's: Debian trixie (Python 3.13, Debian's python3-torch
     2.6), built once with debootstrap and cached in build/gradescope-check/rootfs;
  2. the bundle (`make gradescope`) unpacked to /autograder/source there, and its setup.sh run unchanged except its
     torch line (HW8_TORCH_INSTALL=true: the venv sees Debian's torch) and a wheelhouse (pip inside trixie cannot
     verify the registry's certificate, so this machine's pip downloads the wheels for Python 3.13);
  3. each submission of the test corpus (tests/test_grading_hw8.py: model, stub, wrong, attacks, hostile uploads) in
     a fresh "container": new PID, IPC and mount namespaces, /autograder/{submission,results} and /tmp fresh,
     run_autograder run as root with CAP_SYS_ADMIN dropped (capsh), in a cgroup of 768 MB (no swap) and a 50 % CPU
     quota, killed after 10 minutes;
  4. results.json validated against Gradescope's documented schema, scores compared with the corpus's expected
     scores (the ones both routes give in `make test`), peak memory and wall time per submission reported
     (build/gradescope-check/report.json).
`contained()` and `results_schema_problems()` are also used by tests/test_grading_hw8.py on this machine's Python.

    python -m grading.gradescope_check [--only model wrong ...] [--memory-mb 768] [--cpu 0.5] [--timeout 600]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

from grading.course import REPO_ROOT, load_course

CGROUP = Path("/sys/fs/cgroup")
RELEASE, MIRROR = "trixie", "http://deb.debian.org/debian"
ROOTFS_PACKAGES = ["python3", "python3-venv", "python3-pip", "python3-torch", "util-linux", "libcap2-bin",
                   "ca-certificates"]
PYTHON_VERSIONS = ("3.10", "3.11", "3.12", "3.13")     # what the grading requirements must install on
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]

# Gradescope's results.json (its autograder specification): top level and per test, the keys we write and their types
RESULT_KEYS = {"score": (int, float), "execution_time": (int, float), "output": str, "output_format": str,
               "visibility": str, "stdout_visibility": str, "tests": list}
TEST_KEYS = {"score": (int, float), "max_score": (int, float), "status": str, "name": str, "output": str,
             "visibility": str}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}


def results_schema_problems(payload) -> list[str]:
    """What in a results.json payload is not Gradescope's schema (every documented key with its type; visibility,
    output_format and status from their allowed values; a test's score within 0..max_score)."""
    if not isinstance(payload, dict):
        return ["results.json is not an object"]
    problems = [f"{k}: missing or not {t}" for k, t in RESULT_KEYS.items()
                if not isinstance(payload.get(k), t) or isinstance(payload.get(k), bool)]
    problems += [f"unknown top-level key {k!r}" for k in payload if k not in RESULT_KEYS]
    if payload.get("visibility") not in VISIBILITY or payload.get("stdout_visibility") not in VISIBILITY:
        problems.append("visibility / stdout_visibility not one of " + ", ".join(sorted(VISIBILITY)))
    if payload.get("output_format") not in FORMATS:
        problems.append(f"output_format not one of {sorted(FORMATS)}")
    for i, test in enumerate(payload.get("tests") or []):
        problems += [f"tests[{i}].{k}: missing or not {t}" for k, t in TEST_KEYS.items()
                     if not isinstance(test.get(k), t) or isinstance(test.get(k), bool)]
        if test.get("status") not in ("passed", "failed"):
            problems.append(f"tests[{i}].status not passed/failed")
        if isinstance(test.get("score"), (int, float)) and isinstance(test.get("max_score"), (int, float)) \
                and not 0 <= test["score"] <= test["max_score"]:
            problems.append(f"tests[{i}].score outside 0..max_score")
    return problems


def contained(command: str, memory_bytes: int, cpu: float, timeout: float, root: Path | None = None,
              env: dict | None = None, drop_sys_admin: bool = True) -> dict:
    """Run `command` (bash) as Gradescope runs run_autograder: in a fresh PID, IPC and mount namespace (a container;
    chrooted into `root` when given, with its own /proc and the host's /dev), as root without CAP_SYS_ADMIN (unless
    drop_sys_admin is False: a grading machine of one's own, where the sandbox has its namespaces), in a
    cgroup v1 of `memory_bytes` (swap included) and `cpu` CPUs, killed after `timeout` seconds.
    Returns returncode, seconds, peak_bytes (the cgroup's, page cache included), oom_kills, timed_out, output."""
    name = f"hw8-gradescope-{uuid.uuid4().hex[:8]}"
    memory, cpu_group = CGROUP / "memory" / name, CGROUP / "cpu" / name
    memory.mkdir()
    cpu_group.mkdir()
    try:
        (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():
            (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
        (memory / "memory.swappiness").write_text("0")
        (cpu_group / "cpu.cfs_period_us").write_text("100000")
        (cpu_group / "cpu.cfs_quota_us").write_text(str(int(100000 * cpu)))
        inner = f"capsh --drop=cap_sys_admin -- -c {_quote(command)}" if drop_sys_admin \
            else f"bash -c {_quote(command)}"
        if root is not None:
            inner = (f"mount -t proc proc {root}/proc && mount --rbind /dev {root}/dev && "
                     f"exec chroot {root} {inner}")
        argv = ["unshare", "--pid", "--ipc", "--mount", "--fork", "--propagation", "private", "--", "sh", "-c",
                (inner if root is not None else f"mount -t proc proc /proc && exec {inner}")]

        # The first process moves itself into both cgroups, then becomes the container (a shell, not a preexec_fn:
        # this function may run in several threads at once, and a preexec_fn in a threaded parent can deadlock).
        enter = " && ".join(f"echo $$ > {_quote(str(group / 'cgroup.procs'))}" for group in (memory, cpu_group))
        started = time.monotonic()
        proc = subprocess.Popen(["sh", "-c", f'{enter} && exec "$@"', "sh", *argv], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        timed_out = False
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(memory)
            output, _ = proc.communicate()
        seconds = time.monotonic() - started
        oom = (memory / "memory.oom_control").read_text()
        return {"returncode": proc.returncode, "seconds": seconds, "timed_out": timed_out,
                "peak_bytes": int((memory / "memory.max_usage_in_bytes").read_text()),
                "oom_kills": int(next((line.split()[1] for line in oom.splitlines() if line.startswith("oom_kill ")),
                                      "0")),
                "output": output[-4000:]}
    finally:
        _kill_group(memory)
        for group in (memory, cpu_group):
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _kill_group(group: Path) -> None:
    for _ in range(20):
        pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def resolution_problems(requirements: Path, versions=PYTHON_VERSIONS) -> dict[str, str]:
    """{python version: pip's error} for each Python whose wheels pip cannot resolve the grading requirements from
    (pip install --dry-run for that Python and manylinux); empty when every one resolves."""
    problems = {}
    for version in versions:
        with tempfile.TemporaryDirectory() as target:
            done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                                   "--quiet", "--python-version", version, "--only-binary=:all:",
                                   *[f"--platform={p}" for p in PLATFORMS], "--target", target,
                                   "-r", str(requirements)], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            problems[version] = (done.stderr or done.stdout).strip()[-1500:]
    return problems


# ------------------------------------------------------------------------------------------------ the emulation


def build_rootfs(rootfs: Path) -> None:
    """Debian trixie with Python 3.13 and Debian's torch (debootstrap, about a minute; cached)."""
    if (rootfs / "usr" / "bin" / "python3").exists():
        return
    if shutil.which("debootstrap") is None:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"], check=True)
    partial = rootfs.with_name(rootfs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(ROOTFS_PACKAGES)}", RELEASE,
                    str(partial), MIRROR], check=True)
    partial.rename(rootfs)


def install_bundle(rootfs: Path, bundle: Path, wheels: Path) -> dict:
    """Unpack the bundle to <rootfs>/autograder/source and run its setup.sh there (once: Gradescope's image)."""
    source = rootfs / "autograder" / "source"
    shutil.rmtree(rootfs / "autograder", ignore_errors=True)
    source.mkdir(parents=True)
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(source)
    for script in ("setup.sh", "run_autograder"):
        (source / script).chmod(0o755)
    shutil.rmtree(rootfs / "wheels", ignore_errors=True)
    shutil.copytree(wheels, rootfs / "wheels")
    shutil.rmtree(rootfs / "opt" / "hw8-grading", ignore_errors=True)
    shutil.copy2("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HW8_TORCH_INSTALL": "true", "HW8_WHEELS": "/wheels",
           "HW8_VENV_OPTIONS": "--system-site-packages", "HOME": "/root", "LANG": "C.UTF-8"}
    started = time.monotonic()
    done = subprocess.run(["chroot", str(rootfs), "bash", "/autograder/source/setup.sh"], env=env,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"setup.sh failed in the {RELEASE} root filesystem:\n{(done.stdout + done.stderr)[-4000:]}")
    return {"seconds": time.monotonic() - started, "last_line": done.stdout.strip().splitlines()[-1]}


def download_wheels(requirements: Path, dest: Path, python: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--python-version", python,
                    "--only-binary=:all:", *[f"--platform={p}" for p in PLATFORMS], "-d", str(dest), "-r",
                    str(requirements)], check=True, timeout=1200)


def grade_in_container(rootfs: Path, submission: Path, memory: int, cpu: float, timeout: float) -> dict:
    """One submission in a fresh emulated container; returns the run's figures and results.json."""
    for folder in ("submission", "results"):
        shutil.rmtree(rootfs / "autograder" / folder, ignore_errors=True)
    (rootfs / "autograder" / "results").mkdir()
    corpus_module()._copy_upload(submission, rootfs / "autograder" / "submission")
    shutil.rmtree(rootfs / "tmp", ignore_errors=True)
    (rootfs / "tmp").mkdir(mode=0o1777)
    os.chmod(rootfs / "tmp", 0o1777)
    run = contained("bash /autograder/source/run_autograder", memory, cpu, timeout, root=rootfs,
                    env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
                         "HW8_FAST": "1"})                  # the corpus's checkpoint is a fast-mode one
    path = rootfs / "autograder" / "results" / "results.json"
    run["results"] = json.loads(path.read_text()) if path.is_file() else None
    return run


def corpus_module():
    """tests/test_grading_hw8.py, whose corpus (submissions and expected scores) the emulation grades."""
    import importlib.util

    if "hw8_grading_corpus" not in sys.modules:
        spec = importlib.util.spec_from_file_location("hw8_grading_corpus", REPO_ROOT / "tests" / "test_grading_hw8.py")
        sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules["hw8_grading_corpus"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="grade only these submissions of the corpus")
    parser.add_argument("--memory-mb", type=int, default=768)
    parser.add_argument("--cpu", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("the emulation needs root (chroot, namespaces, cgroups)")
    out = REPO_ROOT / "build" / "gradescope-check"
    report: dict = {"memory_mb": args.memory_mb, "cpu": args.cpu, "timeout_s": args.timeout}
    started = time.monotonic()
    problems = resolution_problems(REPO_ROOT / "grading" / "requirements-grading.txt")
    report["resolution"] = {v: problems.get(v, "ok") for v in PYTHON_VERSIONS}
    print(f"grading requirements resolve for Python {', '.join(PYTHON_VERSIONS)}: {report['resolution']}", flush=True)
    build_rootfs(out / "rootfs")
    python = subprocess.run(["chroot", str(out / "rootfs"), "python3", "-c",
                             "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                            capture_output=True, text=True, check=True).stdout.strip()
    download_wheels(REPO_ROOT / "grading" / "requirements-grading.txt", out / f"wheels-{python}", python)
    report["rootfs"] = f"Debian {RELEASE}, Python {python}"

    os.environ["HW8_FAST"] = "1"                       # the corpus's checkpoint is a fast-mode one
    corpus = corpus_module()
    from grading.gradescope import build_bundle
    from grading.release import build_release

    base = Path(tempfile.mkdtemp(prefix="hw8-gradescope-check-"))
    try:
        course = load_course(corpus.course_file_with_test_timeouts(base))
        release, _ = build_release(course, base / "build" / "release")
        checkpoint = corpus.train_fast_checkpoint(base / "fast_checkpoint.pt")
        subs = corpus.build_submissions(release, base, checkpoint, port=9)     # nothing listens on port 9
        bundle = build_bundle(course, base / "gradescope")
        report["setup"] = install_bundle(out / "rootfs", bundle, out / f"wheels-{python}")
        print(f"setup.sh: {report['setup']['seconds']:.0f} s, {report['setup']['last_line']}", flush=True)
        names = [n for n in subs if n not in corpus.NBGRADER_ONLY and (not args.only or n in args.only)]
        report["submissions"], failures = {}, []
        for name in names:
            run = grade_in_container(out / "rootfs", subs[name], args.memory_mb * 2**20, args.cpu, args.timeout)
            results = run.pop("results")
            expected = corpus.EXPECTED[name][0]
            score = results.get("score") if isinstance(results, dict) else None
            schema = results_schema_problems(results)
            ok = score == expected and not schema and not run["timed_out"] and run["oom_kills"] == 0
            run["failed_checks"] = [f"{t.get('name')}: {str(t.get('output'))[:300]}" for t in
                                    (results or {}).get("tests", []) if t.get("score", 0) < t.get("max_score", 0)]
            report["submissions"][name] = {**run, "score": score, "expected": expected, "schema": schema, "ok": ok}
            why = "" if ok else f"  <-- {schema or run['failed_checks'] or run['output'][-600:]}"
            print(f"{name}: {score} (expected {expected}) {run['seconds']:.1f} s, peak {run['peak_bytes'] / 2**20:.0f}"
                  f" MiB, OOM kills {run['oom_kills']}{why}", flush=True)
            if not ok:
                failures.append(name)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report["seconds"] = time.monotonic() - started
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"gradescope-check: {len(names) - len(failures)} of {len(names)} as expected in {report['seconds']:.0f} s"
          f" ({report['rootfs']}, {args.memory_mb} MB, {args.cpu} CPU); report in {out / 'report.json'}")
    return 1 if failures or problems else 0


if __name__ == "__main__":
    sys.exit(main())
