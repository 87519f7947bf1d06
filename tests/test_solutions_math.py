"""The mathematics of the worked written answers (questions 1(c), 3(a) i-iii, 3(b)), checked numerically.

Each test checks a claim of the solutions against an independent computation (numpy closed forms and loops) and
against kernel_attention.py where the module implements it; costs are checked by counting the FLOPs
(torch.utils.flop_counter) and the largest intermediate tensor of the implementation.
"""

import math

import numpy as np
import pytest
import torch
from support import LargestIntermediate
from torch.utils.flop_counter import FlopCounterMode

import kernel_attention as ka

RNG_SEED = 0


def rng(offset=0):
    return np.random.default_rng(RNG_SEED + offset)


# ----------------------------------------------------------------------------------------------------------------------
# 3(a)i: exp(q.k / sqrt(D)) = exp(||q||^2 / (2 s2)) K_Gauss(q, k) exp(||k||^2 / (2 s2)),  s2 = sigma^2 = sqrt(D)
# ----------------------------------------------------------------------------------------------------------------------


def gaussian_kernel(q, k, sigma2):
    """K_Gauss(q, k) = exp(-||q - k||^2 / (2 sigma^2)); q, k (..., D)."""
    return np.exp(-np.sum((q - k) ** 2, axis=-1) / (2 * sigma2))


@pytest.mark.parametrize("d", [1, 2, 8, 64, 512])
def test_softmax_similarity_is_gaussian_kernel_times_norm_terms(d):
    q, k = rng(d).normal(size=(2, 100, d)) / d ** 0.25     # q.k / sqrt(D) of order 1 for every D
    sigma2 = math.sqrt(d)
    softmax_sim = np.exp(np.sum(q * k, axis=-1) / math.sqrt(d))
    factored = (np.exp(np.sum(q * q, -1) / (2 * sigma2)) * gaussian_kernel(q, k, sigma2)
                * np.exp(np.sum(k * k, -1) / (2 * sigma2)))
    np.testing.assert_allclose(factored, softmax_sim, rtol=1e-12)
    # the step of the derivation: -||q-k||^2 = -||q||^2 - ||k||^2 + 2 q.k
    expanded = -np.sum(q * q, -1) - np.sum(k * k, -1) + 2 * np.sum(q * k, -1)
    np.testing.assert_allclose(-np.sum((q - k) ** 2, -1), expanded, atol=1e-10)


def test_softmax_attention_equals_gaussian_kernel_attention_with_norm_factors():
    """Eq. (1) with sim_softmax equals softmax attention; the query factor cancels, the key factor stays."""
    d, n, m = 16, 12, 5
    q, k = rng(1).normal(size=(2, n, d))
    v = rng(2).normal(size=(n, m))
    sigma2 = math.sqrt(d)
    weights = gaussian_kernel(q[:, None], k[None], sigma2) * np.exp(np.sum(k * k, -1) / (2 * sigma2))[None]
    out = weights @ v / weights.sum(-1, keepdims=True)
    expected = ka.scaled_dot_product_attention(*(torch.from_numpy(x) for x in (q, k, v)))
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-10)


# ----------------------------------------------------------------------------------------------------------------------
# 3(a)ii: random Fourier features. E[phi_random(q).phi_random(k)] = exp(-||q-k||^2 / (2 sigma^2)) needs
# w ~ N(0, sigma^-2 I); with w ~ N(0, sigma^2 I) (eq. 5 as printed) the expectation is exp(-sigma^2 ||q-k||^2 / 2).
# ----------------------------------------------------------------------------------------------------------------------


def phi_random(x, omega):
    """Eq. (4): sqrt(1/n_random) [sin(w_i.x) .., cos(w_i.x) ..], i = 1 .. n_random; x (N, D), omega (D, n_random)."""
    projection = x @ omega
    return np.concatenate([np.sin(projection), np.cos(projection)], -1) / math.sqrt(omega.shape[1])


