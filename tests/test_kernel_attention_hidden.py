"""Hidden tests for kernel_attention.py (never released). Same style as tests/test_kernel_attention.py, other inputs
and cases: every result is checked against an independent reference (torch, closed forms, explicit loops).

Run: python -m pytest tests/test_kernel_attention_hidden.py
(The module under test is the first `kernel_attention` on the path: put a submission's folder on PYTHONPATH to grade
it; the repository root is only a fallback.)
"""

import io
import math

import pytest
import torch
from support import copy_into_torch_mha, kernel_attention_loops, randn  # noqa: E402

import kernel_attention as ka  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


def softmax_attention_loops(q, k, v, allowed):
    """Softmax attention with explicit loops, q (N_q, D), k (N_k, D), v (N_k, M); rows with no allowed key -> 0."""
    out = torch.zeros(q.shape[0], v.shape[1], dtype=v.dtype)
    for i in range(q.shape[0]):
        keys = [j for j in range(k.shape[0]) if allowed(i, j)]
        if not keys:
            continue
        logits = torch.stack([q[i] @ k[j] / math.sqrt(q.shape[1]) for j in keys])
        weights = torch.exp(logits - logits.max())
        weights = weights / weights.sum()
        out[i] = sum(w * v[j] for w, j in zip(weights, keys))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Masks and softmax attention
# ----------------------------------------------------------------------------------------------------------------------


def test_rectangular_causal_masks():
    assert ka.causal_mask(3, 5).tolist() == [[j <= i for j in range(5)] for i in range(3)]
    assert ka.causal_mask(4, 2).tolist() == [[j <= i for j in range(2)] for i in range(4)]
    assert ka.causal_mask(1).tolist() == [[True]]


def test_sdpa_against_loops_with_padding_and_causal():
    q, k, v = randn(2, 6, 5), randn(2, 6, 5), randn(2, 6, 3)
    is_token = torch.tensor([[True, True, False, True, True, False], [False, True, True, True, True, True]])
    mask = ka.combine_masks(is_token[:, None, :], ka.causal_mask(6))          # (B, N_q, N_k)
    out = ka.scaled_dot_product_attention(q, k, v, mask)
    for b in range(2):
        expected = softmax_attention_loops(q[b], k[b], v[b], lambda i, j: bool(is_token[b, j]) and j <= i)
        torch.testing.assert_close(out[b], expected)
    assert torch.all(out[1, 0] == 0)                           # query 0 of sequence 1 sees only a padded key


def test_sdpa_float32_matches_torch_with_broadcast_mask():
    q, k, v = randn(3, 2, 4, 8, dtype=torch.float32), randn(3, 2, 9, 8, dtype=torch.float32), randn(
        3, 2, 9, 5, dtype=torch.float32)
    mask = torch.rand(4, 9) > 0.5
    mask[:, 2] = True
    torch.testing.assert_close(ka.scaled_dot_product_attention(q, k, v, mask),
                               torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                               atol=1e-5, rtol=1e-5)


def test_all_false_mask_gives_zeros_and_finite_gradients():
    q, k, v = randn(2, 3, 4).requires_grad_(), randn(2, 5, 4), randn(2, 5, 2)
    mask = torch.zeros(2, 3, 5, dtype=torch.bool)
    mask[0, 0, 1] = True
    out, weights = ka.scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    torch.testing.assert_close(out[0, 0], v[0, 1])
    assert torch.all(out[1] == 0) and torch.all(weights[1] == 0)
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_extreme_logits_both_signs():
    q = torch.tensor([[[1e2, 1e2], [-1e2, -1e2], [1e2, -1e2]]])
    k = torch.tensor([[[1e2, 1e2], [-1e2, -1e2]]])
    v = torch.tensor([[[5.0, 0.0], [0.0, 7.0]]])
    out = ka.scaled_dot_product_attention(q, k, v)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0, :2], torch.tensor([[5.0, 0.0], [0.0, 7.0]]))
    torch.testing.assert_close(out[0, 2], torch.tensor([2.5, 3.5]))     # logits tie at 0: equal weights


def test_float16_extreme_logits_finite():
    q = (torch.ones(1, 2, 16) * 30).half()                      # q . k = 14400 would overflow float16
    k = torch.cat([torch.ones(1, 1, 16) * 30, -torch.ones(1, 1, 16) * 30], dim=1).half()
    v = torch.tensor([[[1.0], [2.0]]]).half()
    out = ka.scaled_dot_product_attention(q, k, v)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), torch.ones(1, 2, 1))


