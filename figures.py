"""The figures the notebooks show: attention weights, the diagonal weight of Q = K, masks, positional encodings
(question 1), training curves and ROUGE bars (the summarizer), attention statistics per head and one word compared
across two sentences (question 2). The question 3(a)iii plots live with their experiment in helper.py.

One convention: every function takes the data, returns a matplotlib Figure and never calls plt.show. The Figure is
not registered with pyplot (nothing leaks between calls, works headless under Agg); a notebook shows it when it is a
cell's last expression, or with `display(fig)`. helper.py's plots follow the same convention.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot  # noqa: F401  (pyplot's backend; with %matplotlib inline, display(fig) draws a PNG)
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Patch
from matplotlib.textpath import TextToPath
from matplotlib.ticker import MaxNLocator
from torch import Tensor

__all__ = [
    "panel_grid",
    "plot_attention_weights",
    "plot_diagonal_weight",
    "plot_mask",
    "plot_positional_encoding",
    "relative_position_similarity",
    "plot_relative_position_similarity",
    "plot_training_curves",
    "rouge_bars",
    "plot_head_statistics",
    "plot_sentence_comparison",
]


def panel_grid(n_panels: int, panel_size: tuple[float, float], n_cols: int | None = None):
    """A Figure (not registered with pyplot) with n_panels axes in a grid; returns (figure, list of axes)."""
    n_cols = min(n_panels, 4) if n_cols is None else n_cols
    n_rows = math.ceil(n_panels / n_cols)
    fig = Figure(figsize=(panel_size[0] * n_cols, panel_size[1] * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes[:n_panels])


# ----------------------------------------------------------------------------------------------------------------------
# Question 1: attention weights, masks, positional encodings
# ----------------------------------------------------------------------------------------------------------------------


def _as_panels(x, name: str) -> np.ndarray:
    """Tensor / array (..., N_q, N_k) -> numpy (P, N_q, N_k): leading size-1 dims dropped, a 1-D input becomes one
    row; more than one leading dim of size > 1 is an error (pick a batch element first)."""
    array = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if array.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension, got a scalar")
    if array.ndim == 1:
        array = array[None, :]
    lead = [n for n in array.shape[:-2] if n != 1]
    if len(lead) > 1:
        raise ValueError(f"{name} of shape {array.shape} has several leading dims > 1; pass (N_q, N_k) or "
                         "(panels, N_q, N_k), e.g. weights[0] for the first batch element")
    return array.reshape(-1, *array.shape[-2:])


_TICK_FONTSIZE = 8
_CHAR_INCHES = 0.6 * _TICK_FONTSIZE / 72    # width of one tick-label character, about
_MAX_SIDE = 7.0                             # inches: the longer side of a matrix panel at most
_CELL = 0.32                                # inches per row / column when the matrix is small enough
_ANNOTATED_CELL = 0.42                      # larger cells when every value is written in its cell
_ANNOTATION_FONTSIZE = 7.0                  # points, at most
_MIN_ANNOTATION_FONTSIZE = 5.0              # below this, cells are left without values


def _label_axes(ax, labels, axis: str, size: int) -> None:
    if labels is None:
        return
    labels = list(labels)
    if len(labels) != size:
        raise ValueError(f"{len(labels)} {axis} labels for a matrix with {size} {axis}s")
    fontsize = _TICK_FONTSIZE if size <= 30 else 6
    if axis == "key":
        ax.set_xticks(range(size), labels, rotation=90, fontsize=fontsize)
    else:
        ax.set_yticks(range(size), labels, fontsize=fontsize)


def _label_inches(labels, default_chars: int) -> float:
    """About how far tick labels reach out from their axis (inches)."""
    chars = max((len(str(s)) for s in labels), default=0) if labels is not None else default_chars
    return chars * _CHAR_INCHES


def _matrix_panels(panels: np.ndarray, query_labels, key_labels, title, panel_titles, imshow_kwargs,
                   xlabel: str, ylabel: str, cell: float = _CELL, right: float = 1.0):
    """Shared body of plot_attention_weights and plot_mask: one image per panel, columns (keys) on x, rows (queries)
    on y. Each panel is sized to the matrix's aspect (cell inches per row and column, the longer side at most
    _MAX_SIDE), plus room for the tick labels, axis labels and titles; `right`: inches for a colour bar or legend."""
    if panel_titles is not None and len(panel_titles) != len(panels):
        raise ValueError(f"{len(panel_titles)} panel_titles for {len(panels)} panels")
    n_q, n_k = panels.shape[1:]
    cell = min(cell, _MAX_SIDE / max(n_q, n_k))
    left = 0.35 + _label_inches(query_labels, len(str(n_q - 1)))               # ylabel + row tick labels
    below = 0.35 + (_label_inches(key_labels, 0) if key_labels is not None else 0.2)   # xlabel + column ticks
    above = 0.3 if panel_titles is not None else 0.1
    n_cols = min(len(panels), 4)
    panel = (n_k * cell + left + 0.15, n_q * cell + below + above)
    fig, axes = panel_grid(len(panels), panel, n_cols)
    fig.set_size_inches(panel[0] * n_cols + right, fig.get_size_inches()[1] + (0.4 if title else 0.0))
    for p, (ax, matrix) in enumerate(zip(axes, panels)):
        image = ax.imshow(matrix, **imshow_kwargs)
        _label_axes(ax, key_labels, "key", n_k)
        _label_axes(ax, query_labels, "query", n_q)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        if panel_titles is not None:
            ax.set_title(str(panel_titles[p]))
    if title:
        fig.suptitle(title)
    return fig, axes, image


def _colour_range(panels: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float, np.ndarray]:
    """(vmin, vmax, colour-bar ticks): a range not given is widened to round tick values (0 .. 1 for weights), so
    both ends of the colour bar carry a tick label."""
    lo = float(np.nanmin(panels)) if vmin is None else float(vmin)
    hi = float(np.nanmax(panels)) if vmax is None else float(vmax)
    if not hi > lo:
        lo, hi = (lo - 0.5, hi + 0.5) if vmin is None and vmax is None else (lo, lo + 1.0)
    ticks = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    lo = ticks[0] if vmin is None else lo
    hi = ticks[-1] if vmax is None else hi
    ticks = ticks[(ticks >= lo - 1e-9 * (hi - lo)) & (ticks <= hi + 1e-9 * (hi - lo))]
    return lo, hi, ticks


def _annotation_texts(matrix: np.ndarray) -> list[str]:
    """Each value with 2 decimals, or 1 when some value reaches 1 in magnitude (keeps the strings short)."""
    decimals = 2 if np.nanmax(np.abs(matrix)) < 1 else 1
    return [f"{value:.{decimals}f}" for value in matrix.ravel()]


def _annotate(fig: Figure, axes, panels: np.ndarray, middle: float) -> None:
    """Write every value in its cell, at the largest font size (at most 7 pt) whose widest string fills 85 % of a
    cell; nothing when that would be below 5 pt. The cells' size is read from the laid-out figure."""
    fig.draw_without_rendering()                                        # runs the constrained layout
    measure = TextToPath()
    for ax, matrix in zip(axes, panels):
        texts = _annotation_texts(matrix)
        box = ax.get_window_extent()
        cell_points = min(box.width / matrix.shape[1], box.height / matrix.shape[0]) * 72 / fig.dpi
        widest = max(measure.get_text_width_height_descent(s, FontProperties(size=10), ismath=False)[0] / 10
                     for s in texts)                                     # points per point of font size
        fontsize = min(_ANNOTATION_FONTSIZE, 0.85 * cell_points / widest, 0.6 * cell_points)
        if fontsize < _MIN_ANNOTATION_FONTSIZE:
            continue
        for ((i, j), value), text in zip(np.ndenumerate(matrix), texts):
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="black" if value > middle else "white")


