"""Question 3(a)iii of CS182 HW8: how well does kernel attention approximate softmax attention?

   `approximation_error_experiment` measures, over a grid of D (query/key width) and n_random (number of random
   vectors, the homework's D_random; plots label it D_random), the relative error of the attention matrix and of the
   attention output of three feature maps from kernel_attention against exact softmax attention:
     "softmax_rff"  trigonometric random Fourier features for the softmax kernel, phi_sm of question 3(a)i-ii
                    (n_features = 2 n_random),
     "favor+iid"    FAVOR+ positive features, i.i.d. Gaussian projections (n_features = n_random),
     "favor+"       FAVOR+ positive features, orthogonal projections (n_features = n_random).
   Results come back as a pandas DataFrame (one row per method, D, n_random, input scale and seed);
   `summarize_errors`, `error_table`, `fit_error_slopes` and `error_ratios` reduce it, `format_table` prints a table
   in full, `plot_approximation_error` and `plot_error_heatmap` draw it, with the Figure convention of figures.py
   (which holds the notebooks' other plots).
=== BEGIN INSTRUCTOR ONLY ===

Measured results of the default configuration (FULL_CONFIG: D 16..256, D_random 8..4096, scales 0.25..1, N = 128,
5 seeds; 3000 rows). Inputs have N(0, s^2) entries, so ||x||^2 / sigma^2 ~ s^2 sqrt(D) runs from 0.25 to 16.
  * Rate: at s = 0.25 the log-log slope of error vs D_random is -0.47 .. -0.53 for all three maps and every D
    (attention matrix and output alike): the Monte-Carlo 1/sqrt(D_random). At larger norms the positive maps are
    pre-asymptotic (slopes -0.42 .. -0.02, errors 0.3 .. 4); the trigonometric map first blows up (errors 10 .. 1e4:
    normalisers near 0 or negative), then falls steeply (slopes -0.65 .. -1.3 at s = 0.5) once D_random is large.
  * Norm and D: the error grows with s and with D. At D_random = 4096, trigonometric: 0.005 (D 16) .. 0.023 (D 256) at
    s = 0.25, 0.024 .. 0.60 at s = 0.5, 0.6 .. 210 at s = 1; orthogonal positive: 0.009 .. 0.029, 0.045 .. 0.66,
    0.76 .. 3.4.
  * Ratios at equal D_random (geometric mean over D and D_random) of the orthogonal positive error to
    trigonometric: 1.41 (s 0.25), 0.47 (0.5), 0.057 (0.75), 0.013 (1.0) -- positive features win from
    ||x||^2 / sigma^2 ~ 1 on; at small norms the trigonometric map (2 D_random features, MSE ~ (1 - e^-||q-k||^2)^2)
    is better, as the MSE formulas of Choromanski et al. (2021) predict. To i.i.d. positive: 0.88, 0.98, 0.98, 1.00.
  * Real queries/keys (all-MiniLM-L6-v2, layer index 2, 12 heads, D = 32, N = 72 tokens of the notebook's paragraph;
    ||x||^2 / sigma^2 ~ 10.8): at D_random = 4096 the orthogonal positive error is 0.74 (i.i.d. 0.78; slopes -0.06),
    trigonometric 50 .. 2e3.
  * FAST_CONFIG (HW8_FAST=1) is a corner of FULL_CONFIG (D 16 and 256, s 0.25, 0.5, 1; the same D_random values,
    seeds and N), so its numbers equal the full run's there.
  * Cost (2 shared CPU cores, torch 2 threads): FULL_CONFIG 35 s, the real-q/k run 4 s, FAST_CONFIG about 10 s.
=== END INSTRUCTOR ONLY ===
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from torch import Tensor
from tqdm.auto import tqdm

import kernel_attention as ka
import run_flags
from figures import panel_grid

__all__ = [
    "METHOD_LABELS",
    "ErrorExperimentConfig",
    "experiment_config",
    "random_queries_keys",
    "capture_queries_keys",
    "attention_errors",
    "approximation_error_experiment",
    "summarize_errors",
    "error_table",
    "fit_error_slopes",
    "error_ratios",
    "format_number",
    "format_table",
    "plot_approximation_error",
    "plot_error_heatmap",
]

# ----------------------------------------------------------------------------------------------------------------------
# Question 3(a)iii: approximation error of kernel attention
# ----------------------------------------------------------------------------------------------------------------------

# Feature-map names of kernel_attention.make_feature_map -> labels for plots.
METHOD_LABELS = {
    "softmax_rff": "trigonometric RFF (phi_random)",
    "favor+iid": "positive (FAVOR+), i.i.d.",
    "favor+": "positive (FAVOR+), orthogonal",
}

# Columns that identify one experimental setting (everything but the seed and the measured errors).
SETTING_COLUMNS = ["method", "inputs", "d", "scale", "n_random"]
METRICS = {"attn_rel_error": "relative error of the attention matrix",
           "out_rel_error": "relative error of the attention output"}


@dataclass(frozen=True)
class ErrorExperimentConfig:
    """Grid of the 3(a)iii experiment.

    d_values: query/key widths D; n_random_values: numbers of random vectors n_random; n_seeds: independent draws of
    inputs and features per setting; n_tokens: sequence length N (N_q = N_k); value_dim: M; scales: input scales s
    (queries and keys have i.i.d. N(0, s^2) entries); methods: feature-map names (keys of METHOD_LABELS).
    """

    d_values: tuple[int, ...]
    n_random_values: tuple[int, ...]
    n_seeds: int
    n_tokens: int
    value_dim: int = 32
    scales: tuple[float, ...] = (1.0,)
    methods: tuple[str, ...] = tuple(METHOD_LABELS)


FULL_CONFIG = ErrorExperimentConfig(d_values=(16, 32, 64, 128, 256),
                                    n_random_values=tuple(2 ** i for i in range(3, 13)),   # 8 .. 4096
                                    n_seeds=5, n_tokens=128, scales=(0.25, 0.5, 0.75, 1.0))
# A corner of the full grid (D 16 and 256, three of the four input scales), same n_random values, seeds and sizes: every
# setting draws its inputs and features from its own seeds, so the fast run's numbers are the full run's there.
FAST_CONFIG = ErrorExperimentConfig(d_values=(16, 256), n_random_values=FULL_CONFIG.n_random_values,
                                    n_seeds=FULL_CONFIG.n_seeds, n_tokens=FULL_CONFIG.n_tokens, scales=(0.25, 0.5, 1.0))


def experiment_config(fast: bool | None = None) -> ErrorExperimentConfig:
    """FULL_CONFIG (about a minute on a laptop CPU), or FAST_CONFIG when fast (default: HW8_FAST=1)."""
    return FAST_CONFIG if (run_flags.fast() if fast is None else fast) else FULL_CONFIG


def _generator(*key) -> torch.Generator:
    """A torch.Generator seeded from `key` (ints, floats, strings): same key, same numbers, on every run."""
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def random_queries_keys(n_tokens: int, d: int, scale: float = 1.0, generator: torch.Generator | None = None,
                        dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Queries and keys with controlled norms: i.i.d. N(0, scale^2) entries, each of shape (n_tokens, d).

    Then E||x||^2 = scale^2 D and the logits q . k / sqrt(D) have standard deviation scale^2 (scale 1: the attention
    of a layer whose inputs are layer-normalised).
    === BEGIN INSTRUCTOR ONLY ===
    ||x||^2 / sigma^2 = scale^2 sqrt(D) with sigma^2 = sqrt(D).
    The exponent that question 3(a)ii's phi_sm multiplies the random features by grows with D and with the scale.
    === END INSTRUCTOR ONLY ===
    """
    if n_tokens < 1 or d < 1 or not scale > 0:
        raise ValueError(f"need n_tokens >= 1, d >= 1, scale > 0; got n_tokens={n_tokens}, d={d}, scale={scale}")
    q = scale * torch.randn(n_tokens, d, generator=generator, dtype=dtype)
    k = scale * torch.randn(n_tokens, d, generator=generator, dtype=dtype)
    return q, k