def test_random_fourier_features_estimate_the_gaussian_kernel_with_the_right_variance():
    d, n_random = 4, 400_000
    sigma2 = math.sqrt(d)
    q, k = rng(3).normal(size=(2, 6, d)) * 0.7
    gaussian = rng(4).normal(size=(d, n_random))
    right = np.sum(phi_random(q, gaussian / math.sqrt(sigma2)) * phi_random(k, gaussian / math.sqrt(sigma2)), -1)
    printed = np.sum(phi_random(q, gaussian * math.sqrt(sigma2)) * phi_random(k, gaussian * math.sqrt(sigma2)), -1)
    np.testing.assert_allclose(right, gaussian_kernel(q, k, sigma2), atol=5e-3)
    np.testing.assert_allclose(printed, np.exp(-sigma2 * np.sum((q - k) ** 2, -1) / 2), atol=5e-3)
    # the module's RandomFourierFeatures uses the right variance
    torch.manual_seed(RNG_SEED)
    rff = ka.RandomFourierFeatures(d, n_random).double()
    module = (rff(torch.from_numpy(q)) * rff(torch.from_numpy(k))).sum(-1).numpy()
    np.testing.assert_allclose(module, gaussian_kernel(q, k, sigma2), atol=5e-3)


def test_softmax_random_features_estimate_exp_qk_over_sqrt_d():
    """phi_sm(x) = exp(||x||^2 / (2 sigma^2)) phi_random(x): E[phi_sm(q).phi_sm(k)] = exp(q.k / sqrt(D))."""
    d, n_random = 8, 200_000
    q, k = rng(5).normal(size=(2, 6, d)) * 0.5
    torch.manual_seed(RNG_SEED)
    features = ka.SoftmaxRandomFourierFeatures(d, n_random).double()
    estimate = (features(torch.from_numpy(q)) * features(torch.from_numpy(k))).sum(-1).numpy()
    np.testing.assert_allclose(estimate, np.exp(np.sum(q * k, -1) / math.sqrt(d)), rtol=2e-2)
    assert features.n_features == 2 * n_random


# ----------------------------------------------------------------------------------------------------------------------
# 3(a)iii: the error of random-feature attention falls with n_random (about n_random^-1/2) and grows with D
# ----------------------------------------------------------------------------------------------------------------------


def rff_attention_error(d, n_random, n=64, m=8, seeds=6):
    """Mean relative error ||V'_rff - V'_softmax|| / ||V'_softmax|| over `seeds` draws (numpy, independent)."""
    errors = []
    for seed in range(seeds):
        g = rng(100 + seed)
        q, k = g.normal(size=(2, n, d)) * 0.5                         # entries of order 1, norms grow like sqrt(D)
        v = g.normal(size=(n, m))
        scores = np.exp(q @ k.T / math.sqrt(d))
        exact = scores @ v / scores.sum(-1, keepdims=True)
        omega = g.normal(size=(d, n_random)) / d ** 0.25              # w ~ N(0, sigma^-2 I), sigma^2 = sqrt(D)
        phi_q = np.exp(np.sum(q * q, -1, keepdims=True) / (2 * math.sqrt(d))) * phi_random(q, omega)
        phi_k = np.exp(np.sum(k * k, -1, keepdims=True) / (2 * math.sqrt(d))) * phi_random(k, omega)
        approx = phi_q @ (phi_k.T @ v) / (phi_q @ phi_k.sum(0))[:, None]
        errors.append(np.linalg.norm(approx - exact) / np.linalg.norm(exact))
    return float(np.mean(errors))


def test_random_feature_error_falls_with_d_random_and_grows_with_d():
    """Monte Carlo error ~ D_r^-1/2 (16x the features: about 4x less error); the factors exp(||x||^2 / (2 sqrt(D)))
    and the kernel's spread grow with D, so at equal D_r a larger D gives a larger error."""
    n_randoms, dims = (16, 256, 4096), (4, 16, 64)
    error = {(d, r): rff_attention_error(d, r) for d in dims for r in n_randoms}
    for d in dims:
        assert error[d, 16] > error[d, 256] > error[d, 4096], error
        assert 2.5 < error[d, 256] / error[d, 4096] < 6.5, error
    for r in n_randoms:
        assert error[4, r] < error[16, r] < error[64, r], error


