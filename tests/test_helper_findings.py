"""What the 3(a)iii experiment finds, checked against theory: the answer to question 3(a)iii, so this file stays with
the instructor (grading/course.toml hidden_paths); tests/test_helper.py (released) checks the measurement itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_helper import mean_error, run

import figures
import helper
import kernel_attention as ka

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------------------------------
# Theory: 1/sqrt(D_random), positive orthogonal vs trigonometric, growth with the norm and with D
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_norm_results() -> pd.DataFrame:
    """D = 16, scale 0.25 (||x||^2 / sigma^2 = 0.25): the Monte-Carlo regime where errors are small."""
    return run(d_values=(16,), n_random_values=(16, 64, 256, 1024), scales=(0.25,))


@pytest.mark.parametrize("method", list(helper.METHOD_LABELS))
@pytest.mark.parametrize("metric", list(helper.METRICS))
def test_error_falls_as_one_over_sqrt_n_random(small_norm_results, method, metric):
    slopes = helper.fit_error_slopes(small_norm_results, metric)
    slope = float(slopes.loc[slopes["method"] == method, "slope"].item())
    assert slope == pytest.approx(-0.5, abs=0.1), slopes


@pytest.fixture(scope="module")
def norm_grid_results() -> pd.DataFrame:
    return run(d_values=(16, 64), n_random_values=(64, 256), scales=(0.25, 0.5, 1.0), n_tokens=32, n_seeds=2)


def test_positive_orthogonal_beats_trigonometric_at_equal_n_random(norm_grid_results):
    """Large norms (scale 1: ||x||^2 / sigma^2 = sqrt(D) >= 4): the trigonometric normaliser can be ~0 or negative;
    positive features cannot. (At ||x||^2 / sigma^2 <= 2 the trigonometric estimate, which has twice the features,
    can be as good or better: see the module docstring.)"""
    ratios = helper.error_ratios(norm_grid_results, reference="favor+")
    large = ratios[ratios["scale"] == 1.0]
    assert len(large) == 4
    assert (large["favor+/softmax_rff"] < 0.5).all(), large


def test_trigonometric_features_win_at_small_norm(norm_grid_results):
    """||x||^2 / sigma^2 <= 0.5: the trigonometric MSE ~ (1 - exp(-||q-k||^2))^2 is fourth order in the inputs, the
    positive one second order (Choromanski et al. 2021, Lemma 2), and trigonometric maps have 2 D_random features."""
    ratios = helper.error_ratios(norm_grid_results, reference="favor+")
    small = ratios[ratios["scale"] == 0.25]
    assert len(small) == 4 and (small["favor+/softmax_rff"] > 1.0).all(), small


@pytest.mark.parametrize("method", list(helper.METHOD_LABELS))
def test_error_grows_with_the_input_norm_and_with_d(norm_grid_results, method):
    for d in (16, 64):
        by_scale = [mean_error(norm_grid_results, method=method, d=d, scale=s, n_random=256) for s in (0.25, 0.5, 1.0)]
        assert by_scale[0] < by_scale[1] < by_scale[2], (d, by_scale)
    for scale in (0.25, 0.5):
        by_d = [mean_error(norm_grid_results, method=method, d=d, scale=scale, n_random=256) for d in (16, 64)]
        assert by_d[0] < by_d[1], (scale, by_d)
    norms = norm_grid_results.groupby(["d", "scale"])["sq_norm_over_sigma2"].mean()
    assert norms[(64, 1.0)] == pytest.approx(8.0, rel=0.1)               # scale^2 sqrt(D)


def test_orthogonal_projections_beat_iid_at_small_norm():
    """Measured here 0.85 (0.86 .. 0.90 for other seeds); i.i.d. against i.i.d. gives 0.94 .. 1.06."""
    results = run(d_values=(16,), n_random_values=(32, 64, 128), scales=(0.25,), methods=("favor+", "favor+iid"),
                  n_seeds=8)
    ratio = helper.error_ratios(results, reference="favor+")["favor+/favor+iid"]
    assert np.exp(np.log(ratio).mean()) < 0.93, ratio


# ---------------------------------------------------------------------------------------------------------------------
# Positional-encoding similarity (question 1(c), the consequence its answer derives) against its closed form
# ---------------------------------------------------------------------------------------------------------------------


def test_relative_position_similarity_depends_only_on_the_offset():
    d = 16
    encoding = ka.sinusoidal_positional_encoding(80, d, dtype=torch.float64)
    similarity = figures.relative_position_similarity(encoding, starts=(0, 7, 30), max_offset=40)
    w = 10000.0 ** (-np.arange(0, d, 2) / d)
    closed_form = np.cos(np.arange(41)[:, None] * w).sum(axis=1)      # p_t . p_{t+k} = sum_i cos(k w_i)
    assert similarity.shape == (3, 41)
    np.testing.assert_allclose(similarity, np.broadcast_to(closed_form, (3, 41)), atol=1e-9)
