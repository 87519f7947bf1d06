"""Reading the benchmark rows: crossover N, memory growth, the performance targets, and the markdown tables."""

from __future__ import annotations

import math

TARGET_N = 8192


def find(rows: list[dict], variant: str, mode: str, n: int) -> dict | None:
    """The result row of (variant, mode, n), or None when it was not measured."""
    return next((r for r in rows if r["variant"] == variant and r["mode"] == mode and r["n"] == n), None)


def crossover(rows: list[dict], linear: str, softmax: str, mode: str = "forward") -> dict:
    """Smallest N from which `linear` is faster than `softmax` at every larger measured N (log-log interpolation).

    Returns {"n": estimate or None, "bracket": [N below, N at or above], "text": summary}.
    """
    ns = sorted(r["n"] for r in rows if r["variant"] == linear and r["mode"] == mode
                and find(rows, softmax, mode, r["n"]) is not None)
    if not ns:
        return {"n": None, "bracket": None, "text": f"{linear} vs {softmax}: no common sizes"}
    ratio = {n: find(rows, softmax, mode, n)["median_s"] / find(rows, linear, mode, n)["median_s"] for n in ns}
    first = None
    for i, n in enumerate(ns):
        if all(ratio[m] > 1 for m in ns[i:]):
            first = i
            break
    if first is None:
        return {"n": None, "bracket": [ns[-1], None], "text": f"{linear} is not faster than {softmax} up to N={ns[-1]}"}
    if first == 0:
        return {"n": None, "bracket": [None, ns[0]], "text": f"{linear} is faster than {softmax} already at N={ns[0]}"}
    lo, hi = ns[first - 1], ns[first]
    t = math.log(ratio[lo]) / (math.log(ratio[lo]) - math.log(ratio[hi]))      # log ratio crosses 0
    estimate = math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))
    return {"n": round(estimate), "bracket": [lo, hi],
            "text": f"{linear} overtakes {softmax} at N ~ {estimate:.0f} (between {lo} and {hi})"}