def capture_queries_keys(model: torch.nn.Module, run, query_module: torch.nn.Module, key_module: torch.nn.Module,
                         n_heads: int) -> tuple[Tensor, Tensor]:
    """Real queries and keys of a trained model: the outputs of its query / key projections during `run()`.

    model: any nn.Module (put in eval mode here); run: a callable that runs the model once (e.g.
    `lambda: model(**tokens)`); query_module / key_module: the nn.Linear layers that produce Q and K (B, N, H*Dh),
    e.g. `model.encoder.layer[i].attention.self.query` of a BERT model; n_heads: H.
    Returns q, k of shape (B, H, N, Dh) (detached, float64), ready for approximation_error_experiment(qk=(q, k)).
    """
    captured = {}

    def hook(name):
        def save(module, inputs, output):
            captured[name] = output.detach()
        return save

    handles = [query_module.register_forward_hook(hook("q")), key_module.register_forward_hook(hook("k"))]
    try:
        model.eval()
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    if set(captured) != {"q", "k"}:
        raise ValueError(f"run() did not call both projections (captured: {sorted(captured)}); pass the modules that "
                         "compute Q and K inside `model`")
    return tuple(ka.split_heads(captured[name].double(), n_heads) for name in ("q", "k"))


def _relative_error(approx: Tensor, exact: Tensor) -> float:
    """||approx - exact||_F / ||exact||_F over the whole tensor."""
    return float((approx - exact).norm() / exact.norm())


