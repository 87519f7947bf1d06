"""figures.py: every notebook figure is a matplotlib Figure that renders headless to PNG, its layout follows the data,
and bad input is refused with a message that names it."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from support import assert_renders_to_png

import figures
import kernel_attention as ka


def _weights():
    """Softmax attention weights (6, 6) of seeded random queries and keys."""
    generator = torch.Generator().manual_seed(3)
    q, k = (torch.randn(6, 4, generator=generator, dtype=torch.float64) for _ in range(2))
    return ka.scaled_dot_product_attention(q, k, k, return_weights=True)[1]


TOKENS = ["the", "cat", "sat", "on", "a", "mat"]
HISTORY = pd.DataFrame({"step": [10, 20, 30, 40], "train_loss": [3.0, 2.5, 2.2, 2.0],
                        "val_loss": [np.nan, 2.7, np.nan, 2.4]})
ROUGE = pd.DataFrame({"ROUGE-1": [33.2, 38.4], "ROUGE-2": [15.0, 16.3], "ROUGE-L": [28.8, 35.0]},
                     index=["Lead-10", "model"])
HEAD_STATS = {"entropy": np.full((2, 3), 1.5), "to [CLS]": np.eye(2, 3), "uniform entropy": 2.0}


class Comparison:
    """The fields of visualizing_bert.compare_sentences that plot_sentence_comparison draws (3 layers, 2 heads)."""

    def __init__(self, shift: float):
        self.cosine = np.array([1.0, 0.9, 0.8, 0.7]) - shift
        self.attention_difference = np.array([[0.1, 0.3], [0.2, 0.4], [0.3, 0.5]]) + shift


PLOTS = {
    "attention_weights": lambda: figures.plot_attention_weights(_weights(), TOKENS, TOKENS, title="weights"),
    "attention_heads": lambda: figures.plot_attention_weights(torch.rand(1, 3, 5, 7), panel_titles=["a", "b", "c"]),
    "causal_mask": lambda: figures.plot_mask(ka.causal_mask(6), TOKENS, TOKENS, title="causal"),
    "padding_mask": lambda: figures.plot_mask(ka.padding_mask(torch.tensor([[True] * 6, [True] * 4 + [False] * 2]))),
    "positional_encoding": lambda: figures.plot_positional_encoding(ka.sinusoidal_positional_encoding(50, 32)),
    "relative_position": lambda: figures.plot_relative_position_similarity(ka.sinusoidal_positional_encoding(60, 16)),
    "training_curves": lambda: figures.plot_training_curves(
        {"softmax": HISTORY, "performer": {"train_loss": [3.1, 2.8, 2.6], "val_loss": [(20, 2.9), (40, 2.6)]}}),
    "rouge_bars": lambda: figures.rouge_bars(ROUGE),
    "head_statistics": lambda: figures.plot_head_statistics({"a": HEAD_STATS, "b": HEAD_STATS}),
    "diagonal_weight": lambda: figures.plot_diagonal_weight([1, 2, 4, 8], [0.2, 0.3, 0.5, 0.8], n_tokens=32),
    "sentence_comparison": lambda: figures.plot_sentence_comparison(Comparison(0.2), Comparison(0.0), "bank"),
}


@pytest.mark.parametrize("name", list(PLOTS))
def test_figure_renders_to_png_and_stays_out_of_pyplot(name, tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    assert_renders_to_png(PLOTS[name](), tmp_path / f"{name}.png")
    assert plt.get_fignums() == before                                   # never registered, never shown


def test_layouts_follow_the_data():
    heads = figures.plot_attention_weights(torch.rand(4, 5, 5))
    assert len([a for a in heads.axes if a.get_visible() and a.images]) == 4
    padding = figures.plot_mask(ka.padding_mask(torch.ones(3, 5, dtype=torch.bool)))
    assert padding.axes[0].images[0].get_array().shape == (3, 5)         # one row per batch element
    curves = figures.plot_training_curves({"a": HISTORY, "b": HISTORY})
    lines = curves.axes[0].get_lines()
    assert len(lines) == 4 and len(lines[1].get_xdata()) == 2            # NaN validation points dropped
    np.testing.assert_array_equal(lines[1].get_xdata(), [20, 40])
    bars = figures.rouge_bars(ROUGE)
    assert len(bars.axes[0].patches) == 2 * 3                            # a bar per (system, ROUGE score)
    stats = figures.plot_head_statistics({"a": HEAD_STATS, "b": HEAD_STATS})
    assert len([ax for ax in stats.axes if ax.images]) == 2 * 2          # a panel per (model, statistic)
    cosine, attention = figures.plot_sentence_comparison(Comparison(0.2), Comparison(0.0), "bank").axes
    assert len(cosine.get_lines()) == 2 and len(attention.get_lines()) == 3
    np.testing.assert_allclose(attention.get_lines()[0].get_ydata(), [0.4, 0.5, 0.6])   # mean over heads


def test_plots_count_layers_and_heads_from_0():
    """As bertviz: layer l is drawn at l (tick "l"), the embeddings (input of layer 0) at -1 with the tick "emb"."""
    cosine, attention = figures.plot_sentence_comparison(Comparison(0.2), Comparison(0.0), "bank").axes
    assert [t.get_text() for t in cosine.get_xticklabels()] == ["emb", "0", "1", "2"]
    np.testing.assert_array_equal(cosine.get_xticks(), [-1, 0, 1, 2])
    np.testing.assert_array_equal(cosine.get_lines()[0].get_xdata(), [-1, 0, 1, 2])   # cosine[l + 1] at x = l
    assert cosine.get_xlabel() == "layer (from 0; emb = embeddings)"
    assert [t.get_text() for t in attention.get_xticklabels()] == ["0", "1", "2"]
    for line in attention.get_lines():                                   # attention_difference[l] at x = l
        np.testing.assert_array_equal(line.get_xdata(), [0, 1, 2])
    assert attention.get_xlabel() == "layer (from 0)" and cosine.get_xlim() == attention.get_xlim()
    stats = figures.plot_head_statistics({"a": HEAD_STATS})
    for ax in (ax for ax in stats.axes if ax.images):
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("head (from 0)", "layer (from 0)")
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]           # 3 heads
        assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1"]                # 2 layers
        np.testing.assert_array_equal(ax.get_yticks(), [0, 1])            # tick "l" on row l of the statistic
    deep = figures.plot_head_statistics({"a": {"entropy": np.zeros((30, 9)), "uniform entropy": 1.0}})
    assert [t.get_text() for t in deep.axes[0].get_yticklabels()] == [str(layer) for layer in range(0, 30, 3)]


def test_relative_position_similarity_shapes_and_bad_input():
    encoding = ka.sinusoidal_positional_encoding(80, 16, dtype=torch.float64)
    assert figures.relative_position_similarity(encoding, starts=(0, 7, 30), max_offset=40).shape == (3, 41)
    assert figures.relative_position_similarity(encoding, starts=(70,)).shape == (1, 10)   # default max_offset
    with pytest.raises(ValueError, match="max_offset"):
        figures.relative_position_similarity(encoding, starts=(70,), max_offset=20)
    with pytest.raises(ValueError, match="n_positions, d_model"):
        figures.relative_position_similarity(torch.zeros(3, 4, 5))


@pytest.mark.parametrize("call, message", [
    (lambda: figures.plot_attention_weights(torch.rand(2, 3, 4, 4)), "several leading dims"),
    (lambda: figures.plot_attention_weights(torch.rand(3, 3), query_labels=["a"]), "1 query labels"),
    (lambda: figures.plot_mask(torch.ones(3, 3)), "boolean"),
    (lambda: figures.plot_training_curves({}), "non-empty"),
    (lambda: figures.plot_training_curves({"a": HISTORY}, metrics=["bleu"]), "none of the runs"),
    (lambda: figures.plot_positional_encoding(torch.zeros(5, 4), dims=[9]), "out of range"),
    (lambda: figures.plot_diagonal_weight([1, 2], [0.5], n_tokens=4), "one length"),
])
def test_figures_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _drawn(fig):
    """The figure drawn by Agg (as a notebook shows it) and its renderer, for reading back extents."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _values_and_outputs():
    """1(b)'s second figure: values V (8 tokens x 8 dims, standard normal) and outputs, annotated by default."""
    values = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(0))
    return figures.plot_attention_weights(values, [f"x{i}" for i in range(8)], [f"dim {j}" for j in range(8)],
                                          panel_titles=["values V", "outputs V'"], xlabel="value dimension",
                                          ylabel="token")


