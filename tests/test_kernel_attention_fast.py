"""The benchmark's fused FAVOR+ path (bench/fused_favor.py: favor_attention_fused) equals the readable path:
FavorPositiveFeatures + linear_attention / causal_linear_attention, as solved here, alone and inside
PerformerAttention.

Instructor-only: it compares against the solved functions, so it must never reach the student release (course
`hidden_paths`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

import kernel_attention as ka  # noqa: E402
from bench import fused_favor as ka_fused  # noqa: E402
from bench.measure import peak_extra_memory  # noqa: E402

RTOL = 1e-5


def assert_equal_rel(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    """Equal within rtol relative, elementwise, plus rtol of the largest |expected| (outputs near 0 carry no scale)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-30))


def readable(q, k, v, fm, causal, mask=None, eps=1e-6, chunk_size=64):
    """The reference: the feature map, then the readable attention function."""
    phi_q, phi_k = fm(q, is_query=True), fm(k)
    if causal:
        return ka.causal_linear_attention(phi_q, phi_k, v, chunk_size, eps, key_padding_mask=mask)
    return ka.linear_attention(phi_q, phi_k, v, key_padding_mask=mask, eps=eps)


def make_map(d, m, seed=0, **kwargs):
    fm = ka.FavorPositiveFeatures(d, m, **kwargs)
    fm.redraw(torch.Generator().manual_seed(seed))
    return fm


