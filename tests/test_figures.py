"""figures.py: every notebook figure is a matplotlib Figure that renders headless to PNG, its layout follows the data,
and bad input is refused with a message that names it."""

from __future__ import annotations

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
