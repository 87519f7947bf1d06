"""The benchmarks run end to end in a tiny configuration and write valid results (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]

import kernel_attention as ka  # noqa: E402
from bench import flops, peers  # noqa: E402
from bench.analysis import crossover, memory_slope, peer_lines, peer_targets  # noqa: E402
from bench.measure import minor_faults, peak_extra_memory  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_script(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a script from the repository root, offline, one thread (plus `env`)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_bench_attention_tiny_run_writes_json_and_png(tmp_path):
    out = tmp_path / "bench"
    proc = run_script("-m", "bench.bench_attention", "--sizes", "64", "128", "--reps", "2", "--threads", "1",
                      "--matmul-size", "256", "--profile-n", "64", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "attention.json").read_text())
    assert report["machine"]["torch_threads"] == 1
    assert report["config"]["sizes"] == [64, 128]
    assert report["matmul"]["median_flops_per_s"] > 0
    names = set(report["variants"])
    assert {"sdpa_torch", "sdpa_torch_causal", "softmax_module", "favor64_linear", "favor256_linear",
            "favor256_causal_chunked", "favor256_causal_scan", "favor256_causal_reference", "favor64_linear_fused",
            "favor256_linear_fused", "favor256_causal_chunked_fused"} <= names
    measured = {(r["variant"], r["mode"], r["n"]) for r in report["results"]}
    for name in names:
        for n in (64, 128):
            assert (name, "forward", n) in measured
    assert ("favor256_causal_reference", "backward", 64) not in measured        # the loop is forward-only
    assert any(s["variant"] == "favor256_causal_reference" and s["mode"] == "backward" for s in report["skipped"])
    for r in report["results"]:
        assert len(r["times_s"]) == 2 and r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["peak_bytes"] > 0 and r["minor_faults"] >= 0
        if r["mode"] == "forward":
            assert r["flops"] > 0 and r["fraction_of_matmul"] > 0
    assert {t["met"] for t in report["targets"]} <= {None, True, False}
    assert "fast-transformers" in report["peers"]["unavailable"]                 # never left out silently
    assert ("performer_pytorch" in "".join(report["peers"]["timed"])) == (importlib.util.find_spec(
        "performer_pytorch") is not None)
    for name in report["peers"]["timed"]:
        assert (name, "forward", 128) in measured and (name, "backward", 128) in measured
    assert "fast-transformers: not timed: " in (out / "attention.md").read_text()
    png = (out / "attention.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert "| 128 |" in (out / "attention.md").read_text()
    assert "aten::" in (out / "profile_64.txt").read_text()


def test_peak_extra_memory_sees_torch_cpu_allocations():
    n = 1 << 20                                                       # 4 MiB of float32

    def two_buffers():
        a = torch.ones(n)
        b = a * 2                                                     # both alive: 8 MiB
        return float(b[0])

    peak = peak_extra_memory(two_buffers, torch.device("cpu"))
    assert 8 * 2**20 <= peak < 9 * 2**20


def test_minor_faults_count_the_pages_of_a_fresh_buffer_not_of_a_reused_one():
    n = 16 << 20                                                      # 64 MiB of float32: glibc maps it afresh
    before = minor_faults()
    buffer = torch.empty(n).fill_(1.0)
    fresh = minor_faults() - before
    before = minor_faults()
    buffer.fill_(2.0)
    reused = minor_faults() - before
    assert fresh >= 32 and reused < fresh / 4                         # 2 MiB huge pages at least; 4 KiB: ~16k


@pytest.mark.parametrize("n, m, chunk", [(256, 32, 64), (200, 16, 64), (128, 64, 32)])
def test_flop_formulas_match_torch_flop_counter(n, m, chunk):
    """The matmul terms of bench/flops.py equal what torch counts when the module runs (up to the normaliser)."""
    b, h, d = 2, 3, 16
    q, k, v = (torch.randn(b, h, n, d) for _ in range(3))
    fm = ka.FavorPositiveFeatures(d, m)

    def counted(fn):
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    with torch.no_grad():
        phi_q, phi_k = fm(q, is_query=True), fm(k)
        assert counted(lambda: (fm(q, is_query=True), fm(k))) == flops.matmul_part("favor_features", b, h, n, d, m)
        # The normaliser phi_q . Z may be elementwise (not counted) or a matmul: a mat-vec (2 N m) in linear attention,
        # an extra value column of ones (2 N m twice + 2 N C) in the chunked scan.
        blocks = flops.chunk_square_sum(n, chunk)
        for kind, fn, normaliser in (
                ("linear", lambda: ka.linear_attention(phi_q, phi_k, v), 2 * b * h * n * m),
                ("causal_chunked", lambda: ka.causal_linear_attention(phi_q, phi_k, v, chunk_size=chunk),
                 b * h * (4 * n * m + 2 * blocks))):
            expected = flops.matmul_part(kind, b, h, n, d, m, chunk)
            assert expected <= counted(fn) <= expected + normaliser, kind
    with torch.no_grad():
        softmax_matmuls = counted(lambda: ka.scaled_dot_product_attention(q, k, v))
    assert flops.softmax_attention(b, h, n, d) == softmax_matmuls + 3 * b * h * n * n


def test_peer_targets_and_table_compare_ours_with_the_fastest_peer():
    def row(variant, n, t, mem, mode="forward"):
        return {"variant": variant, "mode": mode, "n": n, "median_s": t, "peak_bytes": mem}

    rows = []
    for n in (1024, 4096, 8192):
        rows += [row("favor256_linear_fused", n, n * 1e-6, 10 * n), row("peer_a256_linear", n, 3 * n * 1e-6, 40 * n),
                 row("peer_b256_linear", n, 2.5 * n * 1e-6, 5 * n),                 # the fastest peer: 2.5x
                 row("favor256_causal_chunked_fused", n, n * 1e-6, 10 * n),
                 row("peer_a256_causal", n, (0.5 if n == 1024 else 4) * n * 1e-6, 20 * n)]
    got = {t["target"]: t for t in peer_targets(rows)}
    fused = got["favor256_linear_fused speed-up over the fastest peer at N=8192"]
    assert fused["value"] == pytest.approx(2.5) and fused["met"] is True
    memory = got["favor256_linear_fused peak extra memory / the fastest peer's at N=8192"]
    assert memory["value"] == pytest.approx(2.0) and memory["met"] is False       # the fastest peer's memory, 5 n
    slowest = got["favor256_causal_chunked_fused smallest speed-up over the fastest peer from N=1024"]
    assert slowest["value"] == pytest.approx(0.5) and slowest["met"] is False     # slower at N = 1024
    assert got["favor256_causal_chunked_fused speed-up over the fastest peer at N=8192"]["met"] is True
    assert all(t["value"] is None for t in peer_targets([r for r in rows if not r["variant"].startswith("peer_")]))
    lines = peer_lines(rows, [1024, 8192], {"fast-transformers": "no CUDA"})
    assert "| 8192 | linear | 8.19 | peer_b256_linear | 20.5 | 2.50 |" in "\n".join(lines)
    assert all(line.endswith("| – | – |") for line in lines if line.startswith("| 8192 |"))   # no faults recorded
    assert lines[-1] == "- fast-transformers: not timed: no CUDA"


def test_unavailable_peers_say_why():
    why = peers.unavailable()
    assert "CUDA_HOME" in why["fast-transformers"] or "imports here" in why["fast-transformers"]
    if importlib.util.find_spec("performer_pytorch") is None:
        assert "bench/requirements-peers.txt" in why["performer-pytorch"]
    else:
        assert "performer-pytorch" not in why


def test_crossover_and_memory_slope_on_synthetic_rows():
    def row(variant, n, t, mem=1):
        return {"variant": variant, "mode": "forward", "n": n, "median_s": t, "peak_bytes": mem}

    rows = [row("soft", n, n * n * 1e-6, n * n) for n in (256, 512, 1024, 2048)]
    rows += [row("lin", n, n * 1e-3, 100 * n) for n in (256, 512, 1024, 2048)]
    c = crossover(rows, "lin", "soft")
    assert c["bracket"] == [512, 1024] and c["n"] == pytest.approx(1000, rel=0.01)    # n^2 1e-6 = n 1e-3 at n=1000
    assert memory_slope(rows, "lin", n_min=256) == pytest.approx(1.0)
    assert memory_slope(rows, "soft", n_min=256) == pytest.approx(2.0)
    assert crossover(rows, "soft", "lin")["n"] is None
    assert math.isclose(flops.matmul(4), 128)


def test_time_to_quality_table_from_results_json(tmp_path):
    results = {
        "fast": True, "n_test": 100, "machine": "test",
        "lead": {"rouge1": 30.0, "rouge2": 12.0, "rougeL": 27.0},
        "runs": [
            {"name": "main", "attention": "softmax", "steps": 60, "train_seconds": 12.5,
             "rouge": {"rouge1": 20.0, "rouge2": 5.0, "rougeL": 18.0}},
            {"name": "1g performer", "attention": "performer", "n_random": 16, "steps": 15, "train_seconds": 4.0,
             "rouge": {"rouge1": 10.0, "rouge2": 2.0, "rougeL": 9.0}},
        ],
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    out = tmp_path / "ttq"
    proc = run_script("-m", "bench.time_to_quality", "--results", str(path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (out / "time_to_quality.md").read_text()
    assert "Lead-10" in table and "performer" in table and "12.5" in table
    assert "-10.0" in table                                            # ROUGE-1 of main minus Lead
    assert json.loads((out / "time_to_quality.json").read_text())["rows"][0]["name"] == "main"


def test_time_to_quality_shows_float32_and_bf16_runs_side_by_side(tmp_path):
    """The notebook's per-mode files (results.full-fp32.json, results.full-bf16.json) land in one table, each with
    its precision, threads and whole-notebook time; full-mode files win over fast-mode ones by default."""
    from bench.time_to_quality import default_results

    lead = {"rouge1": 30.0, "rouge2": 12.0, "rougeL": 27.0}
    for mode, precision, seconds in (("full", "fp32", 700.0), ("full", "bf16", 500.0), ("fast", "fp32", 5.0)):
        results = {"fast": mode == "fast", "precision": precision, "threads": 2, "notebook_minutes": seconds / 40,
                   "n_test": 1000, "lead": lead,
                   "runs": [{"name": "main", "attention": "softmax", "steps": 3200, "train_seconds": seconds,
                             "rouge": {"rouge1": 36.0, "rouge2": 15.0, "rougeL": 33.0}}]}
        (tmp_path / f"results.{mode}-{precision}.json").write_text(json.dumps(results))
    found = default_results(tmp_path)
    assert [p.name for p in found] == ["results.full-bf16.json", "results.full-fp32.json"]
    out = tmp_path / "ttq"
    proc = run_script("-m", "bench.time_to_quality", "--results", *map(str, found), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (out / "time_to_quality.md").read_text()
    assert "bf16, 2 torch threads" in table and "fp32, 2 torch threads" in table and "whole notebook 17.5 min" in table
    rows = json.loads((out / "time_to_quality.json").read_text())["rows"]
    main = {r["precision"]: r for r in rows if r["name"] == "main"}
    assert main["fp32"]["train_seconds"] == 700.0 and main["bf16"]["seconds_per_step"] == pytest.approx(500 / 3200)
    (tmp_path / "results.full-fp32.json").unlink()
    (tmp_path / "results.full-bf16.json").unlink()
    assert [p.name for p in default_results(tmp_path)] == ["results.fast-fp32.json"]


def test_time_to_quality_plot_gives_a_run_one_colour_and_marks_precision_by_fill():
    """The same run in float32 and bf16 shares its colour (filled vs hollow marker); different runs differ."""
    import matplotlib.pyplot as plt
    import numpy as np

    from bench.time_to_quality import plot

    def row(name, precision, seconds):
        return {"name": name, "precision": precision, "attention": "softmax", "train_seconds": seconds,
                "rougeL": 30.0}

    rows = [row("main", "bf16", 500.0), row("sweep", "bf16", 20.0), row("main", "fp32", 600.0),
            row("sweep", "fp32", 25.0), {"name": "Lead-10", "precision": "–", "rougeL": 28.0}]
    fig = plot(rows)
    points = [c for c in fig.axes[0].collections if len(c.get_offsets())]
    assert len(points) == 4
    by_key = {(r["name"], r["precision"]): c for r, c in zip(rows, points)}
    edge = {k: tuple(np.round(c.get_edgecolor()[0], 6)) for k, c in by_key.items()}
    assert edge[("main", "bf16")] == edge[("main", "fp32")] != edge[("sweep", "fp32")] == edge[("sweep", "bf16")]
    assert by_key[("main", "bf16")].get_facecolor().size == 0 or by_key[("main", "bf16")].get_facecolor()[0][3] == 0
    assert by_key[("main", "fp32")].get_facecolor()[0][3] == 1
    assert fig.axes[0].get_xscale() == "log"
    plt.close(fig)


def test_time_to_quality_fails_clearly_without_results(tmp_path):
    missing = tmp_path / "nothing.json"
    proc = run_script("-m", "bench.time_to_quality", "--results", str(missing), "--out", str(tmp_path))
    assert proc.returncode != 0
    assert str(missing) in proc.stderr and "Summarization" in proc.stderr


def test_time_to_quality_trains_softmax_and_performer(tmp_path):
    """--train measures both attentions through the summarizer package (HW8_FAST sizes, 2 steps) and tabulates."""
    proc = run_script("-m", "bench.time_to_quality", "--train", "--steps", "2", "--n-eval", "4", "--threads", "1",
                      "--out", str(tmp_path), env={"HW8_FAST": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((tmp_path / "time_to_quality_runs.json").read_text())
    assert runs["fast"] is True and runs["n_test"] == 4
    assert [r["attention"] for r in runs["runs"]] == ["softmax", "performer"]
    assert all(r["steps"] == 2 and r["train_seconds"] > 0 for r in runs["runs"])
    assert (tmp_path / "time_to_quality.png").read_bytes().startswith(PNG_MAGIC)