def plot_attention_weights(weights, query_labels: Sequence[str] | None = None,
                           key_labels: Sequence[str] | None = None, title: str | None = None,
                           panel_titles: Sequence[str] | None = None, annotate: bool | None = None,
                           cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
                           xlabel: str = "key", ylabel: str = "query") -> Figure:
    """Heat map of attention weights, or of any matrix (values, outputs, a linear map): columns on x, rows on y.

    weights: (N_q, N_k), or (P, N_q, N_k) for P panels (e.g. heads), leading size-1 dims allowed; tensor or array.
    query_labels (N_q) / key_labels (N_k): tick labels of the rows / columns (token strings). xlabel / ylabel: what
    the columns / rows are (default "key" / "query", right for attention weights; say e.g. "value dimension" /
    "token" for a matrix of values). annotate: write each value in its cell (default: when the matrix is at most
    12 x 12), at a font size that fits the cell, or not at all when the cells are too small for legible text.
    vmin / vmax: colour range (default: the data range, widened to round tick values).
    """
    panels = _as_panels(weights, "weights").astype(float)
    annotate = max(panels.shape[1:]) <= 12 if annotate is None else annotate
    vmin, vmax, ticks = _colour_range(panels, vmin, vmax)
    fig, axes, image = _matrix_panels(panels, query_labels, key_labels, title, panel_titles,
                                      {"cmap": cmap, "vmin": vmin, "vmax": vmax}, xlabel, ylabel,
                                      cell=_ANNOTATED_CELL if annotate else _CELL)
    fig.colorbar(image, ax=axes, shrink=0.8, ticks=ticks)
    if annotate:
        _annotate(fig, axes, panels, middle=(vmin + vmax) / 2)
    return fig