def test_axis_labels_name_what_rows_and_columns_are():
    """Callers label the axes (a matrix of values has tokens x value dimensions, not queries x keys); attention
    weights and masks keep "query" / "key" by default."""
    for ax in [a for a in _values_and_outputs().axes if a.images][:2]:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("value dimension", "token")
    shift = figures.plot_attention_weights(torch.eye(6), annotate=False, xlabel="column j", ylabel="row i")
    assert (shift.axes[0].get_xlabel(), shift.axes[0].get_ylabel()) == ("column j", "row i")
    padding = figures.plot_mask(ka.padding_mask(torch.ones(2, 5, dtype=torch.bool)), xlabel="article position",
                                ylabel="article")
    assert (padding.axes[0].get_xlabel(), padding.axes[0].get_ylabel()) == ("article position", "article")
    for fig in (figures.plot_attention_weights(_weights()), figures.plot_mask(ka.causal_mask(4))):
        assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("key", "query")


def test_annotations_fit_their_cells_without_overlapping():
    """1(b)'s annotated 8 x 8 panels: every value is written, at a legible size, and no two texts overlap or touch on
    the rendered figure (each text's box padded by a quarter of its font size: at least half an em between
    neighbours); a matrix whose cells are too small for legible text is not annotated."""
    fig = _values_and_outputs()
    renderer = _drawn(fig)
    for ax in [a for a in fig.axes if a.images][:2]:
        assert len(ax.texts) == 64 and all(t.get_fontsize() >= 5 for t in ax.texts)
        boxes = [t.get_window_extent(renderer).padded(0.25 * t.get_fontsize() * fig.dpi / 72) for t in ax.texts]
        overlapping = [(a, b) for a, b in itertools.combinations(range(64), 2) if boxes[a].overlaps(boxes[b])]
        assert not overlapping, [(ax.texts[a].get_text(), ax.texts[b].get_text()) for a, b in overlapping[:3]]
        assert all(ax.get_window_extent(renderer).contains(*box.get_points().mean(0)) for box in boxes)
    crowded = figures.plot_attention_weights(torch.rand(40, 40), annotate=True)
    assert not crowded.axes[0].texts


