"""helper.py: the 3(a)iii experiment measures what it says (errors against direct computations, reproducible, bad
input refused), its tables print every number, and its plots render headless to PNG. (The notebooks' other figures:
tests/test_figures.py.)

Small grids only (the whole file runs in well under a minute on 2 shared cores).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from support import assert_renders_to_png

import helper
import kernel_attention as ka

torch.set_num_threads(1)


def run(**kwargs) -> pd.DataFrame:
    """The experiment with progress bar off and small defaults."""
    defaults = dict(n_seeds=3, n_tokens=48, progress=False)
    return helper.approximation_error_experiment(**{**defaults, **kwargs})


def mean_error(results: pd.DataFrame, metric: str = "attn_rel_error", **where) -> float:
    rows = results
    for column, value in where.items():
        rows = rows[rows[column] == value]
    assert len(rows), where
    return float(rows[metric].mean())


# ---------------------------------------------------------------------------------------------------------------------
# The error measurement itself, against independent computations
# ---------------------------------------------------------------------------------------------------------------------


class ExactSoftmaxFeatures(torch.nn.Module):
    """phi(Q_i) = exp(Q_i K^T / sqrt(D)) (N_k features), phi(K_j) = e_j: phi(Q) phi(K)^T is exactly exp(QK^T/sqrt D)."""

    def __init__(self, keys: torch.Tensor):
        super().__init__()
        self.keys = keys

    def forward(self, x, is_query=False):
        if is_query:
            return torch.exp(x @ self.keys.T / math.sqrt(x.shape[-1]))
        return torch.eye(len(self.keys), dtype=x.dtype)


class ConstantFeatures(torch.nn.Module):
    """phi(x) = 1: kernel attention becomes the plain average of the values."""

    def forward(self, x, is_query=False):
        return torch.ones(*x.shape[:-1], 1, dtype=x.dtype)


def test_attention_errors_vanish_for_exact_features():
    q, k = helper.random_queries_keys(20, 8, scale=1.0, generator=torch.Generator().manual_seed(0))
    v = torch.randn(20, 5, dtype=torch.float64)
    errors = helper.attention_errors(q, k, v, ExactSoftmaxFeatures(k))
    assert errors["attn_rel_error"] < 1e-12 and errors["out_rel_error"] < 1e-12


def test_attention_errors_match_a_direct_computation():
    q, k = helper.random_queries_keys(12, 4, scale=1.0, generator=torch.Generator().manual_seed(1))
    v = torch.randn(12, 3, dtype=torch.float64)
    weights = torch.nn.functional.scaled_dot_product_attention(q, k, torch.eye(12, dtype=q.dtype))   # A I = A
    uniform = torch.full_like(weights, 1 / 12)
    expected_attn = torch.linalg.norm(uniform - weights) / torch.linalg.norm(weights)
    expected_out = torch.linalg.norm(uniform @ v - weights @ v) / torch.linalg.norm(weights @ v)
    errors = helper.attention_errors(q, k, v, ConstantFeatures())
    assert errors["attn_rel_error"] == pytest.approx(float(expected_attn), rel=1e-10)
    assert errors["out_rel_error"] == pytest.approx(float(expected_out), rel=1e-10)


def test_random_queries_keys_have_the_requested_scale():
    q, k = helper.random_queries_keys(4000, 16, scale=0.5, generator=torch.Generator().manual_seed(2))
    assert q.shape == k.shape == (4000, 16) and q.dtype == torch.float64
    assert q.std().item() == pytest.approx(0.5, rel=0.03) and k.std().item() == pytest.approx(0.5, rel=0.03)


# ---------------------------------------------------------------------------------------------------------------------
# The experiment as data: reproducible, complete, given inputs, bad input
# ---------------------------------------------------------------------------------------------------------------------


def test_experiment_is_reproducible_and_complete():
    kwargs = dict(d_values=(8, 16), n_random_values=(4, 8), scales=(0.5, 1.0), n_seeds=2, n_tokens=10)
    first, again, other = run(**kwargs), run(**kwargs), run(seed=5, **kwargs)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["attn_rel_error"], other["attn_rel_error"])
    assert len(first) == 3 * 2 * 2 * 2 * 2
    assert set(first.columns) >= {"method", "inputs", "d", "scale", "n_random", "n_features", "seed",
                                  "sq_norm_over_sigma2", "attn_rel_error", "out_rel_error"}
    trig = first[first["method"] == "softmax_rff"]
    assert (trig["n_features"] == 2 * trig["n_random"]).all()


def test_fast_mode_selects_the_small_grid(monkeypatch):
    monkeypatch.setenv("HW8_FAST", "1")
    assert helper.experiment_config() == helper.FAST_CONFIG
    monkeypatch.setenv("HW8_FAST", "0")
    assert helper.experiment_config() == helper.FULL_CONFIG
    assert helper.experiment_config(fast=True) == helper.FAST_CONFIG


def test_fast_grid_is_a_corner_of_the_full_grid():
    """Fewer D and input scales, everything else equal: the fast run's numbers are the full run's at its settings."""
    fast, full = helper.FAST_CONFIG, helper.FULL_CONFIG
    assert set(fast.d_values) < set(full.d_values) and set(fast.scales) < set(full.scales)
    assert (fast.n_random_values, fast.n_seeds, fast.n_tokens, fast.value_dim, fast.methods) == \
        (full.n_random_values, full.n_seeds, full.n_tokens, full.value_dim, full.methods)


def test_a_setting_gives_the_same_numbers_in_any_grid():
    """Each setting draws its inputs and features from its own seeds, not from a stream shared along the grid."""
    small = run(d_values=(8,), n_random_values=(4, 16), scales=(0.5,), n_seeds=2, n_tokens=10)
    large = run(d_values=(4, 8), n_random_values=(2, 4, 16), scales=(0.25, 0.5), n_seeds=2, n_tokens=10)
    part = large[(large["d"] == 8) & (large["scale"] == 0.5) & large["n_random"].isin([4, 16])]
    pd.testing.assert_frame_equal(small.reset_index(drop=True), part.reset_index(drop=True))


def test_captured_queries_keys_feed_the_experiment():
    torch.manual_seed(0)
    layer = ka.MultiHeadAttention(d_model=32, n_heads=4)
    x = torch.randn(2, 10, 32)
    q, k = helper.capture_queries_keys(layer, lambda: layer(x, x, x), layer.q_proj, layer.k_proj, n_heads=4)
    assert q.shape == k.shape == (2, 4, 10, 8)
    expected_q = layer.q_proj(x).view(2, 10, 4, 8).transpose(1, 2)    # heads by hand
    torch.testing.assert_close(q, expected_q.double().detach())
    results = run(qk=(q, k), n_random_values=(16, 64), n_seeds=2)
    assert set(results["inputs"]) == {"given"} and set(results["d"]) == {8} and results["scale"].isna().all()
    assert (results["n_tokens"] == 10).all() and len(results) == 3 * 2 * 2
    panels = [a for a in helper.plot_approximation_error(results).axes if a.get_visible()]
    assert len(panels) == 3 and "given q / k" in panels[0].get_title()   # one row: NaN scales count once


def test_capture_queries_keys_needs_both_projections():
    layer = ka.MultiHeadAttention(d_model=8, n_heads=2)
    with pytest.raises(ValueError, match="did not call both"):
        helper.capture_queries_keys(layer, lambda: None, layer.q_proj, layer.k_proj, n_heads=2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(methods=("softmax",)), "unknown methods"),
    (dict(n_random_values=(0, 8)), "n_random_values"),
    (dict(d_values=()), "d_values"),
    (dict(scales=(-1.0,)), "scales"),
    (dict(qk=(torch.randn(5, 8), torch.randn(5, 4))), "qk must be"),
])
def test_experiment_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(**{"d_values": (8,), "n_random_values": (8,), "n_seeds": 1, **kwargs})


def test_slopes_and_ratios_on_known_numbers():
    rows = [{"method": m, "inputs": "gaussian", "d": 16, "scale": 1.0, "n_random": n, "seed": 0,
             "attn_rel_error": c * n ** -0.75, "out_rel_error": c * n ** -1.0}
            for m, c in (("favor+", 2.0), ("softmax_rff", 8.0)) for n in (4, 16, 64)]
    results = pd.DataFrame(rows)
    slopes = helper.fit_error_slopes(results).set_index("method")["slope"]
    assert slopes.to_dict() == pytest.approx({"favor+": -0.75, "softmax_rff": -0.75})
    assert helper.fit_error_slopes(results, "out_rel_error")["slope"].tolist() == pytest.approx([-1.0, -1.0])
    assert helper.error_ratios(results)["favor+/softmax_rff"].tolist() == pytest.approx([0.25] * 3)
    table = helper.error_table(results)
    assert table.index.names == ["method", "scale", "d"] and list(table.columns) == [4, 16, 64]
    assert table.loc[("softmax_rff", 1.0, 16), 16] == pytest.approx(8.0 * 16 ** -0.75)
    with pytest.raises(ValueError, match="metric"):
        helper.summarize_errors(results, "accuracy")
    with pytest.raises(ValueError, match="reference"):
        helper.error_ratios(results, reference="favor+iid")


# ---------------------------------------------------------------------------------------------------------------------
# Every plot returns a Figure and renders to PNG headless
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_results() -> pd.DataFrame:
    return run(d_values=(8, 16), n_random_values=(4, 16), scales=(0.5, 1.0), n_seeds=2, n_tokens=8)


PLOTS = {
    "approximation_error": lambda r: helper.plot_approximation_error(r),
    "approximation_error_by_scale": lambda r: helper.plot_approximation_error(r, "out_rel_error", by="scale"),
    "error_heatmap": lambda r: helper.plot_error_heatmap(r),
}


@pytest.mark.parametrize("name", list(PLOTS))
def test_plot_returns_a_figure_that_renders_to_png(name, tiny_results, tmp_path):
    assert_renders_to_png(PLOTS[name](tiny_results), tmp_path / f"{name}.png")


def test_plot_layouts_follow_the_data(tiny_results):
    assert len([a for a in helper.plot_approximation_error(tiny_results).axes if a.get_visible()]) == 3 * 2


@pytest.mark.parametrize("by", ["d", "scale"])
def test_error_curve_panels_of_a_row_share_their_y_axis(tiny_results, by):
    """Trigonometric and positive features are compared by eye: the panels of a row (one per feature map) have one
    y-axis, with the same limits."""
    fig = helper.plot_approximation_error(tiny_results, by=by)
    fig.canvas.draw()
    panels = [a for a in fig.axes if a.get_visible()]
    rows = [panels[i:i + 3] for i in range(0, len(panels), 3)]
    assert len(rows) == 2
    for first, *others in rows:
        for ax in others:
            assert first.get_shared_y_axes().joined(first, ax)
            assert ax.get_ylim() == pytest.approx(first.get_ylim())


def test_format_table_prints_every_number():
    assert [helper.format_number(x) for x in (0.0051234, 0.02351, 0.6078, 1.0, 208.7, 9118.3, -0.503)] == \
        ["0.00512", "0.0235", "0.608", "1", "209", "9118", "-0.503"]
    table = pd.DataFrame(np.arange(1, 301, dtype=float).reshape(100, 3) / 7)
    text = helper.format_table(table)
    assert "..." not in text and len(text.splitlines()) == 101 and helper.format_number(300 / 7) in text


@pytest.mark.parametrize("call, message", [
    (lambda: helper.plot_approximation_error(pd.DataFrame({"x": [1]})), "lack columns"),
])
def test_plots_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