def test_multi_head_attention_without_bias_and_with_attn_mask():
    mha = ka.MultiHeadAttention(12, 4, bias=False).double()
    ref = copy_into_torch_mha(mha)
    x = randn(2, 5, 12)
    attn_mask = torch.rand(5, 5) > 0.3
    attn_mask[:, 0] = True
    out, weights = mha(x, x, x, attn_mask=attn_mask, return_weights=True)
    ref_out, ref_weights = ref(x, x, x, attn_mask=~attn_mask, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-5, rtol=1e-5)


def test_multi_head_cross_attention_with_padding():
    mha = ka.MultiHeadAttention(8, 2, d_key_value=10).double()
    ref = copy_into_torch_mha(mha)
    query, memory = randn(2, 3, 8), randn(2, 6, 10)
    is_token = torch.tensor([[True] * 6, [True] * 2 + [False] * 4])
    out, weights = mha(query, memory, memory, key_padding_mask=is_token, return_weights=True)
    ref_out, ref_weights = ref(query, memory, memory, key_padding_mask=~is_token, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-5, rtol=1e-5)


def test_attention_dropout_only_in_training():
    mha = ka.MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 4, 8)
    mha.eval()
    no_dropout = ka.MultiHeadAttention(8, 2)
    no_dropout.load_state_dict(mha.state_dict())
    torch.testing.assert_close(mha(x, x, x)[0], no_dropout(x, x, x)[0])
    mha.train()
    assert not torch.allclose(mha(x, x, x)[0], no_dropout(x, x, x)[0])


def test_heads_round_trip_with_odd_sizes():
    x = randn(3, 7, 10)
    heads = ka.split_heads(x, 5)
    assert heads.shape == (3, 5, 7, 2)
    torch.testing.assert_close(heads[1, 3, 4], x[1, 4, 6:8])
    torch.testing.assert_close(ka.merge_heads(heads), x)


# ----------------------------------------------------------------------------------------------------------------------
# Positional encoding
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [-2, 0, 5])
def test_shift_matrix_any_shift(shift):
    n = 64
    pe = ka.sinusoidal_positional_encoding(n, 10, dtype=torch.float64)
    m = ka.positional_shift_matrix(10, shift, dtype=torch.float64)
    ts = range(max(0, -shift), n - max(0, shift))
    for t in ts:
        torch.testing.assert_close(m @ pe[t], pe[t + shift], atol=1e-12, rtol=0)


def test_shift_matrices_compose():
    m = ka.positional_shift_matrix
    torch.testing.assert_close(m(12, 2, dtype=torch.float64) @ m(12, 3, dtype=torch.float64),
                               m(12, 5, dtype=torch.float64), atol=1e-12, rtol=0)


def test_positional_encoding_accurate_for_large_positions():
    pe = ka.sinusoidal_positional_encoding(10001, 4)
    assert pe.dtype == torch.get_default_dtype()
    assert pe[10000, 0].item() == pytest.approx(math.sin(10000.0), abs=1e-6)
    assert pe[10000, 3].item() == pytest.approx(math.cos(10000 * 10000 ** (-2 / 4)), abs=1e-6)


