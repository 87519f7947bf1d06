"""Plots of the attention benchmark: time and peak extra memory vs sequence length, log-log."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODES = ("forward", "backward")
MODE_TITLES = {"forward": "forward", "backward": "forward + backward"}


def plot_attention_benchmark(results: list[dict], labels: dict[str, str], title: str = ""):
    """Figure with time (left) and peak extra memory (right) vs N, one row per mode present, log-log axes.

    results: rows with keys variant, mode, n, median_s, q25_s, q75_s, peak_bytes; labels: variant -> legend text.
    Returns the matplotlib Figure.
    """
    modes = [m for m in MODES if any(r["mode"] == m for r in results)] or ["forward"]
    fig, axes = plt.subplots(len(modes), 2, figsize=(12, 4.2 * len(modes)), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    colors = {name: cmap(i % cmap.N) for i, name in enumerate(labels)}
    for row, mode in enumerate(modes):
        ax_time, ax_mem = axes[row]
        for name, label in labels.items():
            rows = sorted((r for r in results if r["variant"] == name and r["mode"] == mode), key=lambda r: r["n"])
            if not rows:
                continue
            ns = [r["n"] for r in rows]
            med = [r["median_s"] for r in rows]
            err = [[m - r["q25_s"] for m, r in zip(med, rows)], [r["q75_s"] - m for m, r in zip(med, rows)]]
            style = ":" if name.endswith("_compared") else "--" if "causal" in name else "-"
            ax_time.errorbar(ns, med, yerr=err, fmt="o" + style, ms=3, capsize=2, color=colors[name], label=label)
            mem = [(r["n"], r["peak_bytes"] / 2**20) for r in rows if r.get("peak_bytes") is not None]
            if mem:
                ax_mem.plot(*zip(*mem), "o" + style, ms=3, color=colors[name], label=label)
        for ax, ylabel in ((ax_time, "time per call (s): median, bars: quartiles"),
                           (ax_mem, "peak extra memory (MiB)")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("sequence length N")
            ax.set_ylabel(ylabel)
            ax.set_title(MODE_TITLES[mode])
            ax.grid(True, which="both", alpha=0.3)
        ax_time.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