# ----------------------------------------------------------------------------------------------------------------------
# 1(c): p_{t+1} = M p_t with M block-diagonal rotations [[cos w_i, sin w_i], [-sin w_i, cos w_i]] acting on
# (p_t[2i], p_t[2i+1]) = (sin t w_i, cos t w_i)
# ----------------------------------------------------------------------------------------------------------------------


def positional_encoding(t, d):
    """p_t[2i] = sin(t w_i), p_t[2i+1] = cos(t w_i), w_i = 10000^(-2i/d); t (T,) -> (T, d)."""
    w = 10000.0 ** (-np.arange(0, d, 2) / d)
    p = np.empty((len(t), d))
    p[:, 0::2], p[:, 1::2] = np.sin(np.outer(t, w)), np.cos(np.outer(t, w))
    return p


def shift_matrix_closed_form(d, shift=1):
    """The derived M, from sin((t+k)w) = sin(tw) cos(kw) + cos(tw) sin(kw) and
    cos((t+k)w) = cos(tw) cos(kw) - sin(tw) sin(kw)."""
    m = np.zeros((d, d))
    for i, w in enumerate(10000.0 ** (-np.arange(0, d, 2) / d)):
        c, s = math.cos(shift * w), math.sin(shift * w)
        m[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[c, s], [-s, c]]
    return m


@pytest.mark.parametrize("d", [2, 8, 64])
def test_shift_matrix_maps_p_t_to_p_t_plus_1(d):
    t = np.arange(0, 200)
    p = positional_encoding(t, d)
    closed = shift_matrix_closed_form(d)
    np.testing.assert_allclose(p[:-1] @ closed.T, p[1:], atol=1e-10)            # M p_t = p_{t+1}, every t
    module = ka.positional_shift_matrix(d, dtype=torch.float64).numpy()
    np.testing.assert_allclose(module, closed, atol=1e-12)
    module_p = ka.sinusoidal_positional_encoding(len(t), d, dtype=torch.float64).numpy()
    np.testing.assert_allclose(module_p, p, atol=1e-10)
    np.testing.assert_allclose(module_p[:-1] @ module.T, module_p[1:], atol=1e-10)
    np.testing.assert_allclose(closed @ closed.T, np.eye(d), atol=1e-12)          # a rotation: orthogonal
    # the transposed sign convention [[cos, -sin], [sin, cos]] is wrong for this (sin, cos) ordering (unless w = 0)
    assert not np.allclose(p[:-1] @ closed, p[1:], atol=1e-6)


@pytest.mark.parametrize("shift", [0, 3, -2])
def test_shift_by_k_is_m_to_the_k(shift):
    d = 16
    closed = shift_matrix_closed_form(d, shift)
    np.testing.assert_allclose(closed, np.linalg.matrix_power(shift_matrix_closed_form(d), shift), atol=1e-10)
    np.testing.assert_allclose(ka.positional_shift_matrix(d, shift=shift, dtype=torch.float64).numpy(), closed,
                               atol=1e-12)
    p = positional_encoding(np.arange(10, 30), d)
    np.testing.assert_allclose(p @ closed.T, positional_encoding(np.arange(10 + shift, 30 + shift), d), atol=1e-10)


# ----------------------------------------------------------------------------------------------------------------------
# 3(b): causal kernel attention V'_i = phi(Q_i)^T S_i / phi(Q_i)^T Z_i with S_i, Z_i of eq. (6)
# ----------------------------------------------------------------------------------------------------------------------


def causal_by_recurrence(phi_q, phi_k, v):
    """Eq. (6) with numpy loops: S_i = S_{i-1} + phi(K_i) V_i^T, Z_i = Z_{i-1} + phi(K_i); (N, F), (N, F), (N, M)."""
    n, f = phi_q.shape
    s, z, out = np.zeros((f, v.shape[1])), np.zeros(f), np.empty((n, v.shape[1]))
    for i in range(n):
        s += np.outer(phi_k[i], v[i])
        z += phi_k[i]
        out[i] = phi_q[i] @ s / (phi_q[i] @ z)
    return out