def attention_errors(q: Tensor, k: Tensor, v: Tensor, feature_map: torch.nn.Module,
                     exact: tuple[Tensor, Tensor] | None = None) -> dict[str, float]:
    """Relative errors of kernel attention with `feature_map` against softmax attention (eq. 1 vs eq. 2).

    q (..., N_q, D), k (..., N_k, D), v (..., N_k, M); exact: (out, weights) of
    kernel_attention.scaled_dot_product_attention if already computed.
    Returns {"attn_rel_error": ||A_hat - A||_F / ||A||_F, "out_rel_error": ||V'_hat - V'||_F / ||V'||_F} where
    A_hat is the matrix of weights of eq. (2) (kernel_attention_quadratic, return_weights=True) and V'_hat the output
    of linear_attention. eps = 0: the error measured is that of the approximation alone.
    """
    out, weights = ka.scaled_dot_product_attention(q, k, v, return_weights=True) if exact is None else exact
    phi_q = feature_map(q, is_query=True)                               # (..., N_q, n_features)
    phi_k = feature_map(k, is_query=False)                              # (..., N_k, n_features)
    _, approx_weights = ka.kernel_attention_quadratic(phi_q, phi_k, v, eps=0.0, return_weights=True)
    approx_out = ka.linear_attention(phi_q, phi_k, v, eps=0.0)          # (..., N_q, M)
    return {"attn_rel_error": _relative_error(approx_weights, weights),
            "out_rel_error": _relative_error(approx_out, out)}


def _check_grid(methods, d_values, n_random_values, scales, n_seeds, n_tokens, value_dim) -> None:
    unknown = [m for m in methods if m not in METHOD_LABELS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(METHOD_LABELS)}")
    for name, values in (("d_values", d_values), ("n_random_values", n_random_values)):
        if not values or any(not isinstance(x, int) or x < 1 for x in values):
            raise ValueError(f"{name} must be a non-empty sequence of positive integers, got {values!r}")
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales!r}")
    if n_seeds < 1 or n_tokens < 1 or value_dim < 1:
        raise ValueError(f"n_seeds, n_tokens, value_dim must be >= 1, got {n_seeds}, {n_tokens}, {value_dim}")


