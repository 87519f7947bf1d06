"""Benchmark softmax attention against kernelized linear attention (FAVOR+), forward and forward + backward.

    python -m bench.bench_attention                         # full run: N = 256 .. 16384 -> build/bench/
    python -m bench.bench_attention --sizes 64 128 --reps 2 --out /tmp/b   # smoke run

Inputs: q, k, v of shape (B, H, N, D) = (1, 8, N, 64), float32. Variants (names as in the JSON):
    sdpa_torch, sdpa_torch_causal      torch.nn.functional.scaled_dot_product_attention (fused; causal: is_causal)
    softmax_module                     kernel_attention.scaled_dot_product_attention (explicit N x N weights)
    favor{m}_linear                    FavorPositiveFeatures(64, m) on q and k + kernel_attention.linear_attention
    favor{m}_causal_chunked            the same features + kernel_attention.causal_linear_attention (chunked scan)
    favor{m}_causal_scan               causal_linear_attention alone, from precomputed features (the scan's cost)
    favor{m}_causal_reference          features + causal_linear_attention_reference (Python loop; small N only)
    favor{m}_linear_fused              bench.fused_favor.favor_attention_fused (instructor-only fast path, what
                                       PerformerAttention(fast=True) runs): features computed block by block inside
                                       the sequence loop, never all N x m at once; eps = 0 (PerformerAttention's)
    favor{m}_causal_chunked_fused      the same, causal (groups of chunks of C = ka_fused.FUSED_CAUSAL_CHUNK)
    peer_performer_pytorch{m}_linear,  performer-pytorch's FastAttention (same m; bench/peers.py says which of its
    peer_performer_pytorch{m}_causal   defaults apply); fast-transformers is listed as unavailable with the reason
    favor{m}_linear_compiled,          --compile: torch.compile of the readable pipeline (features + linear_attention
    favor{m}_causal_chunked_compiled   / causal_linear_attention), the second candidate for the fusion
Forward calls run under torch.no_grad() (inference); "backward" calls time forward + backward of a fixed gradient.
Every variant of one N is timed in the same rounds, in a fresh random order per round, together with a square
matmul that measures the machine's throughput under the same load, so ratios stay meaningful on a noisy machine.
Peak memory: bench/measure.py (torch.profiler allocator events on CPU, max_memory_allocated on CUDA).
Variants whose predicted time or memory at the next N exceeds --max-call-s / --max-memory-gib are skipped (listed
in the JSON with the reason). Writes attention.json, attention.png and attention.md into --out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

import kernel_attention as ka
from bench import flops, measure, peers
from bench import fused_favor as ka_fused
from bench.analysis import check_targets, crossover, markdown_tables, peer_lines, peer_targets
from bench.measure import machine_info, matmul_probe, peak_extra_memory, time_call, timing_stats

BATCH, HEADS, HEAD_DIM = 1, 8, 64
DEFAULT_SIZES = [256, 512, 1024, 2048, 4096, 8192, 16384]
MATMUL = "matmul"


@dataclass(frozen=True)
class Variant:
    """One attention implementation: build(q, k, v) returns the call to time (q, k, v: (B, H, N, D))."""

    name: str
    label: str
    growth: int                                          # 2: O(N^2) time and memory, 1: O(N); predicts the next N
    build: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Callable[[], torch.Tensor]]
    flops: Callable[[int], float] | None = None          # forward FLOPs at sequence length N (bench/flops.py)
    max_n: int | None = None                             # never run above this N
    backward: bool = True                                # also time forward + backward


def favor(module, n_random: int, device: torch.device):
    """module.FavorPositiveFeatures of width HEAD_DIM, drawn from a fixed seed."""
    fm = module.FavorPositiveFeatures(HEAD_DIM, n_random)
    fm.redraw(torch.Generator().manual_seed(n_random))
    return fm.to(device)


def make_variants(args: argparse.Namespace, device: torch.device) -> list[Variant]:
    """The benchmarked variants for the command-line options (plus the linear ones of --compare-module, if given)."""
    b, h, d = BATCH, HEADS, HEAD_DIM
    variants = [
        Variant("sdpa_torch", "torch SDPA", 2, lambda q, k, v: lambda: F.scaled_dot_product_attention(q, k, v),
                lambda n: flops.softmax_attention(b, h, n, d)),
        Variant("sdpa_torch_causal", "torch SDPA causal", 2,
                lambda q, k, v: lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                lambda n: flops.softmax_attention(b, h, n, d, causal=True)),
        Variant("softmax_module", "module softmax", 2,
                lambda q, k, v: lambda: ka.scaled_dot_product_attention(q, k, v),
                lambda n: flops.softmax_attention(b, h, n, d)),
    ]
    variants += linear_variants(ka, args, device)
    variants += fused_variants(ka_fused, args, device)
    if not args.no_peers:
        variants += peer_variants(args, device)
    if args.compile:
        variants += compiled_variants(ka, args, device)
    if args.compare_module is not None:
        other = load_module(args.compare_module)
        variants += [v for v in linear_variants(other, args, device, suffix="_compared") if "reference" not in v.name]
        variants += fused_variants(other, args, device, suffix="_compared")
    return variants


def linear_variants(module, args: argparse.Namespace, device: torch.device, suffix: str = "") -> list[Variant]:
    """FAVOR+ linear, causal chunked, causal scan-only and causal reference variants built from `module`."""
    b, h, d = BATCH, HEADS, HEAD_DIM
    tag = "" if not suffix else f" [{suffix.strip('_')}]"
    variants = []
    for n_random in args.n_random:
        fm = favor(module, n_random, device)
        variants.append(Variant(
            f"favor{n_random}_linear{suffix}", f"FAVOR+ m={n_random} linear{tag}", 1,
            lambda q, k, v, fm=fm: lambda: module.linear_attention(fm(q, is_query=True), fm(k), v),
            lambda n, n_random=n_random: flops.favor_features(b, h, n, d, n_random)
            + flops.linear_attention(b, h, n, n_random, d)))
    c = args.chunk_size
    for n_random in args.causal_n_random:
        fm = favor(module, n_random, device)
        variants += [
            Variant(f"favor{n_random}_causal_chunked{suffix}", f"FAVOR+ m={n_random} causal chunked (C={c}){tag}", 1,
                    lambda q, k, v, fm=fm: lambda: module.causal_linear_attention(fm(q, is_query=True), fm(k), v,
                                                                                  chunk_size=c),
                    lambda n, n_random=n_random: flops.favor_features(b, h, n, d, n_random)
                    + flops.causal_linear_attention_chunked(b, h, n, n_random, d, c)),
            Variant(f"favor{n_random}_causal_scan{suffix}", f"causal chunked scan only, m={n_random}{tag}", 1,
                    lambda q, k, v, fm=fm: scan_only(module, fm, q, k, v, c),
                    lambda n, n_random=n_random: flops.causal_linear_attention_chunked(b, h, n, n_random, d, c)),
            Variant(f"favor{n_random}_causal_reference{suffix}", f"FAVOR+ m={n_random} causal reference loop{tag}", 1,
                    lambda q, k, v, fm=fm: lambda: module.causal_linear_attention_reference(fm(q, is_query=True),
                                                                                            fm(k), v),
                    lambda n, n_random=n_random: flops.favor_features(b, h, n, d, n_random)
                    + flops.causal_linear_attention_loop(b, h, n, n_random, d),
                    max_n=args.reference_max_n, backward=False),
        ]
    return variants


def fused_variants(module, args: argparse.Namespace, device: torch.device, suffix: str = "") -> list[Variant]:
    """FAVOR+ through module.favor_attention_fused (non-causal and causal), when the module has it
    (bench.fused_favor; a kernel_attention.py has none)."""
    if not hasattr(module, "favor_attention_fused"):
        return []
    b, h, d = BATCH, HEADS, HEAD_DIM
    tag = "" if not suffix else f" [{suffix.strip('_')}]"
    c = module.FUSED_CAUSAL_CHUNK
    variants = []
    for n_random in args.n_random:
        fm = favor(module, n_random, device)
        variants.append(Variant(
            f"favor{n_random}_linear_fused{suffix}", f"FAVOR+ m={n_random} fused{tag}", 1,
            lambda q, k, v, fm=fm: lambda: module.favor_attention_fused(q, k, v, fm, eps=0.0),
            lambda n, n_random=n_random: flops.favor_features(b, h, n, d, n_random)
            + flops.linear_attention(b, h, n, n_random, d)))
    for n_random in args.causal_n_random:
        fm = favor(module, n_random, device)
        variants.append(Variant(
            f"favor{n_random}_causal_chunked_fused{suffix}", f"FAVOR+ m={n_random} causal fused (C={c}){tag}", 1,
            lambda q, k, v, fm=fm: lambda: module.favor_attention_fused(q, k, v, fm, causal=True, eps=0.0),
            lambda n, n_random=n_random: flops.favor_features(b, h, n, d, n_random)
            + flops.causal_linear_attention_chunked(b, h, n, n_random, d, c)))
    return variants


def peer_variants(args: argparse.Namespace, device: torch.device) -> list[Variant]:
    """The peer libraries that import (bench/peers.py), non-causal at every --n-random and causal at
    --causal-n-random, with the same features count m as ours."""
    b, h, d = BATCH, HEADS, HEAD_DIM
    variants = []
    for peer, builds in peers.PEERS.items():
        slug = peer.replace("-", "_")
        for causal, sizes in ((False, args.n_random), (True, args.causal_n_random)):
            for n_random in sizes:
                build = builds(n_random, causal, device)
                if build is None:
                    continue
                kind = "causal" if causal else "linear"
                variants.append(Variant(
                    f"peer_{slug}{n_random}_{kind}", f"{peer} m={n_random} {kind}", 1, build,
                    lambda n, m=n_random, c=causal: flops.favor_features(b, h, n, d, m)
                    + (flops.causal_linear_attention_chunked(b, h, n, m, d, 64) if c
                       else flops.linear_attention(b, h, n, m, d))))
    return variants


def compiled_variants(module, args: argparse.Namespace, device: torch.device) -> list[Variant]:
    """torch.compile (inductor; on CPU it needs a C++ compiler) of the readable pipeline, m = 256 only: compiled once
    per N (static shapes) when the call is built, before any measurement (20-70 s each on 2 cores)."""
    b, h, d, c = BATCH, HEADS, HEAD_DIM, args.chunk_size
    fm = favor(module, 256, device)

    def linear(q, k, v):
        return module.linear_attention(fm(q, is_query=True), fm(k), v, eps=0.0)

    def causal(q, k, v):
        return module.causal_linear_attention(fm(q, is_query=True), fm(k), v, chunk_size=c, eps=0.0)

    def warmed(fn, q, k, v):                     # compile (for this N, in inference mode) before any measurement
        with torch.no_grad():
            fn(q, k, v)
        return lambda: fn(q, k, v)

    compiled_linear, compiled_causal = torch.compile(linear, dynamic=False), torch.compile(causal, dynamic=False)
    return [
        Variant("favor256_linear_compiled", "FAVOR+ m=256 torch.compile", 1,
                lambda q, k, v: warmed(compiled_linear, q, k, v),
                lambda n: flops.favor_features(b, h, n, d, 256) + flops.linear_attention(b, h, n, 256, d),
                backward=False),
        Variant("favor256_causal_chunked_compiled", f"FAVOR+ m=256 causal torch.compile (C={c})", 1,
                lambda q, k, v: warmed(compiled_causal, q, k, v),
                lambda n: flops.favor_features(b, h, n, d, 256)
                + flops.causal_linear_attention_chunked(b, h, n, 256, d, c),
                backward=False),
    ]


def load_module(path: Path):
    """Import a kernel_attention implementation from a file (to compare a patched module in the same run)."""
    if not path.is_file():
        raise FileNotFoundError(f"--compare-module {path}: no such file")
    spec = importlib.util.spec_from_file_location("kernel_attention_compared", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scan_only(module, fm, q, k, v, chunk: int) -> Callable[[], torch.Tensor]:
    """causal_linear_attention from features computed once, outside the timed call (leaves that keep q's grad flag)."""
    with torch.no_grad():
        phi_q = fm(q, is_query=True).requires_grad_(q.requires_grad)
        phi_k = fm(k).requires_grad_(q.requires_grad)
    return lambda: module.causal_linear_attention(phi_q, phi_k, v, chunk_size=chunk)


def make_call(variant: Variant, mode: str, n: int, device: torch.device, seed: int) -> Callable[[], object]:
    """The timed call of one variant at length n: forward under no_grad, or forward + backward of a fixed gradient."""
    gen = torch.Generator().manual_seed(seed + n)
    q, k, v = (torch.randn(BATCH, HEADS, n, HEAD_DIM, generator=gen).to(device) for _ in range(3))
    if mode == "forward":
        forward = variant.build(q, k, v)

        def call():
            with torch.no_grad():
                return forward()
        return call
    leaves = [t.requires_grad_() for t in (q, k, v)]
    forward = variant.build(q, k, v)
    grad_out = torch.randn(BATCH, HEADS, n, HEAD_DIM, generator=gen).to(device)

    def call_backward():
        forward().backward(grad_out)
        for t in leaves:                                  # free the gradients inside the call (counted in its peak)
            t.grad = None
    return call_backward


def skip_reason(variant: Variant, mode: str, n: int, history: dict, args: argparse.Namespace) -> str | None:
    """Why (variant, mode) is not run at n, or None. Predicts time and memory from the last measured N."""
    if mode == "backward" and (not variant.backward or n > args.backward_max_n):
        return "backward not benchmarked for this variant / size"
    if variant.max_n is not None and n > variant.max_n:
        return f"limited to N <= {variant.max_n} (Python loop over positions)"
    last = history.get((variant.name, mode))
    if last is None:
        return None
    if last.get("skipped"):
        return "skipped at a smaller N"
    scale = (n / last["n"]) ** variant.growth
    if last["median_s"] * scale > args.max_call_s:
        return f"predicted {last['median_s'] * scale:.1f} s per call > --max-call-s {args.max_call_s}"
    if last["peak_bytes"] * scale > args.max_memory_gib * 2**30:
        return f"predicted {last['peak_bytes'] * scale / 2**30:.1f} GiB > --max-memory-gib {args.max_memory_gib}"
    return None


def bench_size(n: int, variants: list[Variant], history: dict, args, device) -> tuple[list[dict], list[dict], dict]:
    """All (variant, mode) calls at length n, interleaved: returns result rows, skipped rows, matmul summary."""
    calls, skipped, first_size = {}, [], not history
    for variant in variants:
        for mode in args.modes:
            reason = skip_reason(variant, mode, n, history, args)
            if reason:
                skipped.append({"variant": variant.name, "mode": mode, "n": n, "reason": reason})
                history[(variant.name, mode)] = {**history.get((variant.name, mode), {}), "skipped": True}
            else:
                calls[(variant.name, mode)] = make_call(variant, mode, n, device, args.seed)
    probe = matmul_probe(args.matmul_size, device)
    if first_size:                                      # first size: one-time initialisation outside any measurement
        for call in [*calls.values(), probe]:
            call()
    peaks = {key: peak_extra_memory(call, device) for key, call in calls.items()}   # also the warm-up call
    probe()
    times = {key: [] for key in [*calls, MATMUL]}
    faults = {key: [] for key in times}
    order = [*calls, MATMUL]
    rng = random.Random(args.seed + n)
    for _ in range(args.reps):
        rng.shuffle(order)
        for key in order:
            before = measure.minor_faults()
            times[key].append(time_call(probe if key == MATMUL else calls[key], device))
            faults[key].append(measure.minor_faults() - before)
    matmul = timing_stats(times.pop(MATMUL))
    matmul["flops_per_s"] = flops.matmul(args.matmul_size) / matmul["median_s"]
    by_name = {v.name: v for v in variants}
    rows = []
    for (name, mode), ts in times.items():
        row = {"variant": name, "mode": mode, "n": n, **timing_stats(ts), "peak_bytes": peaks[(name, mode)],
               "minor_faults": statistics.median(faults[(name, mode)])}
        count = by_name[name].flops
        if mode == "forward" and count is not None:
            row["flops"] = count(n)
            row["flops_per_s"] = row["flops"] / row["median_s"]
            row["fraction_of_matmul"] = row["flops_per_s"] / matmul["flops_per_s"]
        rows.append(row)
        history[(name, mode)] = row
    return rows, skipped, matmul


def profile_tables(variants: list[Variant], n: int, device: torch.device, seed: int) -> str:
    """torch.profiler operator tables (self CPU time) of one forward call of each FAVOR+ variant at length n."""
    from torch.profiler import ProfilerActivity, profile

    parts = []
    for variant in variants:
        if not variant.name.startswith("favor") or "reference" in variant.name:
            continue
        call = make_call(variant, "forward", n, device, seed)
        call()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            call()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
        parts.append(f"## {variant.name} ({variant.label}), N={n}, forward\n\n{table}\n")
    return "\n".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES, help="sequence lengths N")
    p.add_argument("--reps", type=int, default=5, help="timed calls per variant and N (median and quartiles)")
    p.add_argument("--out", type=Path, default=Path("build/bench"), help="output folder")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (recorded in the JSON)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    p.add_argument("--n-random", type=int, nargs="+", default=[64, 256], help="FAVOR+ m for non-causal attention")
    p.add_argument("--causal-n-random", type=int, nargs="+", default=[256], help="FAVOR+ m for causal attention")
    p.add_argument("--chunk-size", type=int, default=64, help="chunk C of causal_linear_attention")
    p.add_argument("--reference-max-n", type=int, default=1024, help="largest N for the reference causal loop")
    p.add_argument("--backward-max-n", type=int, default=8192, help="largest N for forward + backward")
    p.add_argument("--modes", nargs="+", choices=["forward", "backward"], default=["forward", "backward"])
    p.add_argument("--max-call-s", type=float, default=30.0, help="skip a variant when one call would take longer")
    p.add_argument("--max-memory-gib", type=float, default=6.0, help="skip a variant when it would need more")
    p.add_argument("--matmul-size", type=int, default=1024, help="side of the square matmul throughput probe")
    p.add_argument("--compare-module", type=Path, default=None,
                   help="another kernel_attention.py whose linear variants run in the same rounds (suffix _compared)")
    p.add_argument("--profile-n", type=int, default=None,
                   help="also write operator profiles of the FAVOR+ variants at this N (profile_N.txt)")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile of the readable FAVOR+ pipeline (m = 256; forward only)")
    p.add_argument("--only", nargs="+", default=None,
                   help="run only the variants whose name contains one of these strings (e.g. sdpa fused compiled)")
    p.add_argument("--no-peers", action="store_true", help="do not time the peer libraries (bench/peers.py)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if any(n < 1 for n in args.sizes) or args.reps < 1 or args.threads < 1:
        p.error("--sizes, --reps and --threads must be positive")
    args.sizes = sorted(set(args.sizes))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    variants = make_variants(args, device)
    if args.only:
        variants = [v for v in variants if any(part in v.name for part in args.only)]
    info = machine_info(device)
    print(f"machine: {info['cpu']} ({info['cpu_capability']}), {info['logical_cpus']} logical CPUs, "
          f"torch {info['torch']} with {info['torch_threads']} threads, device {device}, "
          f"load average {info['load_average_1_5_15']}")
    started = time.perf_counter()
    rows, skipped, matmul, history = [], [], {}, {}
    for n in args.sizes:
        size_rows, size_skipped, matmul[n] = bench_size(n, variants, history, args, device)
        rows += size_rows
        skipped += size_skipped
        summary = ", ".join(f"{r['variant']}/{r['mode'][0]} {1e3 * r['median_s']:.3g} ms" for r in size_rows)
        print(f"N={n}: matmul {matmul[n]['flops_per_s'] / 1e9:.0f} GFLOP/s; {summary}", flush=True)
    pairs = [(v.name, "sdpa_torch_causal" if "causal" in v.name else "sdpa_torch")
             for v in variants if v.name.startswith("favor")]
    crossovers = {f"{a} vs {b}" + ("" if mode == "forward" else f" ({mode})"): crossover(rows, a, b, mode)
                  | {"mode": mode} for mode in args.modes for a, b in pairs}
    targets = check_targets(rows, crossovers)
    targets += [t | {"target": t["target"] + " [fused]"} for t in check_targets(rows, crossovers, suffix="_fused")
                if "scan alone" not in t["target"]]
    targets += peer_targets(rows)
    if args.compare_module is not None:
        targets += [t | {"target": t["target"] + " [compared module]"}
                    for t in check_targets(rows, crossovers, suffix="_compared")]
    mm_all = sorted(m["flops_per_s"] for m in matmul.values())
    report = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "config": {"batch": BATCH, "heads": HEADS, "head_dim": HEAD_DIM, "dtype": "float32",
                   **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}},
        "machine": info,
        "load_average_after": machine_info(device)["load_average_1_5_15"],
        "elapsed_s": time.perf_counter() - started,
        "variants": {v.name: v.label for v in variants},
        "matmul": {"size": args.matmul_size, "median_flops_per_s": mm_all[len(mm_all) // 2],
                   "per_n": {str(n): m for n, m in matmul.items()}},
        "results": rows,
        "skipped": skipped,
        "peers": {"timed": sorted(v.name for v in variants if v.name.startswith("peer_")),
                  "unavailable": {} if args.no_peers else peers.unavailable()},
        "crossover": crossovers,
        "targets": targets,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, png_path, md_path = args.out / "attention.json", args.out / "attention.png", args.out / "attention.md"
    json_path.write_text(json.dumps(report, indent=1))
    from bench.plots import plot_attention_benchmark
    title = (f"B={BATCH}, H={HEADS}, D={HEAD_DIM}, float32, {device}; {info['cpu']}, torch threads "
             f"{info['torch_threads']}, load {info['load_average_1_5_15']}")
    fig = plot_attention_benchmark(rows, report["variants"], title)
    fig.savefig(png_path, dpi=110)
    md_path.write_text(markdown_tables(rows, report["variants"], args.sizes) + "\n"
                       + "\n".join(peer_lines(rows, args.sizes, report["peers"]["unavailable"])) + "\n")
    if args.profile_n:
        (args.out / f"profile_{args.profile_n}.txt").write_text(profile_tables(variants, args.profile_n, device,
                                                                               args.seed))
    print(md_path.read_text())
    for c in crossovers.values():
        print("crossover:", c["text"], f"({c['mode']})")
    for t in targets:
        verdict = {True: "MET", False: "MISSED", None: "not measured"}[t["met"]]
        value = "–" if t["value"] is None else f"{t['value']:.3g}"
        print(f"target: {t['target']}: {value} {t['op']} {t['threshold']} -> {verdict}")
    print(f"matmul throughput (median over sizes): {report['matmul']['median_flops_per_s'] / 1e9:.1f} GFLOP/s")
    print(f"wrote {json_path}, {png_path}, {md_path} in {report['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