def memory_slope(rows: list[dict], variant: str, mode: str = "forward", n_min: int = 1024) -> float | None:
    """Least-squares slope of log(peak memory) vs log(N) for N >= n_min (1 = linear growth, 2 = quadratic)."""
    pts = [(math.log(r["n"]), math.log(r["peak_bytes"])) for r in rows
           if r["variant"] == variant and r["mode"] == mode and r["n"] >= n_min and r["peak_bytes"] > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def check_targets(rows: list[dict], crossovers: dict, n: int = TARGET_N, suffix: str = "") -> list[dict]:
    """The performance targets of the linear-time attention, evaluated on the measured rows (met: None when not
    measured). At N = TARGET_N: FAVOR+ (m = 256 features) at least 10x faster than torch's SDPA and faster from
    N <= 2048 on, its peak memory growing about linearly in N; the chunked causal scan at least 5x faster than causal
    SDPA, within 64 MiB of extra memory and at least half as efficient as the machine's matmul probe.

    Forward + backward at N = TARGET_N / 2: FAVOR+ faster than SDPA, the causal scan no slower than causal SDPA.

    suffix: "_compared" evaluates the variants of --compare-module instead, "_fused" the fused fast path.
    """
    def ratio(slow, fast, mode="forward", n=n):
        a, b = find(rows, slow, mode, n), find(rows, fast, mode, n)
        return a["median_s"] / b["median_s"] if a and b else None

    def row_value(variant, key):
        r = find(rows, variant, "forward", n)
        return r.get(key) if r else None

    lin, chunked, scan = (f"favor256_{kind}{suffix}" for kind in ("linear", "causal_chunked", "causal_scan"))
    cross = crossovers.get(f"{lin} vs sdpa_torch", {})
    lo, hi = cross.get("bracket") or (None, None)
    cross_n = cross.get("n") or hi                            # estimate, or the smallest N when faster everywhere
    if lo is not None and hi is None:                         # never faster up to the largest N measured
        cross_n = math.inf if lo >= 2048 else None
    targets = [
        ("FAVOR+ m=256 speed-up over torch SDPA at N=%d" % n, ratio("sdpa_torch", lin), ">=", 10),
        ("FAVOR+ m=256 crossover N vs torch SDPA", cross_n, "<=", 2048),
        ("FAVOR+ m=256 peak-memory growth exponent (log-log slope, N>=1024)", memory_slope(rows, lin), "<=", 1.15),
        ("causal chunked m=256 speed-up over causal torch SDPA at N=%d" % n, ratio("sdpa_torch_causal", chunked),
         ">=", 5),
        ("causal chunked m=256 (features + scan) peak extra memory at N=%d, MiB" % n,
         mib(row_value(chunked, "peak_bytes")), "<=", 64),
        ("causal chunked scan alone peak extra memory at N=%d, MiB" % n, mib(row_value(scan, "peak_bytes")), "<=", 64),
        ("causal chunked m=256 (features + scan) fraction of matmul throughput at N=%d" % n,
         row_value(chunked, "fraction_of_matmul"), ">=", 0.5),
        ("causal chunked scan alone fraction of matmul throughput at N=%d" % n,
         row_value(scan, "fraction_of_matmul"), ">=", 0.5),
        ("FAVOR+ m=256 forward + backward speed-up over torch SDPA at N=%d" % (n // 2),
         ratio("sdpa_torch", lin, "backward", n // 2), ">=", 1),
        ("causal chunked m=256 forward + backward speed-up over causal torch SDPA at N=%d" % (n // 2),
         ratio("sdpa_torch_causal", chunked, "backward", n // 2), ">=", 1),
    ]
    out = []
    for name, value, op, threshold in targets:
        met = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
        out.append({"target": name, "value": value, "op": op, "threshold": threshold, "met": met})
    return out


def num(x: float) -> str:
    """3 significant digits, without an exponent for large values (1234.5 -> "1234")."""
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def mib(nbytes: float | None) -> float | None:
    return None if nbytes is None else nbytes / 2**20


def summary_table(rows: list[dict], sizes: list[int]) -> list[str]:
    """The README's table (forward): times of the main variants, speed-ups over SDPA, peak memory, % of matmul."""
    def ms(name, n):
        r = find(rows, name, "forward", n)
        return num(1e3 * r["median_s"]) if r else "–"

    def ratio(slow, fast, n):
        a, b = find(rows, slow, "forward", n), find(rows, fast, "forward", n)
        return f"{a['median_s'] / b['median_s']:.2g}×" if a and b else "–"

    def mem(name, n):
        r = find(rows, name, "forward", n)
        return num(r["peak_bytes"] / 2**20) if r else "–"

    def frac(name, n):
        r = find(rows, name, "forward", n)
        return f"{100 * r['fraction_of_matmul']:.0f}%" if r and "fraction_of_matmul" in r else "–"

    lines = ["| N | SDPA | SDPA causal | module softmax | FAVOR+ m=64 | FAVOR+ m=256 | causal chunked m=256 "
             "| FAVOR+ m=256 fused | causal fused m=256 "
             "| SDPA / FAVOR+256 | SDPA causal / chunked | SDPA / fused | SDPA causal / causal fused "
             "| MiB: SDPA | MiB: module softmax | MiB: FAVOR+256 "
             "| MiB: causal chunked | MiB: scan only | MiB: fused | MiB: causal fused "
             "| %mm FAVOR+256 | %mm chunked | %mm scan only | %mm fused | %mm causal fused |",
             "|---:|" + "---:|" * 24]
    for n in sizes:
        cells = [ms("sdpa_torch", n), ms("sdpa_torch_causal", n), ms("softmax_module", n), ms("favor64_linear", n),
                 ms("favor256_linear", n), ms("favor256_causal_chunked", n), ms("favor256_linear_fused", n),
                 ms("favor256_causal_chunked_fused", n),
                 ratio("sdpa_torch", "favor256_linear", n), ratio("sdpa_torch_causal", "favor256_causal_chunked", n),
                 ratio("sdpa_torch", "favor256_linear_fused", n),
                 ratio("sdpa_torch_causal", "favor256_causal_chunked_fused", n),
                 mem("sdpa_torch", n), mem("softmax_module", n), mem("favor256_linear", n),
                 mem("favor256_causal_chunked", n), mem("favor256_causal_scan", n), mem("favor256_linear_fused", n),
                 mem("favor256_causal_chunked_fused", n), frac("favor256_linear", n),
                 frac("favor256_causal_chunked", n), frac("favor256_causal_scan", n),
                 frac("favor256_linear_fused", n), frac("favor256_causal_chunked_fused", n)]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def markdown_tables(rows: list[dict], labels: dict[str, str], sizes: list[int]) -> str:
    """Markdown tables: median time (ms), peak extra memory (MiB), speed-ups and fractions of matmul throughput.

    labels: variant name -> column title, in column order.
    """
    lines = ["**summary (forward; times in ms, medians; peak extra memory in MiB; %mm: achieved FLOP/s as a "
             "fraction of the matmul probe's)**", "", *summary_table(rows, sizes), ""]
    modes = [m for m in ("forward", "backward") if any(r["mode"] == m for r in rows)]
    for mode in modes:
        names = [v for v in labels if any(r["variant"] == v and r["mode"] == mode for r in rows)]
        for title, fmt in (("median time per call, ms", lambda r: num(1e3 * r["median_s"])),
                           ("peak extra memory, MiB", lambda r: num(r["peak_bytes"] / 2**20))):
            lines += [f"**{mode}: {title}**", "", "| N | " + " | ".join(labels[v] for v in names) + " |",
                      "|---:|" + "---:|" * len(names)]
            for n in sizes:
                cells = [fmt(r) if (r := find(rows, v, mode, n)) else "–" for v in names]
                if any(c != "–" for c in cells):
                    lines.append(f"| {n} | " + " | ".join(cells) + " |")
            lines.append("")
    pairs = [(v, "sdpa_torch_causal" if "causal" in v else "sdpa_torch") for v in labels if v.startswith("favor")]
    lines += ["**forward: speed-up over torch SDPA (causal variants: over causal SDPA); fraction of matmul "
              "throughput**", "", "| N | " + " | ".join(f"{a} ×" for a, _ in pairs) + " | "
              + " | ".join(f"{a} %mm" for a, _ in pairs) + " |", "|---:|" + "---:|" * 2 * len(pairs)]
    for n in sizes:
        speed = []
        for a, b in pairs:
            ra, rb = find(rows, a, "forward", n), find(rows, b, "forward", n)
            speed.append(f"{rb['median_s'] / ra['median_s']:.2g}" if ra and rb else "–")
        frac = [f"{100 * r['fraction_of_matmul']:.0f}%" if (r := find(rows, a, "forward", n)) else "–"
                for a, _ in pairs]
        lines.append(f"| {n} | " + " | ".join(speed + frac) + " |")
    return "\n".join(lines) + "\n"


# Ours against the fastest peer library (bench/peers.py): (our variant, the peers' variant suffix).
PEER_PAIRS = (("favor256_linear_fused", "256_linear"), ("favor256_causal_chunked_fused", "256_causal"))


def fastest_peer(rows: list[dict], suffix: str, mode: str, n: int) -> dict | None:
    """The fastest peer row (variant peer_<library><suffix>) at (mode, n), or None when no peer was timed."""
    found = [r for r in rows if r["variant"].startswith("peer_") and r["variant"].endswith(suffix)
             and r["mode"] == mode and r["n"] == n]
    return min(found, key=lambda r: r["median_s"], default=None)


def peer_targets(rows: list[dict], n: int = TARGET_N, n_min: int = 1024) -> list[dict]:
    """Goals against the peers, per pair of PEER_PAIRS (forward): at N = n at least 2x faster than the fastest peer;
    never slower from N = n_min on (the smallest speed-up over N >= n_min at least 1); peak extra memory at N = n at
    most the fastest peer's (ratio ours / peer <= 1)."""
    out = []
    for ours, suffix in PEER_PAIRS:
        def speedup(m):
            a, b = fastest_peer(rows, suffix, "forward", m), find(rows, ours, "forward", m)
            return a["median_s"] / b["median_s"] if a and b else None
        ns = sorted({r["n"] for r in rows if r["variant"] == ours and r["mode"] == "forward" and r["n"] >= n_min})
        speedups = [x for x in map(speedup, ns) if x is not None]
        peer, mine = fastest_peer(rows, suffix, "forward", n), find(rows, ours, "forward", n)
        memory = mine["peak_bytes"] / peer["peak_bytes"] if peer and mine and peer["peak_bytes"] else None
        for name, value, op, threshold in (
                (f"{ours} speed-up over the fastest peer at N={n}", speedup(n), ">=", 2),
                (f"{ours} smallest speed-up over the fastest peer from N={n_min}", min(speedups, default=None),
                 ">=", 1),
                (f"{ours} peak extra memory / the fastest peer's at N={n}", memory, "<=", 1)):
            met = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
            out.append({"target": name, "value": value, "op": op, "threshold": threshold, "met": met})
    return out


def faults(row: dict) -> str:
    """The row's minor page faults per call, or '–' for rows measured before they were recorded."""
    return f"{row['minor_faults']:.0f}" if row.get("minor_faults") is not None else "–"


def peer_lines(rows: list[dict], sizes: list[int], unavailable: dict[str, str]) -> list[str]:
    """Markdown: ours beside the fastest peer per N (forward and forward + backward), the ratio columns, and the
    peers that were not timed with the reason."""
    lines = ["**ours vs the fastest peer library (bench/peers.py); times in ms, memory in MiB; × = peer / ours; "
             "faults: minor page faults per timed call (median; a fresh page costs time that no arithmetic explains)**",
             ""]
    for mode in ("forward", "backward"):
        lines += [f"*{mode}*", "", "| N | pair | ours | fastest peer | peer ms | × time | ours MiB | peer MiB "
                  "| × memory | faults ours | faults peer |", "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for n in sizes:
            for ours, suffix in PEER_PAIRS:
                mine, peer = find(rows, ours, mode, n), fastest_peer(rows, suffix, mode, n)
                if not (mine and peer):
                    continue
                lines.append(f"| {n} | {suffix.split('_', 1)[1]} | {num(1e3 * mine['median_s'])} | {peer['variant']} "
                             f"| {num(1e3 * peer['median_s'])} | {peer['median_s'] / mine['median_s']:.2f} "
                             f"| {num(mib(mine['peak_bytes']))} | {num(mib(peer['peak_bytes']))} "
                             f"| {peer['peak_bytes'] / max(mine['peak_bytes'], 1):.2f} "
                             f"| {faults(mine)} | {faults(peer)} |")
        lines.append("")
    lines += [f"- {peer}: not timed: {why}" for peer, why in unavailable.items()]
    return lines
