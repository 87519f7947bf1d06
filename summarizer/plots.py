"""Plots of Summarization.ipynb that helper.py does not have (attention maps, masks, positional encodings and training
curves come from helper.py). Every function returns the matplotlib Figure (works under the Agg backend).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def rouge_bars(table, title: str = "ROUGE F1 on the test subset") -> Figure:
    """Grouped bars of a DataFrame with one row per system and ROUGE-1/2/L columns (not registered with pyplot)."""
    fig = Figure(figsize=(max(6, 1.4 * len(table)), 3.8), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(table.columns)
    x = np.arange(len(table))
    for j, col in enumerate(table.columns):
        ax.bar(x + j * width, table[col].to_numpy(), width, label=col)
    ax.set_xticks(x + width * (len(table.columns) - 1) / 2, table.index, rotation=20, ha="right", fontsize=8)
    ax.set(title=title, ylabel="F1 x 100")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return fig