def test_positional_encoding_float32_shift_precision():
    pe = ka.sinusoidal_positional_encoding(500, 32)
    m = ka.positional_shift_matrix(32)
    torch.testing.assert_close(pe[:-1] @ m.T, pe[1:], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# Feature maps
# ----------------------------------------------------------------------------------------------------------------------


def mean_estimate(feature_map, q, k, draws):
    generator = torch.Generator().manual_seed(11)
    values = []
    for _ in range(draws):
        feature_map.redraw(generator)
        values.append((feature_map(q[None]) * feature_map(k[None])).sum().item())
    values = torch.tensor(values, dtype=torch.float64)
    return values.mean().item(), values.std().item() / math.sqrt(draws)


def test_rff_default_sigma_is_sqrt_d():
    q, k = torch.tensor([0.3, -0.5, 0.9, 0.0, 0.2, -0.4, 0.1, 0.6, -0.2]), torch.tensor(
        [-0.6, 0.1, 0.4, 0.5, -0.3, 0.2, 0.7, -0.1, 0.3])
    rff = ka.RandomFourierFeatures(9, 32)
    assert rff.sigma2 == pytest.approx(3.0)
    mean, error = mean_estimate(rff, q, k, 300)
    target = math.exp(-((q - k) ** 2).sum().item() / (2 * 3.0))
    assert abs(mean - target) < 5 * error + 1e-3


def test_rff_omega_holds_standard_normal_draws_and_forward_makes_the_w_i():
    """redraw (provided) draws g_i ~ N(0, I_D); forward uses w_i = g_i / sigma ~ N(0, sigma^-2 I), the distribution for
    which eq. (5) holds (the correction 3(a)ii asks for, so it is the student's code, not redraw's)."""
    rff = ka.RandomFourierFeatures(16, 4096, sigma2=2.5).double()
    assert rff.omega.shape == (16, 4096)
    assert abs(rff.omega.mean().item()) < 0.01 and abs(rff.omega.std().item() - 1) < 0.01
    x = torch.randn(3, 16, dtype=torch.float64)
    projection = x @ rff.omega / math.sqrt(2.5)
    expected = torch.cat([projection.sin(), projection.cos()], -1) / math.sqrt(4096)
    torch.testing.assert_close(rff(x), expected)


def test_random_features_batched_shapes():
    x = torch.randn(2, 3, 5, 6)
    for feature_map, width in [(ka.RandomFourierFeatures(6, 7), 14), (ka.SoftmaxRandomFourierFeatures(6, 7), 14),
                               (ka.FavorPositiveFeatures(6, 10), 10), (ka.PolynomialFeatureMap(6), 43),
                               (ka.EluFeatureMap(6), 6)]:
        assert feature_map.n_features == width
        assert feature_map(x).shape == (2, 3, 5, width)
        assert feature_map(x, is_query=True).shape == (2, 3, 5, width)


def test_favor_orthogonal_has_lower_variance_than_iid():
    q, k = torch.tensor([0.8, 0.6, -0.5, 0.4, 0.3, -0.2]), torch.tensor([0.7, 0.5, -0.6, 0.3, -0.4, 0.5])
    target = math.exp(q @ k / math.sqrt(6))
    results = {}
    for orthogonal in (True, False):
        favor = ka.FavorPositiveFeatures(6, 6, orthogonal=orthogonal, stabilize=False)
        mean, error = mean_estimate(favor, q, k, 400)
        assert abs(mean - target) < 5 * error
        results[orthogonal] = error
    assert results[True] < results[False]


def test_softmax_rff_attention_error_shrinks_with_more_features():
    q, k, v = 0.5 * randn(16, 4, dtype=torch.float32), 0.5 * randn(16, 4, dtype=torch.float32), randn(
        16, 3, dtype=torch.float32)
    exact = ka.scaled_dot_product_attention(q, k, v)
    errors = []
    for n_random in (2, 512):
        rff = ka.SoftmaxRandomFourierFeatures(4, n_random)
        trials = []
        for seed in range(5):
            rff.redraw(torch.Generator().manual_seed(seed))
            trials.append((ka.linear_attention(rff(q), rff(k), v, eps=0) - exact).abs().mean())
        errors.append(torch.stack(trials).median())
    assert errors[1] < 0.2 * errors[0]
    assert errors[1] < 0.1


def test_favor_stabilised_features_stay_finite_in_causal_attention():
    favor = ka.FavorPositiveFeatures(8, 32)
    q, k, v = 1e4 * torch.randn(1, 20, 8), 1e4 * torch.randn(1, 20, 8), torch.randn(1, 20, 4)
    phi_q, phi_k = favor(q, is_query=True), favor(k)
    assert torch.isfinite(phi_q).all() and torch.isfinite(phi_k).all()
    assert phi_q.amax(-1).min() > 0                            # the largest query feature never underflows
    assert torch.isfinite(ka.causal_linear_attention(phi_q, phi_k, v, chunk_size=6)).all()
    assert torch.isfinite(ka.causal_linear_attention_reference(phi_q, phi_k, v)).all()


def test_favor_stabilisation_cancels_in_causal_attention():
    exact = ka.FavorPositiveFeatures(4, 12, stabilize=False).double()
    stable = ka.FavorPositiveFeatures(4, 12).double()
    stable.omega = exact.omega.clone()
    q, k, v = randn(3, 9, 4), randn(3, 9, 4), randn(3, 9, 2)
    torch.testing.assert_close(ka.causal_linear_attention(stable(q, is_query=True), stable(k), v, 4, eps=0),
                               ka.causal_linear_attention(exact(q, is_query=True), exact(k), v, 4, eps=0))


# ----------------------------------------------------------------------------------------------------------------------
# Linear attention
# ----------------------------------------------------------------------------------------------------------------------


def elu_kernel(a, b):
    return (torch.nn.functional.elu(a) + 1) @ (torch.nn.functional.elu(b) + 1)


def test_elu_linear_attention_against_loops():
    q, k, v = randn(4, 5), randn(8, 5), randn(8, 3)
    elu = ka.EluFeatureMap(5)
    torch.testing.assert_close(ka.linear_attention(elu(q), elu(k), v, eps=0),
                               kernel_attention_loops(q, k, v, elu_kernel, lambda i, j: True))


def test_all_keys_padded_gives_zero_output():
    phi_q, phi_k, v = torch.rand(2, 3, 4), torch.rand(2, 5, 4), torch.randn(2, 5, 2)
    is_token = torch.tensor([[False] * 5, [True] * 5])
    for eps in (0.0, 1e-6):
        out = ka.linear_attention(phi_q, phi_k, v, key_padding_mask=is_token, eps=eps)
        assert torch.isfinite(out).all() and torch.all(out[0] == 0)


def test_linear_attention_batch_broadcast():
    phi_q, phi_k, v = torch.rand(3, 4, 6, dtype=torch.float64), torch.rand(1, 7, 6, dtype=torch.float64), torch.rand(
        1, 7, 2, dtype=torch.float64)
    out = ka.linear_attention(phi_q, phi_k, v)
    assert out.shape == (3, 4, 2)
    torch.testing.assert_close(out, ka.kernel_attention_quadratic(phi_q, phi_k, v))


@pytest.mark.parametrize("n, chunk_size", [(2, 32), (31, 32), (33, 32), (64, 32), (50, 7)])
def test_causal_variants_agree(n, chunk_size):
    poly = ka.PolynomialFeatureMap(2)
    q, k, v = randn(1, 2, n, 2), randn(1, 2, n, 2), randn(1, 2, n, 3)
    phi_q, phi_k = poly(q), poly(k)
    reference = ka.causal_linear_attention_reference(phi_q, phi_k, v)
    torch.testing.assert_close(ka.causal_linear_attention(phi_q, phi_k, v, chunk_size=chunk_size), reference)
    torch.testing.assert_close(ka.kernel_attention_quadratic(phi_q, phi_k, v, ka.causal_mask(n)), reference)


def test_causal_with_padding_matches_masked_quadratic():
    favor = ka.FavorPositiveFeatures(4, 16).double()
    q, k, v = randn(2, 10, 4), randn(2, 10, 4), randn(2, 10, 3)
    is_token = torch.tensor([[True] * 10, [True] * 3 + [False] * 7])
    phi_q, phi_k = favor(q, is_query=True), favor(k)
    chunked = ka.causal_linear_attention(phi_q, phi_k, v, chunk_size=3, key_padding_mask=is_token)
    masked = ka.kernel_attention_quadratic(phi_q, phi_k, v, ka.combine_masks(is_token[:, None, :], ka.causal_mask(10)))
    torch.testing.assert_close(chunked, masked)


def test_reference_causal_first_position_is_first_value():
    phi_q, phi_k, v = torch.rand(5, 3) + 0.1, torch.rand(5, 3) + 0.1, torch.randn(5, 4)
    out = ka.causal_linear_attention_reference(phi_q, phi_k, v, eps=0)
    torch.testing.assert_close(out[0], v[0])
    torch.testing.assert_close(out[-1], ka.linear_attention(phi_q[-1:], phi_k, v, eps=0)[0])


# ----------------------------------------------------------------------------------------------------------------------
# Performer layer
# ----------------------------------------------------------------------------------------------------------------------


def test_performer_polynomial_weights_are_exact_kernel_weights():
    performer = ka.PerformerAttention(6, 2, feature_map="polynomial").double()
    x = 0.5 * randn(1, 4, 6)
    out, weights = performer(x, x, x, return_weights=True)
    q = ka.split_heads(performer.q_proj(x), 2)
    k = ka.split_heads(performer.k_proj(x), 2)
    for h in range(2):
        kernel = (1 + q[0, h] @ k[0, h].T) ** 2
        torch.testing.assert_close(weights[0, h], kernel / kernel.sum(-1, keepdim=True))
    assert out.shape == (1, 4, 6)


def test_performer_cross_attention_and_half_precision():
    performer = ka.PerformerAttention(8, 2, d_key_value=5, n_random=16)
    query, memory = torch.randn(2, 3, 8), torch.randn(2, 7, 5)
    out, weights = performer(query, memory, memory)
    assert out.shape == (2, 3, 8) and weights is None
    half = performer.to(torch.bfloat16)
    out16, _ = half(query.bfloat16(), memory.bfloat16(), memory.bfloat16())
    assert out16.dtype == torch.bfloat16 and torch.isfinite(out16.float()).all()


def test_performer_redraw_in_training_only_and_backward_after_redraw():
    performer = ka.PerformerAttention(8, 2, n_random=8, redraw_features=True)
    x = torch.randn(1, 5, 8)
    performer.eval()
    omega = performer.feature_map.omega.clone()
    performer(x, x, x)
    assert torch.equal(omega, performer.feature_map.omega)
    performer.train()
    first = performer(x, x, x, causal=True)[0]
    second = performer(x, x, x, causal=True)[0]
    assert not torch.equal(omega, performer.feature_map.omega)
    (first.sum() + second.sum()).backward()                    # redraw must not break the earlier graph
    assert performer.q_proj.weight.grad is not None


def test_performer_state_dict_round_trip_keeps_features():
    performer = ka.PerformerAttention(8, 2, n_random=8)
    buffer = io.BytesIO()
    torch.save(performer.state_dict(), buffer)
    buffer.seek(0)
    copy = ka.PerformerAttention(8, 2, n_random=8)
    copy.load_state_dict(torch.load(buffer))
    x = torch.randn(1, 4, 8)
    torch.testing.assert_close(copy(x, x, x)[0], performer(x, x, x)[0])


def test_redraw_with_generator_leaves_global_rng_alone():
    rff = ka.RandomFourierFeatures(3, 4)
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    rff.redraw(torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(1), expected)
    torch.manual_seed(9)
    rff.redraw()
    first = rff.omega.clone()
    torch.manual_seed(9)
    rff.redraw()
    assert torch.equal(first, rff.omega)


# ----------------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda: ka.scaled_dot_product_attention(torch.ones(2, 3, 4, dtype=torch.long), torch.randn(2, 3, 4),
                                             torch.randn(2, 3, 4)), "floating"),
    (lambda: ka.scaled_dot_product_attention(torch.randn(4), torch.randn(4), torch.randn(4)), r"\(4,\)"),
    (lambda: ka.scaled_dot_product_attention(torch.randn(2, 3, 4), torch.randn(3, 5, 4), torch.randn(3, 5, 4)),
     r"\(2, 3, 4\).*\(3, 5, 4\)"),
    (lambda: ka.split_heads(torch.randn(2, 3, 10), 4), r"\(2, 3, 10\)"),
    (lambda: ka.MultiHeadAttention(10, 4), "n_heads"),
    (lambda: ka.MultiHeadAttention(8, 2)(torch.randn(1, 3, 6), torch.randn(1, 3, 8), torch.randn(1, 3, 8)),
     r"\(1, 3, 6\)"),
    (lambda: ka.causal_linear_attention(torch.rand(3, 2), torch.rand(4, 2), torch.rand(4, 2)), r"\(3, 2\).*\(4, 2\)"),
    (lambda: ka.causal_linear_attention(torch.rand(3, 2), torch.rand(3, 2), torch.rand(3, 2), chunk_size=0),
     "chunk_size"),
    (lambda: ka.padding_mask(torch.ones(2, 3)), "bool"),
    (lambda: ka.combine_masks(torch.ones(2, 3, dtype=torch.bool), torch.ones(4, 3, dtype=torch.bool)),
     r"\(2, 3\).*\(4, 3\)"),
    (lambda: ka.SoftmaxRandomFourierFeatures(4, 0), "n_random"),
    (lambda: ka.RandomFourierFeatures(4, 3)(torch.randn(2, 5)), r"\(2, 5\)"),
    (lambda: ka.sinusoidal_positional_encoding(4, 5), "even"),
    (lambda: ka.PerformerAttention(8, 2, feature_map="gaussian"), "feature_map"),
    (lambda: ka.PerformerAttention(8, 2)(torch.randn(1, 3, 8), torch.randn(1, 4, 8), torch.randn(1, 4, 8),
                                         causal=True), "N_q == N_k"),
])
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