def approximation_error_experiment(d_values: Sequence[int] | None = None,
                                   n_random_values: Sequence[int] | None = None,
                                   methods: Sequence[str] | None = None, n_seeds: int | None = None,
                                   n_tokens: int | None = None, value_dim: int | None = None,
                                   scales: Sequence[float] | None = None, qk: tuple[Tensor, Tensor] | None = None,
                                   seed: int = 0, fast: bool | None = None, progress: bool = True) -> pd.DataFrame:
    """Question 3(a)iii: error of kernel attention vs softmax attention over D x n_random (x input scale).

    Every argument left None comes from experiment_config(fast) (HW8_FAST=1 -> the small grid).
    For each D, input scale s and seed: draw Q, K (n_tokens, D) with N(0, s^2) entries (random_queries_keys) and
    V (n_tokens, value_dim) ~ N(0, 1); compute exact softmax attention once; then for each method and n_random draw
    a feature map (kernel_attention.make_feature_map, seeded) and measure attention_errors. All in float64.

    qk: optional real queries and keys (q (..., N, D), k (..., N, D), e.g. from capture_queries_keys); then D is
    their width, d_values / scales / n_tokens are ignored, and the seed redraws only V and the features.

    Returns a DataFrame, one row per (method, d, scale, n_random, seed), columns: method, inputs ("gaussian" or
    "given"), d, scale (NaN for given inputs), n_random, n_features, seed, n_tokens, sq_norm_over_sigma2 (mean
    ||x||^2 / sigma^2 over the query and key rows, sigma^2 = sqrt(D)), attn_rel_error, out_rel_error.
    """
    config = experiment_config(fast)
    methods = tuple(config.methods if methods is None else methods)
    n_random_values = tuple(config.n_random_values if n_random_values is None else n_random_values)
    n_seeds = config.n_seeds if n_seeds is None else n_seeds
    value_dim = config.value_dim if value_dim is None else value_dim
    if qk is not None:
        q_given, k_given = qk
        if q_given.dim() < 2 or q_given.shape[-1] != k_given.shape[-1] or q_given.shape[:-2] != k_given.shape[:-2]:
            raise ValueError(f"qk must be q (..., N_q, D) and k (..., N_k, D) with equal batch dims and D, got "
                             f"{tuple(q_given.shape)} and {tuple(k_given.shape)}")
        q_given, k_given = q_given.detach().double(), k_given.detach().double()
        d_values, scales, n_tokens = (q_given.shape[-1],), (math.nan,), k_given.shape[-2]
    else:
        d_values = tuple(config.d_values if d_values is None else d_values)
        scales = tuple(config.scales if scales is None else scales)
        n_tokens = config.n_tokens if n_tokens is None else n_tokens
    _check_grid(methods, d_values, n_random_values, [1.0] if qk is not None else scales, n_seeds, n_tokens,
                value_dim)

    rows = []
    total = len(d_values) * len(scales) * n_seeds * len(methods) * len(n_random_values)
    bar = tqdm(total=total, desc="3(a)iii approximation error", disable=not progress)
    for d in d_values:
        for scale in scales:
            for s in range(seed, seed + n_seeds):
                gen = _generator("inputs", s, d, scale)
                if qk is None:
                    q, k = random_queries_keys(n_tokens, d, scale, gen)                  # (N, D) each
                else:
                    q, k = q_given, k_given                                              # (..., N, D)
                v = torch.randn(*k.shape[:-1], value_dim, generator=gen, dtype=torch.float64)   # (..., N, M)
                exact = ka.scaled_dot_product_attention(q, k, v, return_weights=True)
                sq_norm = float(torch.cat([q, k], dim=-2).pow(2).sum(-1).mean() / math.sqrt(d))
                for method in methods:
                    for n_random in n_random_values:
                        feature_map = ka.make_feature_map(method, d, n_random)
                        feature_map.redraw(_generator("features", s, d, scale, method, n_random))
                        errors = attention_errors(q, k, v, feature_map, exact)
                        rows.append({"method": method, "inputs": "gaussian" if qk is None else "given", "d": d,
                                     "scale": scale, "n_random": n_random, "n_features": feature_map.n_features,
                                     "seed": s, "n_tokens": n_tokens, "sq_norm_over_sigma2": sq_norm, **errors})
                        bar.update()
    bar.close()
    return pd.DataFrame(rows)