def test_colour_bar_labels_both_ends_of_its_range():
    """A colour range taken from the data is widened to round ticks: the lowest and highest ticks sit at the ends of
    the bar (weights from 0.0005 to 0.99 get 0 and 1), and every tick label lies inside the figure."""
    weights = torch.tensor([[0.0005, 0.99], [0.3, 0.7]])
    fig = figures.plot_attention_weights(weights)
    renderer = _drawn(fig)
    colour_bar = fig.axes[-1]
    low, high = colour_bar.get_ylim()
    ticks = [t for t in colour_bar.get_yticks() if low - 1e-9 <= t <= high + 1e-9]
    assert (low, high) == pytest.approx((0.0, 1.0))
    assert (ticks[0], ticks[-1]) == pytest.approx((low, high))
    page = fig.bbox
    for label in colour_bar.get_yticklabels():
        if label.get_text():
            box = label.get_window_extent(renderer)
            assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1


@pytest.mark.parametrize("shape", [(4, 48), (22, 48), (30, 5), (6, 6)])
def test_mask_figure_has_the_mask_aspect(shape):
    """A mask picture is sized to the mask: a (4, 48) padding mask is a low strip, not a thin band in a square of
    white space. Beyond the drawn matrix the figure keeps only room for labels, title and legend (inches)."""
    n_q, n_k = shape
    mask = torch.ones(n_q, n_k, dtype=torch.bool).tril()
    fig = figures.plot_mask(mask, [f"q{i}" for i in range(n_q)], [f"_k{j}" for j in range(n_k)], title="mask")
    _drawn(fig)
    ax = fig.axes[0]
    width, height = fig.get_size_inches()
    box = ax.get_position()                                              # figure fractions, after the layout
    assert height - box.height * height < 1.8 and width - box.width * width < 3.2
    assert box.width * width / (box.height * height) == pytest.approx(n_k / n_q, rel=0.02)