def causal_masked_attention(phi_q, phi_k, v):
    """Eq. (1) with sim(Q_i, K_j) = phi(Q_i).phi(K_j) and the sums cut at j <= i (numpy loops)."""
    n = len(phi_q)
    out = np.empty((n, v.shape[1]))
    for i in range(n):
        sims = np.array([phi_q[i] @ phi_k[j] for j in range(i + 1)])
        out[i] = sims @ v[: i + 1] / sims.sum()
    return out


def positive_features(n, f, m, seed):
    g = rng(seed)
    return g.uniform(0.1, 1.0, size=(n, f)), g.uniform(0.1, 1.0, size=(n, f)), g.normal(size=(n, m))


@pytest.mark.parametrize("n, f, m, chunk", [(1, 3, 2, 4), (37, 6, 5, 8), (40, 4, 3, 64), (33, 5, 4, 1)])
def test_causal_recurrence_equals_masked_kernel_attention_and_the_module(n, f, m, chunk):
    phi_q, phi_k, v = positive_features(n, f, m, seed=n)
    recurrence = causal_by_recurrence(phi_q, phi_k, v)
    np.testing.assert_allclose(recurrence, causal_masked_attention(phi_q, phi_k, v), rtol=1e-10)
    tq, tk, tv = (torch.from_numpy(x) for x in (phi_q, phi_k, v))
    eps = 0.0
    np.testing.assert_allclose(ka.causal_linear_attention(tq, tk, tv, chunk_size=chunk, eps=eps).numpy(), recurrence,
                               rtol=1e-10)
    np.testing.assert_allclose(ka.causal_linear_attention_reference(tq, tk, tv, eps=eps).numpy(), recurrence,
                               rtol=1e-10)
    quadratic = ka.kernel_attention_quadratic(tq, tk, tv, mask=ka.causal_mask(n), eps=eps).numpy()
    np.testing.assert_allclose(quadratic, recurrence, rtol=1e-10)


def test_causal_softmax_attention_is_the_masked_sum():
    """Causal eq. (1) with the exact softmax similarity equals SDPA with the causal mask."""
    n, d, m = 20, 8, 4
    q, k = rng(7).normal(size=(2, n, d))
    v = rng(8).normal(size=(n, m))
    sims = np.exp(q @ k.T / math.sqrt(d)) * np.tri(n)
    expected = sims @ v / sims.sum(-1, keepdims=True)
    got = ka.scaled_dot_product_attention(*(torch.from_numpy(x) for x in (q, k, v)), mask=ka.causal_mask(n))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


# ----------------------------------------------------------------------------------------------------------------------
# 2(d)ii: gradient of the loss w.r.t. an attention logit s_ij: a_ij (g_ij - sum_k a_ik g_ik), g_ij = dL/dout_i . v_j,
# so gradient descent raises s_ij (-dL/ds_ij > 0) exactly for the keys whose value lowers the loss more than average
# ----------------------------------------------------------------------------------------------------------------------


