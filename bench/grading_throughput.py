"""Grading throughput: `make autograde` on COPIES solved submissions with JOBS = 1 and 2, one Gradescope run, and
the projection for a class (--class-size students on --cores cores with JOBS = cores).

The model student is the one of tests/test_grading_hw8.py (release + instructor solutions + a fast-mode checkpoint;
grading runs with HW8_FAST=1). Prints per-submission seconds and writes build/bench/grading_throughput.json.

Projection, from the JOBS = 1 run's phases (grading/autograde.py writes them to phases.json): the serial phases
(generate_assignment once, the gradebook merge) plus one shard of class-size / cores students whose staging and
checks, nbgrader autograde, gradebook and feedback cost what they cost a student in the JOBS = 1 run. nbgrader's
start-up (paid once per call and shard) is spread over COPIES students there, over more in a class: an upper bound,
for cores as fast as these and no other load.

    python -m bench.grading_throughput [--copies 8] [--jobs 1 2] [--class-size 500] [--cores 16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def project(phases: dict[str, float], copies: int, class_size: int, cores: int) -> dict:
    """Wall-clock seconds for class_size students with JOBS = cores, from a JOBS = 1 run's phases on `copies`."""
    per_student = {name.removesuffix(" (sum over workers)"): sec / copies for name, sec in phases.items()
                   if name.endswith(" (sum over workers)")}                # staging is part of "trusted checks"
    shard = -(-class_size // cores)                                    # students in the largest shard
    serial = phases["nbgrader generate_assignment"] + phases["gradebook merge"] * class_size / copies
    parallel = shard * sum(per_student.values())
    total = serial + parallel
    text = (f"projection, {class_size} students on {cores} cores, JOBS={cores}: {total / 60:.1f} min = serial "
            f"{serial:.0f} s (generate_assignment, merge) + {shard} students a shard x {parallel / shard:.2f} s ("
            + ", ".join(f"{k} {v:.2f}" for k, v in per_student.items()) + ")")
    return {"class_size": class_size, "cores": cores, "per_student_s": per_student, "serial_s": serial,
            "parallel_s": parallel, "total_s": total, "text": text}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--class-size", type=int, default=500)
    parser.add_argument("--cores", type=int, default=16)
    args = parser.parse_args(argv)
    os.environ["HW8_FAST"] = "1"
    from grading.course import load_course
    from grading.gradescope import build_bundle
    from grading.gradescope_check import corpus_module
    from grading.release import build_release

    t = corpus_module()
    base = Path(tempfile.mkdtemp(prefix="hw8-throughput-"))
    try:
        course_file = t.course_file_with_test_timeouts(base)
        course = load_course(course_file)
        release, _ = build_release(course, base / "build" / "release")
        model = t.make_model_student(release, base / "model", t.train_fast_checkpoint(base / "fast.pt"))
        subs = base / "subs"
        for i in range(args.copies):
            shutil.copytree(model, subs / f"student{i:03d}")
        report = {"copies": args.copies, "cpus": os.cpu_count(), "load_before": os.getloadavg()[0], "autograde": {}}
        for jobs in args.jobs:
            started = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "grading.autograde", str(subs), "--course",
                                   str(course_file), "--out", str(base / f"out{jobs}"), "--jobs", str(jobs)],
                                  capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=REPO)
            wall = time.monotonic() - started
            if done.returncode != 0:
                raise RuntimeError(f"autograde failed with JOBS={jobs}:\n{done.stdout[-3000:]}")
            checks = [float(s) for s in re.findall(r"\(([\d.]+) s\)", done.stdout)]
            phases = json.loads((base / f"out{jobs}" / "phases.json").read_text())["seconds"]
            report["autograde"][jobs] = {"wall_s": wall, "per_submission_s": wall / args.copies,
                                         "trusted_checks_s_mean": sum(checks) / max(1, len(checks)),
                                         "phases_s": phases}
            mean = report["autograde"][jobs]["trusted_checks_s_mean"]
            print(f"make autograde JOBS={jobs}: {args.copies} solved submissions in {wall:.1f} s "
                  f"({wall / args.copies:.1f} s each; trusted checks {mean:.1f} s a student)\n    "
                  + ", ".join(f"{name} {sec:.1f} s" for name, sec in phases.items()), flush=True)
        if 1 in args.jobs:
            report["projection"] = project(report["autograde"][1]["phases_s"], args.copies, args.class_size,
                                           args.cores)
            print(report["projection"]["text"], flush=True)
        bundle = build_bundle(course, base / "gradescope")
        started = time.monotonic()
        result = t.gradescope_run(bundle, base / "gs", model, 61182 + 500)
        report["gradescope_solved_s"] = time.monotonic() - started
        report["gradescope_score"] = result["score"]
        report["load_after"] = os.getloadavg()[0]
        print(f"gradescope run_autograder, solved submission: {report['gradescope_solved_s']:.1f} s "
              f"(score {result['score']:g}); load average {report['load_before']:.1f} -> {report['load_after']:.1f}")
        out = REPO / "build" / "bench"
        out.mkdir(parents=True, exist_ok=True)
        (out / "grading_throughput.json").write_text(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