def _check_metric(results: pd.DataFrame, metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    missing = [c for c in (*SETTING_COLUMNS, metric) if c not in results.columns]
    if missing:
        raise ValueError(f"results lack columns {missing}: pass the DataFrame of approximation_error_experiment")


def summarize_errors(results: pd.DataFrame, metric: str = "attn_rel_error") -> pd.DataFrame:
    """Mean, standard deviation and count over seeds of `metric` per setting (method, inputs, d, scale, n_random)."""
    _check_metric(results, metric)
    summary = results.groupby(SETTING_COLUMNS, dropna=False)[metric].agg(["mean", "std", "count"])
    return summary.reset_index()


def error_table(results: pd.DataFrame, metric: str = "attn_rel_error",
                index: Sequence[str] = ("method", "scale", "d")) -> pd.DataFrame:
    """The whole grid of seed-mean errors: one row per value of `index` (columns of the results), one column per
    n_random."""
    _check_metric(results, metric)
    return summarize_errors(results, metric).pivot_table(index=list(index), columns="n_random", values="mean")


def format_number(x: float) -> str:
    """A measured number as the notebook prints it: 3 significant digits, whole numbers from 100 on
    (0.00123, 0.0456, 0.789, 1.2, 346)."""
    if not math.isfinite(x):
        return str(x)
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def format_table(table: pd.DataFrame, number=format_number) -> str:
    """The whole table as text (no row or column left out), every number written by `number`."""
    return table.to_string(float_format=number)


def fit_error_slopes(results: pd.DataFrame, metric: str = "attn_rel_error") -> pd.DataFrame:
    """Least-squares slope of log(mean error) against log(n_random) per (method, inputs, d, scale).

    === BEGIN INSTRUCTOR ONLY ===
    Monte-Carlo theory predicts slope -1/2 (error ~ 1/sqrt(n_random)) once the error is small; an exponent well above
    -1/2 means the estimate is not yet in that regime (e.g. trigonometric features with near-zero normalisers).
    === END INSTRUCTOR ONLY ===
    Returns columns method, inputs, d, scale, slope, intercept (log error at n_random = 1), n_points.
    """
    summary = summarize_errors(results, metric)
    rows = []
    for key, group in summary.groupby(SETTING_COLUMNS[:-1], dropna=False):
        if len(group) < 2:
            continue
        slope, intercept = np.polyfit(np.log(group["n_random"]), np.log(group["mean"]), 1)
        rows.append({**dict(zip(SETTING_COLUMNS[:-1], key)), "slope": slope, "intercept": intercept,
                     "n_points": len(group)})
    return pd.DataFrame(rows)


def error_ratios(results: pd.DataFrame, metric: str = "attn_rel_error", reference: str = "favor+") -> pd.DataFrame:
    """Mean error of `reference` divided by the mean error of every other method, at equal n_random.

    Returns one row per (inputs, d, scale, n_random) and a column "<reference>/<other>" per other method
    (< 1: the reference is more accurate).
    """
    summary = summarize_errors(results, metric)
    wide = summary.pivot_table(index=SETTING_COLUMNS[1:], columns="method", values="mean", dropna=False)
    if reference not in wide.columns:
        raise ValueError(f"reference method {reference!r} is not in the results (methods: {list(wide.columns)})")
    ratios = {f"{reference}/{other}": wide[reference] / wide[other] for other in wide.columns if other != reference}
    return pd.DataFrame(ratios).reset_index()


def _method_order(methods: pd.Series) -> list[str]:
    """The methods present, in METHOD_LABELS order (trigonometric, positive iid, positive orthogonal), then others."""
    present = list(pd.unique(methods))
    return [m for m in METHOD_LABELS if m in present] + [m for m in present if m not in METHOD_LABELS]


def _where(table: pd.DataFrame, column: str, value) -> pd.DataFrame:
    """Rows of `table` whose `column` equals `value` (NaN matches NaN: the scale of given inputs)."""
    if isinstance(value, float) and math.isnan(value):
        return table[table[column].isna()]
    return table[table[column] == value]


def _setting_name(column: str, value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "given q / k"
    return f"D = {value}" if column == "d" else f"scale = {value:g}"


def plot_approximation_error(results: pd.DataFrame, metric: str = "attn_rel_error", by: str = "d") -> Figure:
    """Log-log error vs n_random: one column of panels per method, one row per value of the other setting
    (by="d": a row per input scale, a line per D; by="scale": a row per D, a line per scale). Each line is the seed
    mean with a +-1 standard deviation band. The panels of a row share their y-axis, so the feature maps can be
    compared at a glance.
    === BEGIN INSTRUCTOR ONLY ===
    The dashed line is the 1/sqrt(n_random) rate of Monte-Carlo theory.
    === END INSTRUCTOR ONLY ===
    """
    _check_metric(results, metric)
    if by not in ("d", "scale"):
        raise ValueError(f"by must be 'd' or 'scale', got {by!r}")
    other = "scale" if by == "d" else "d"
    summary = summarize_errors(results, metric)
    methods = _method_order(summary["method"])
    row_values = list(pd.unique(summary[other]))        # pd.unique: NaN (given q / k) counts once
    fig, axes = panel_grid(len(methods) * len(row_values), (4.0, 3.1), n_cols=len(methods))
    for r, row_value in enumerate(row_values):
        first = axes[r * len(methods)]
        for c, method in enumerate(methods):
            ax = axes[r * len(methods) + c]
            if c:
                ax.sharey(first)                                        # one y-axis per row
                ax.tick_params(labelleft=False)
            part = _where(summary[summary["method"] == method], other, row_value)
            for value in pd.unique(part[by]):
                line = _where(part, by, value).sort_values("n_random")
                mean, std = line["mean"].to_numpy(), line["std"].fillna(0).to_numpy()
                (handle,) = ax.plot(line["n_random"], mean, marker="o", ms=3, label=_setting_name(by, value))
                ax.fill_between(line["n_random"], np.clip(mean - std, mean / 10, None), mean + std,
                                color=handle.get_color(), alpha=0.15)
            # === BEGIN INSTRUCTOR ONLY ===
            n_random = np.array(sorted(part["n_random"].unique()), dtype=float)
            anchor = part[part["n_random"] == n_random[0]]["mean"].min()
            ax.plot(n_random, anchor * np.sqrt(n_random[0] / n_random), "k--", lw=1, label="1/sqrt(D_random)")
            # === END INSTRUCTOR ONLY ===
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{METHOD_LABELS.get(method, method)}\n{_setting_name(other, row_value)}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            if r == len(row_values) - 1:
                ax.set_xlabel("D_random")
            if c == 0:
                ax.set_ylabel(METRICS[metric], fontsize=8)
        axes[r * len(methods)].legend(fontsize=7)
    return fig


def plot_error_heatmap(results: pd.DataFrame, metric: str = "attn_rel_error") -> Figure:
    """Heat map of the seed-mean error over the D x n_random grid: one column of panels per method, one row per
    input scale, one shared logarithmic colour scale."""
    _check_metric(results, metric)
    summary = summarize_errors(results, metric)
    methods = _method_order(summary["method"])
    scales = list(pd.unique(summary["scale"]))
    positive = summary["mean"][summary["mean"] > 0]
    norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if len(positive) else None
    fig, axes = panel_grid(len(methods) * len(scales), (4.0, 3.0), n_cols=len(methods))
    for r, scale in enumerate(scales):
        for c, method in enumerate(methods):
            ax = axes[r * len(methods) + c]
            part = _where(summary[summary["method"] == method], "scale", scale)
            table = part.pivot_table(index="d", columns="n_random", values="mean")
            image = ax.imshow(table.to_numpy(), norm=norm, cmap="magma", aspect="auto", origin="lower")
            ax.set_xticks(range(table.shape[1]), [str(x) for x in table.columns], rotation=90, fontsize=7)
            ax.set_yticks(range(table.shape[0]), [str(x) for x in table.index], fontsize=7)
            ax.set_title(f"{METHOD_LABELS.get(method, method)}\n{_setting_name('scale', scale)}", fontsize=9)
            ax.set(xlabel="D_random" if r == len(scales) - 1 else None, ylabel="D" if c == 0 else None)
            if table.shape[1] <= 6:                                      # readable numbers only
                for (i, j), value in np.ndenumerate(table.to_numpy()):
                    ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=5.5, color="tab:cyan")
    fig.colorbar(image, ax=axes, label=METRICS[metric], shrink=0.9)
    return fig