def plot_diagonal_weight(dims: Sequence[int], diagonal: Sequence[float], n_tokens: int,
                         title: str = "Q = K") -> Figure:
    """Mean attention weight a_ii of each token on itself when Q = K, against the width D (log scale), with the
    uniform weight 1 / N for comparison. dims (P,) and diagonal (P,): the measured (D, mean a_ii) pairs."""
    if len(dims) != len(diagonal) or not len(dims):
        raise ValueError(f"dims and diagonal must be non-empty and of one length, got {len(dims)} and {len(diagonal)}")
    fig, (ax,) = panel_grid(1, (6.0, 3.5))
    ax.semilogx(dims, diagonal, "o-", base=2)
    ax.axhline(1 / n_tokens, ls="--", color="gray", label="uniform 1/N")
    ax.set(xlabel="dimension D", ylabel="mean weight on the diagonal", title=f"{title}, N = {n_tokens} tokens")
    ax.legend()
    return fig


def plot_mask(mask, query_labels: Sequence[str] | None = None, key_labels: Sequence[str] | None = None,
              title: str | None = None, panel_titles: Sequence[str] | None = None, xlabel: str = "key",
              ylabel: str = "query") -> Figure:
    """Picture of a boolean attention mask (True = may attend, drawn dark; False = blocked, light).

    mask: (N_q, N_k), (P, N_q, N_k) for P panels (e.g. the batch of a padding mask), broadcast shapes with size-1
    dims such as (B, 1, 1, N_k) -> one row per batch element; a 1-D (N_k,) mask is drawn as one row.
    xlabel / ylabel: what the columns / rows are (default "key" / "query"; e.g. "article" for the rows of a
    padding mask). The figure has the mask's aspect: a (4, 48) padding mask is a wide, low strip.
    """
    array = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    if array.dtype != bool:
        raise ValueError(f"mask must be boolean (True = may attend), got dtype {array.dtype}; use mask.bool()")
    if array.ndim == 4 and array.shape[1:3] == (1, 1):                   # padding mask (B, 1, 1, N_k): a row each
        array = array[:, 0, 0, :]
    panels = _as_panels(array, "mask").astype(float)
    cmap = ListedColormap(["#f1f1f1", "#2b5f9e"])
    fig, axes, _ = _matrix_panels(panels, query_labels, key_labels, title, panel_titles,
                                  {"cmap": cmap, "vmin": 0, "vmax": 1}, xlabel, ylabel, right=1.5)
    for ax in axes:
        ax.set_xticks(np.arange(-0.5, panels.shape[2], 1), minor=True)
        ax.set_yticks(np.arange(-0.5, panels.shape[1], 1), minor=True)
        ax.tick_params(which="minor", length=0)
        ax.grid(which="minor", color="white", lw=0.5)
    axes[-1].legend(handles=[Patch(color="#2b5f9e", label="True: may attend"),
                             Patch(color="#f1f1f1", label="False: blocked")],
                    loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    return fig


def _check_encoding(encoding) -> np.ndarray:
    array = encoding.detach().cpu().double().numpy() if isinstance(encoding, Tensor) else np.asarray(encoding, float)
    if array.ndim != 2:
        raise ValueError(f"encoding must have shape (n_positions, d_model), got {array.shape}")
    return array


def plot_positional_encoding(encoding, dims: Sequence[int] | None = None, title: str | None = None) -> Figure:
    """Positional encodings p_t (n_positions, d_model): the matrix as an image (position x dimension) and a few
    dimensions as curves over t (default: the sine dims 0, ~d/8, ~d/4, ~d/2 -- fast to slow sinusoids)."""
    array = _check_encoding(encoding)
    n_positions, d_model = array.shape
    if dims is None:                                                     # sin components, fast to slow
        dims = sorted({2 * (d_model // 2 // f) for f in (d_model, 8, 4, 2)} - {d_model})
    if any(not 0 <= i < d_model for i in dims):
        raise ValueError(f"dims {dims} out of range for d_model={d_model}")
    fig, (image_ax, curve_ax) = panel_grid(2, (5.0, 3.6))
    image = image_ax.imshow(array, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    image_ax.set(xlabel="dimension", ylabel="position t", title="p_t")
    fig.colorbar(image, ax=image_ax, shrink=0.8)
    t = np.arange(n_positions)
    for i in dims:
        curve_ax.plot(t, array[:, i], label=f"dim {i}")
    curve_ax.set(xlabel="position t", ylabel="value", title="some dimensions of p_t")
    curve_ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def relative_position_similarity(encoding, starts: Sequence[int] = (0,), max_offset: int | None = None) -> np.ndarray:
    """Dot products p_t . p_{t+k} for each start t in `starts` and k = 0 .. max_offset (question 1(c)).

    encoding (n_positions, d_model); max_offset defaults to the largest k valid for every start.
    Returns (len(starts), max_offset + 1).
    === BEGIN INSTRUCTOR ONLY ===
    For sinusoidal encodings every row is the same function of k alone, sum_i cos(k w_i): the similarity depends on
    the relative position only.
    === END INSTRUCTOR ONLY ===
    """
    array = _check_encoding(encoding)
    starts = list(starts)
    if not starts or min(starts) < 0 or max(starts) >= len(array):
        raise ValueError(f"starts {starts} must be non-empty positions in [0, {len(array) - 1}]")
    limit = len(array) - 1 - max(starts)
    max_offset = limit if max_offset is None else max_offset
    if not 0 <= max_offset <= limit:
        raise ValueError(f"max_offset={max_offset} needs positions up to {max(starts) + max_offset}, but the encoding "
                         f"has {len(array)} positions")
    return np.stack([array[t + np.arange(max_offset + 1)] @ array[t] for t in starts])


def plot_relative_position_similarity(encoding, starts: Sequence[int] = (0, 10, 25), max_offset: int | None = None,
                                      title: str | None = None) -> Figure:
    """p_t . p_{t+k} vs the offset k, one curve per start t (relative_position_similarity), question 1(c)."""
    similarity = relative_position_similarity(encoding, starts, max_offset)
    fig, (ax,) = panel_grid(1, (6.0, 3.6))
    offsets = np.arange(similarity.shape[1])
    for t, row, style in zip(starts, similarity, ["-", "--", ":", "-."] * len(similarity)):
        ax.plot(offsets, row, style, lw=1.8, label=f"t = {t}")
    ax.set(xlabel="offset k", ylabel="p_t . p_{t+k}", title=title or "similarity of positions k apart")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------------------------------------------------
# The summarizer: training curves and ROUGE scores
# ----------------------------------------------------------------------------------------------------------------------


def _curve(history, metric: str, x: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(x, y) points of one metric of one run, or None when the run lacks it. NaN values are dropped."""
    if isinstance(history, pd.DataFrame):
        if metric not in history.columns:
            return None
        xs = history[x].to_numpy(float) if x in history.columns else np.arange(1, len(history) + 1, dtype=float)
        ys = history[metric].to_numpy(float)
    elif isinstance(history, Mapping):
        if metric not in history:
            return None
        values = list(history[metric])
        if values and isinstance(values[0], (tuple, list)):             # [(x, y), ...]
            xs, ys = (np.asarray(c, dtype=float) for c in zip(*values))
        else:
            ys = np.asarray(values, dtype=float)
            common = history.get(x)
            same_length = common is not None and len(common) == len(ys)
            xs = np.asarray(common, float) if same_length else np.arange(1, len(ys) + 1, dtype=float)
    else:
        raise ValueError(f"a run must be a DataFrame or a mapping metric -> values, got {type(history).__name__}")
    keep = np.isfinite(ys)
    return xs[keep], ys[keep]


def plot_training_curves(runs: Mapping[str, object], metrics: Sequence[str] | None = None, x: str = "step",
                         title: str | None = None, ylabel: str = "loss", logy: bool = False) -> Figure:
    """Training / validation curves of several runs on one axes (e.g. {"softmax": h1, "performer": h2}).

    runs: run name -> history, a history being either a pandas DataFrame with an `x` column and one column per
    metric (NaN where a metric was not measured), or a mapping metric -> values, where values are a list of numbers
    (plotted against history[x] when it has the same length, else 1, 2, ...) or a list of (x, y) pairs.
    metrics: which to draw (default: every metric any run has, except x). One colour per run, one line style per
    metric (solid, dashed, ...).
    """
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError("runs must be a non-empty mapping run name -> history")
    if metrics is None:
        names = [list(h.columns) if isinstance(h, pd.DataFrame) else list(h) for h in runs.values()]
        metrics = [m for m in dict.fromkeys(n for group in names for n in group) if m != x]
    fig, (ax,) = panel_grid(1, (7.0, 4.0))
    styles = ["-", "--", ":", "-."]
    drawn = 0
    for color, (run, history) in zip(_colors(len(runs)), runs.items()):
        for m, metric in enumerate(metrics):
            points = _curve(history, metric, x)
            if points is not None and len(points[0]):
                ax.plot(*points, styles[m % len(styles)], color=color, marker="." if len(points[0]) < 30 else None,
                        label=f"{run} - {metric}")
                drawn += 1
    if not drawn:
        raise ValueError(f"none of the runs has any of the metrics {list(metrics)}")
    ax.set(xlabel=x, ylabel=ylabel, title=title or "training curves")
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _colors(n: int) -> list:
    """n distinct colours from matplotlib's default cycle (tab10; tab20 beyond 10)."""
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def rouge_bars(table, title: str = "ROUGE F1 on the test subset") -> Figure:
    """Grouped bars of a DataFrame with one row per system and ROUGE-1/2/L columns."""
    fig, (ax,) = panel_grid(1, (max(6, 1.4 * len(table)), 3.8))
    width = 0.8 / len(table.columns)
    x = np.arange(len(table))
    for j, col in enumerate(table.columns):
        ax.bar(x + j * width, table[col].to_numpy(), width, label=col)
    ax.set_xticks(x + width * (len(table.columns) - 1) / 2, table.index, rotation=20, ha="right", fontsize=8)
    ax.set(title=title, ylabel="F1 x 100")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return fig


# ----------------------------------------------------------------------------------------------------------------------
# Question 2: attention statistics per head
# ----------------------------------------------------------------------------------------------------------------------


def plot_head_statistics(stats_by_model: dict[str, dict], title: str = "Attention statistics per head") -> Figure:
    """Heat maps (layer x head) of each statistic, one row per model, shared colour scale per column (question 2).

    stats_by_model: {model name: visualizing_bert.mean_head_statistics(...) result}; statistics missing for a model
    are left blank. Layers (rows) and heads (columns) are counted from 0, as in bertviz: the tick labelled l sits on
    layer l (row l of the statistic).
    """
    names = [n for n in next(iter(stats_by_model.values())) if n != "uniform entropy"]
    n_layers = max(s[names[0]].shape[0] for s in stats_by_model.values())
    row_height = max(2.4, 0.12 * n_layers)
    fig = Figure(figsize=(2.6 * len(names) + 1, row_height * len(stats_by_model) + 0.6), layout="constrained")
    axes = fig.subplots(len(stats_by_model), len(names), squeeze=False)
    for col, name in enumerate(names):
        values = [s[name] for s in stats_by_model.values() if name in s]
        vmax = max(float(np.max(v)) for v in values) if name == "entropy" else 1.0
        for row, (model_name, stats) in enumerate(stats_by_model.items()):
            ax = axes[row, col]
            if name not in stats:
                ax.axis("off")
                continue
            image = ax.imshow(stats[name], vmin=0.0, vmax=vmax, cmap="viridis", aspect="auto")
            label = f"{name} (nats)" if name == "entropy" else f"attention {name}" if name.startswith("to") \
                else f"{name} weight"
            ax.set_title(f"{model_name}\n{label}", fontsize=8)
            ax.set_xlabel("head (from 0)")
            ax.set_ylabel("layer (from 0)")
            heads = range(stats[name].shape[1])
            layers = range(0, stats[name].shape[0], 1 if stats[name].shape[0] <= 12 else 3)
            ax.set_xticks(heads, [str(h) for h in heads])
            ax.set_yticks(layers, [str(layer) for layer in layers])
            ax.tick_params(labelsize=6)
            if row == len(stats_by_model) - 1:
                fig.colorbar(image, ax=axes[:, col], shrink=0.8)
    fig.suptitle(title)
    return fig


def plot_sentence_comparison(comparison, control, word: str) -> Figure:
    """One word in two sentences, layer by layer (question 2): the cosine similarity of its hidden states and the
    total-variation distance between its attention rows (mean over heads, and the largest head), next to a control
    pair whose meaning is the same.

    comparison, control: visualizing_bert.compare_sentences results (cosine (L + 1,): index 0 the embeddings, index
    l + 1 the output of layer l; attention_difference (L, H)). Layers are counted from 0, as in bertviz: the cosine
    after layer l and the attention difference of layer l are drawn at x = l, the embeddings at x = -1 (tick "emb").
    """
    layers = np.arange(comparison.attention_difference.shape[0])  # 0 .. L-1
    states = np.arange(-1, len(layers))  # -1 = the embeddings, then the output of each layer
    fig, (ax_cos, ax_att) = panel_grid(2, (5.0, 3.2))
    ax_cos.plot(states, comparison.cosine, marker="o", label="sentence a vs b")
    ax_cos.plot(states, control.cosine, marker="s", linestyle="--", label="control (same meaning)")
    ax_cos.set(xlabel="layer (from 0; emb = embeddings)", ylabel="cosine similarity after the layer",
               title=f"hidden state of '{word}'")
    ax_cos.set_xticks(states, ["emb"] + [str(layer) for layer in layers])
    ax_att.plot(layers, comparison.attention_difference.mean(1), marker="o", label="sentence a vs b, mean")
    ax_att.plot(layers, comparison.attention_difference.max(1), marker="^", linestyle=":",
                label="sentence a vs b, largest head")
    ax_att.plot(layers, control.attention_difference.mean(1), marker="s", linestyle="--", label="control, mean")
    ax_att.set(xlabel="layer (from 0)", ylabel="total-variation distance", title=f"attention row of '{word}'",
               ylim=(0, 1))
    ax_att.set_xticks(layers, [str(layer) for layer in layers])
    for ax in (ax_cos, ax_att):
        ax.set_xlim(-1.4, len(layers) - 0.6)  # the same x range in both panels, so the layers line up
        ax.legend(fontsize=7)
    return fig