def test_attention_logit_gradient_formula():
    n, m = 7, 4
    torch.manual_seed(RNG_SEED)
    logits = torch.randn(n, n, dtype=torch.float64, requires_grad=True)
    v, target = torch.randn(n, m, dtype=torch.float64), torch.randn(n, m, dtype=torch.float64)
    weights = torch.softmax(logits, dim=-1)
    out = weights @ v
    loss = ((out - target) ** 2).sum()
    loss.backward()
    d_out = 2 * (out - target).detach()                                    # dL/dout_i (n, m)
    a = weights.detach()
    g = d_out @ v.T                                                        # g_ij = dL/dout_i . v_j (n, n)
    formula = a * (g - (a * g).sum(-1, keepdim=True))
    np.testing.assert_allclose(logits.grad.numpy(), formula.numpy(), rtol=1e-10, atol=1e-12)
    uniform = torch.full((n, n), 1.0 / n, dtype=torch.float64)             # untrained: a_ij = 1/N
    np.testing.assert_allclose((uniform * (g - (uniform * g).sum(-1, keepdim=True))).numpy(),
                               ((g - g.mean(-1, keepdim=True)) / n).numpy(), rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# Costs: FLOPs counted by torch (matrix products; element-wise ops are lower order) and the largest intermediate
# ----------------------------------------------------------------------------------------------------------------------


def flops(fn, *args, **kwargs):
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()


def largest_intermediate(fn, *args, **kwargs):
    with LargestIntermediate() as mode:
        fn(*args, **kwargs)
    return mode.largest


def tensors(*shapes):
    torch.manual_seed(RNG_SEED)
    return [torch.rand(*s, dtype=torch.float64) + 0.1 for s in shapes]


@pytest.mark.parametrize("f, m", [(8, 4), (32, 16)])
def test_linear_attention_costs_4_n_f_m_flops_linear_in_n(f, m):
    """Non-causal eq. (2) right to left: phi_K^T V (2 N F M) then phi_Q (phi_K^T V) (2 N F M); normaliser O(N F)."""
    for n in (64, 128, 512):
        count = flops(ka.linear_attention, *tensors((n, f), (n, f), (n, m)))
        assert 4 * n * f * m <= count <= 4 * n * f * (m + 1), (n, f, m, count)
        assert largest_intermediate(ka.linear_attention, *tensors((n, f), (n, f), (n, m))) <= n * max(f, m) + f * m


def test_softmax_attention_costs_2_n2_d_plus_m_flops_quadratic_in_n():
    d, m = 16, 8
    for n in (64, 128, 256):
        count = flops(ka.scaled_dot_product_attention, *tensors((n, d), (n, d), (n, m)))
        assert count == 2 * n * n * (d + m), (n, count)
        assert largest_intermediate(ka.scaled_dot_product_attention, *tensors((n, d), (n, d), (n, m))) >= n * n


def test_random_feature_attention_costs_o_n_d_random_times_d_plus_m():
    """3(a)ii: features 2 x (2 N D D_r) (w.x for q and k) + attention 4 N (2 D_r) M = 4 N D_r (D + 2 M)."""
    d, m = 16, 8
    for n, n_random in [(64, 32), (256, 32), (256, 128)]:
        torch.manual_seed(RNG_SEED)
        features = ka.SoftmaxRandomFourierFeatures(d, n_random).double()
        q, k, v = tensors((n, d), (n, d), (n, m))

        def random_feature_attention():
            return ka.linear_attention(features(q, is_query=True), features(k), v)

        count = flops(random_feature_attention)
        leading = 4 * n * n_random * (d + 2 * m)
        assert leading <= count <= leading + 4 * n * n_random, (n, n_random, count, leading)


@pytest.mark.parametrize("chunk", [8, 32])
def test_chunked_causal_attention_is_linear_in_n(chunk):
    """3(b) chunked: per chunk C^2 (F + M) inside, C F M to read and to update S: 2 N C (F + M) + 4 N F M + O(N F)."""
    f, m = 16, 8
    counts = {}
    for n in (128, 256, 512):
        counts[n] = flops(ka.causal_linear_attention, *tensors((n, f), (n, f), (n, m)), chunk_size=chunk)
        leading = 2 * n * chunk * (f + m) + 4 * n * f * m
        assert leading <= counts[n] <= leading + 2 * n * f * 2, (n, chunk, counts[n], leading)
        biggest = largest_intermediate(ka.causal_linear_attention, *tensors((n, f), (n, f), (n, m)), chunk_size=chunk)
        assert biggest <= max(n * max(f, m), chunk * chunk, f * m), (n, chunk, biggest)   # never N^2 nor N F M
    assert counts[512] == 2 * counts[256] == 4 * counts[128]


def test_causal_reference_keeps_o_f_m_state_and_n_f_m_time():
    """3(b) recurrence: each step adds phi(K_i) V_i^T (F M) and reads phi(Q_i)^T S_i (2 F M): O(N F M) time,
    O(F M) state (outputs N M), never an N x N matrix."""
    f, m = 6, 5
    for n in (16, 64):
        count = flops(ka.causal_linear_attention_reference, *tensors((n, f), (n, f), (n, m)))
        assert 2 * n * f * m <= count <= 4 * n * f * (m + 1), (n, count)
        assert largest_intermediate(ka.causal_linear_attention_reference, *tensors((n, f), (n, f), (n, m))) \
            <= max(n * m, f * m)