def inputs(shape_q, shape_k, width, seed=0, dtype=torch.float32, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    q = scale * torch.randn(*shape_q, generator=gen, dtype=dtype)
    k = scale * torch.randn(*shape_k, generator=gen, dtype=dtype)
    v = torch.randn(*shape_k[:-1], width, generator=gen, dtype=dtype)
    return q, k, v


SHAPES = [  # (batch dims, N, D, m, M)
    ((2, 3), 77, 16, 32, 16),
    ((1, 2), 1, 8, 8, 8),
    ((1,), 300, 32, 64, 24),
    ((), 129, 16, 16, 5),
    ((1, 8), 1024, 64, 256, 64),
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("eps", [0.0, 1e-6])
@pytest.mark.parametrize("batch, n, d, m, width", SHAPES)
def test_fused_equals_readable_float32(causal, eps, batch, n, d, m, width):
    fm = make_map(d, m)
    q, k, v = inputs((*batch, n, d), (*batch, n, d), width, scale=1.5)
    expected = readable(q, k, v, fm, causal, eps=eps)
    for chunk in (None, 1, 7, 64, 128, n + 3):
        with torch.no_grad():
            assert_equal_rel(ka_fused.favor_attention_fused(q, k, v, fm, causal, eps=eps, chunk_size=chunk), expected)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("eps", [0.0, 1e-6])
@pytest.mark.parametrize("chunk", [None, 3, 16, 50])
def test_fused_equals_readable_with_key_padding_masks(causal, eps, chunk):
    fm = make_map(16, 32, seed=1)
    q, k, v = inputs((3, 2, 61, 16), (3, 2, 61, 16), 12, seed=1)
    mask = torch.rand(3, 1, 61, generator=torch.Generator().manual_seed(2)) > 0.4     # broadcast over heads
    mask[1] = False                                                                  # one batch element all padded
    mask[2, :, :5] = False                                                           # leading padding
    k[~mask.expand(3, 2, 61)] = 7.0                              # large padded keys: they set the key maximum
    v[~mask.expand(3, 2, 61)] = float("nan")                     # padded values never leak (not even as 0 * nan)
    expected = readable(q, k, v, fm, causal, mask=mask, eps=eps)
    assert torch.isfinite(expected).all()
    actual = ka_fused.favor_attention_fused(q, k, v, fm, causal, key_padding_mask=mask, eps=eps, chunk_size=chunk)
    assert_equal_rel(actual, expected)
    assert (actual[1] == 0).all()                                # every key padded -> zero output, never NaN


def test_fused_non_causal_with_different_query_and_key_lengths_and_broadcast_batch():
    fm = make_map(8, 24, seed=3)
    q, k, v = inputs((2, 3, 40, 8), (1, 3, 90, 8), 6, seed=3)            # k, v broadcast over the batch of q
    mask = torch.rand(1, 1, 90, generator=torch.Generator().manual_seed(4)) > 0.3
    for eps in (0.0, 1e-6):
        expected = readable(q, k, v, fm, False, mask=mask, eps=eps)
        for chunk in (None, 7, 90):
            actual = ka_fused.favor_attention_fused(q, k, v, fm, key_padding_mask=mask, eps=eps, chunk_size=chunk)
            assert_equal_rel(actual, expected)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kwargs", [{"stabilize": False}, {"orthogonal": False}])
def test_fused_other_favor_settings(causal, kwargs):
    fm = make_map(16, 32, seed=5, **kwargs)
    q, k, v = inputs((2, 2, 70, 16), (2, 2, 70, 16), 8, seed=5, scale=0.7)
    for eps in (0.0, 1e-6):
        expected = readable(q, k, v, fm, causal, eps=eps)
        assert_equal_rel(ka_fused.favor_attention_fused(q, k, v, fm, causal, eps=eps, chunk_size=9), expected)


def test_fused_float64_is_exact_to_rounding():
    fm = make_map(16, 32, seed=6).double()
    q, k, v = inputs((2, 2, 100, 16), (2, 2, 100, 16), 8, seed=6, dtype=torch.float64, scale=2.0)
    for causal in (False, True):
        expected = readable(q, k, v, fm, causal)
        assert_equal_rel(ka_fused.favor_attention_fused(q, k, v, fm, causal, chunk_size=11), expected, rtol=1e-11)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
def test_fused_half_inputs_are_computed_in_float32(dtype, causal):
    fm = make_map(16, 32, seed=7)
    q, k, v = (t.to(dtype) for t in inputs((2, 2, 50, 16), (2, 2, 50, 16), 8, seed=7))
    mask = torch.rand(2, 1, 50, generator=torch.Generator().manual_seed(8)) > 0.3
    actual = ka_fused.favor_attention_fused(q, k, v, fm, causal, key_padding_mask=mask, eps=0.0, chunk_size=16)
    assert actual.dtype == dtype
    expected = readable(q.float(), k.float(), v.float(), fm, causal, mask=mask, eps=0.0)
    # Both are float32 results rounded once to the half dtype: equal up to one rounding step.
    torch.testing.assert_close(actual, expected.to(dtype))
    assert_equal_rel(actual.float(), expected, rtol={torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype])


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype, rtol", [(torch.float32, RTOL), (torch.float64, 1e-10)])
def test_fused_gradients_equal_readable(causal, dtype, rtol):
    """eps = 0 (PerformerAttention's default): the stabilising constants cancel, so detaching them changes nothing."""
    fm = make_map(16, 32, seed=9).to(dtype)
    q, k, v = inputs((2, 2, 45, 16), (2, 2, 45, 16), 8, seed=9, dtype=dtype)
    mask = torch.rand(2, 1, 45, generator=torch.Generator().manual_seed(10)) > 0.25
    grad_out = torch.randn(2, 2, 45, 8, generator=torch.Generator().manual_seed(11), dtype=dtype)
    grads = []
    for fn in (lambda q, k, v: readable(q, k, v, fm, causal, mask=mask, eps=0.0),
               lambda q, k, v: ka_fused.favor_attention_fused(q, k, v, fm, causal, key_padding_mask=mask, eps=0.0,
                                                        chunk_size=10)):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        fn(*leaves).backward(grad_out)
        grads.append([t.grad for t in leaves])
    for actual, expected in zip(grads[1], grads[0]):
        assert torch.isfinite(actual).all()
        assert_equal_rel(actual, expected, rtol=rtol)


def test_fused_never_holds_all_features():
    """N = 16384, m = 256, one head: each of phi(Q), phi(K) would be 16 MiB; the fused path peaks far below that."""
    fm = make_map(16, 256, seed=12)
    q, k, v = inputs((1, 1, 16384, 16), (1, 1, 16384, 16), 16, seed=12)
    features_bytes = 16384 * 256 * 4
    for causal in (False, True):
        with torch.no_grad():
            peak = peak_extra_memory(lambda: ka_fused.favor_attention_fused(q, k, v, fm, causal, eps=0.0),
                                     torch.device("cpu"))
        assert peak < features_bytes / 2, (causal, peak / 2**20)


def test_fused_empty_sequences_and_bad_inputs():
    fm = make_map(8, 8)
    q, k, v = inputs((1, 2, 0, 8), (1, 2, 0, 8), 4)
    for causal in (False, True):
        out = ka_fused.favor_attention_fused(q, k, v, fm, causal)
        assert out.shape == (1, 2, 0, 4)
    q, k, v = inputs((1, 2, 5, 8), (1, 2, 0, 8), 4)
    assert (ka_fused.favor_attention_fused(q, k, v, fm) == 0).all()        # no keys -> zero output (as the readable)
    q, k, v = inputs((1, 2, 5, 8), (1, 2, 6, 8), 4)
    with pytest.raises(ValueError, match="N_q == N_k"):
        ka_fused.favor_attention_fused(q, k, v, fm, causal=True)
    with pytest.raises(ValueError, match="FavorPositiveFeatures"):
        ka_fused.favor_attention_fused(q, k, v, ka.EluFeatureMap(8))
    with pytest.raises(ValueError, match="chunk_size"):
        ka_fused.favor_attention_fused(q, k, v, fm, chunk_size=0)
    with pytest.raises(ValueError, match="key_padding_mask"):
        ka_fused.favor_attention_fused(q, k, v, fm, key_padding_mask=torch.ones(1, 2, 5, dtype=torch.bool))


# ----------------------------------------------------------------------------------------------------------------------
# Inside PerformerAttention: the fused function in place of feature map + linear attention
# ----------------------------------------------------------------------------------------------------------------------


class FusedPerformer(ka.PerformerAttention):
    """PerformerAttention whose heads go through favor_attention_fused (what the benchmark times)."""

    def _attend(self, q, k, v, key_padding_mask, causal, attn_mask, return_weights):
        out_dtype = q.dtype
        q, k, v = ka._upcast(q, k, v)
        keys = key_padding_mask[:, None, :] if key_padding_mask is not None else None
        out = ka_fused.favor_attention_fused(q, k, v, self.feature_map, causal=causal, key_padding_mask=keys,
                                             eps=self.eps)
        return torch.nn.functional.dropout(out, self.dropout, self.training).to(out_dtype), None


def pair(**kwargs):
    """A PerformerAttention and a FusedPerformer with the same weights and features."""
    torch.manual_seed(13)
    slow = ka.PerformerAttention(16, 2, n_random=32, **kwargs)
    fast = FusedPerformer(16, 2, n_random=32, **kwargs)
    fast.load_state_dict(slow.state_dict())
    return slow.eval(), fast.eval()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_performer_fast_equals_default(causal, dtype):
    slow, fast = pair()
    x = torch.randn(3, 37, 16, generator=torch.Generator().manual_seed(14))
    mask = torch.ones(3, 37, dtype=torch.bool)
    mask[1, 30:] = False
    mask[2, :3] = False
    slow_out, _ = slow.float()(x, x, x, key_padding_mask=mask, causal=causal)
    fast_out, weights = fast.float()(x, x, x, key_padding_mask=mask, causal=causal)
    assert weights is None
    assert_equal_rel(fast_out, slow_out)
    if dtype != torch.float32:                                          # half modules and inputs, computed in float32
        slow_half, _ = slow.to(dtype)(x.to(dtype), x.to(dtype), x.to(dtype), key_padding_mask=mask, causal=causal)
        fast_half, _ = fast.to(dtype)(x.to(dtype), x.to(dtype), x.to(dtype), key_padding_mask=mask, causal=causal)
        assert fast_half.dtype == dtype
        torch.testing.assert_close(fast_half, slow_half, rtol=2e-2, atol=2e-2)


def test_performer_fast_gradients_equal_default():
    slow, fast = pair()
    x = torch.randn(2, 29, 16, generator=torch.Generator().manual_seed(15))
    for causal in (False, True):
        grads = []
        for module in (slow, fast):
            module.zero_grad()
            xi = x.clone().requires_grad_()
            module(xi, xi, xi, causal=causal)[0].square().sum().backward()
            grads.append([xi.grad, *(p.grad for p in module.parameters())])
        for actual, expected in zip(grads[1], grads[0]):
            assert_equal_rel(actual, expected, rtol=2e-5)


def test_the_students_module_holds_no_fused_path():
    """kernel_attention.py is what the homework asks and its readable reference paths: no fused function, no switch
    to one; the fused module lives in bench/, which the release never carries."""
    from grading.course import load_course

    course = load_course(ROOT / "grading" / "course.toml")
    assert not any(rel == "bench" or rel.startswith("bench/") for rel in course.release_files)
    source = (ROOT / "kernel_attention.py").read_text()
    assert "fused" not in source.lower() and "FUSED_CAUSAL_CHUNK" not in source
    assert "fast" not in ka.PerformerAttention.__init__.__code__.co_varnames
