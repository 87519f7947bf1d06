"""Analytic floating-point operation counts of the benchmarked attention variants.

Convention: one multiply-add = 2 FLOPs; a matmul (a x b) @ (b x c) costs 2 a b c. Shapes: B batch, H heads,
N sequence length (N_q = N_k = N), D query/key width, M value width, m feature count (FAVOR+: m = n_random),
C chunk size of the chunked causal scan. Elementwise work (exp, divisions, sums) is counted where it is a full
pass over an (N, m) or (N, M) tensor, because on a CPU it costs as much memory traffic as a small matmul; the
totals are dominated by the matmul terms, which `tests/test_bench.py` checks against torch's FlopCounterMode.

    softmax attention (SDPA, module)   4 B H N^2 D            (Q K^T and A V; D = M)  + 3 B H N^2 (scale, exp, norm)
    causal softmax (ideal, half)       2 B H N^2 D            + 1.5 B H N^2
    FAVOR+ feature map, q and k        2 * (2 B H N D m)      (x W^T)  + 2 * 4 B H N m (exponent, max, exp, scale)
    linear attention (eq. 2)           4 B H N m M            (phi_k^T V and phi_q (phi_k^T V)) + 3 B H N m + B H N M
    chunked causal linear attention    4 B H N m M            (state S: phi_q S and the S update)
                                       + 2 B H N C (m + M)    (within-chunk phi_q phi_k^T and A V, C x C blocks;
                                                               N C is sum of squared chunk lengths if C !| N)
                                       + B H N (3 m + C) + B H N M   (normaliser, Z update, division)
    reference causal loop (eq. 6)      4 B H N m M + 3 B H N m + B H N M   (outer product + row-vector product)
"""

from __future__ import annotations


def softmax_attention(b: int, h: int, n: int, d: int, m_v: int | None = None, causal: bool = False) -> float:
    """FLOPs of softmax attention over (B, H, N, D) queries/keys and (B, H, N, M) values (causal: the half a fused
    causal kernel needs)."""
    m_v = d if m_v is None else m_v
    total = b * h * (2.0 * n * n * d + 2.0 * n * n * m_v + 3.0 * n * n)
    return total / 2 if causal else total


def favor_features(b: int, h: int, n: int, d: int, n_random: int) -> float:
    """FLOPs of FAVOR+ features for queries and keys: the projection x W^T and ~4 elementwise passes, times 2."""
    return 2 * (2.0 * b * h * n * d * n_random + 4.0 * b * h * n * n_random)


def linear_attention(b: int, h: int, n: int, n_features: int, m_v: int) -> float:
    """FLOPs of non-causal linear attention (eq. 2) from given features (..., N, m) and values (..., N, M)."""
    return b * h * (4.0 * n * n_features * m_v + 3.0 * n * n_features + n * m_v)


def chunk_square_sum(n: int, chunk: int) -> int:
    """sum over chunks of (chunk length)^2 = N C when C divides N (the last chunk may be shorter)."""
    full, rest = divmod(n, chunk)
    return full * chunk * chunk + rest * rest


def causal_linear_attention_chunked(b: int, h: int, n: int, n_features: int, m_v: int, chunk: int) -> float:
    """FLOPs of the chunked causal scan: state terms 4 N m M plus the within-chunk C x C blocks 2 N C (m + M)."""
    blocks = chunk_square_sum(n, chunk)
    return b * h * (4.0 * n * n_features * m_v + 2.0 * blocks * (n_features + m_v)
                    + 3.0 * n * n_features + blocks + n * m_v)


def causal_linear_attention_loop(b: int, h: int, n: int, n_features: int, m_v: int) -> float:
    """FLOPs of the per-position loop of eq. (6): S_i update and phi(Q_i)^T S_i, plus the normaliser."""
    return linear_attention(b, h, n, n_features, m_v)


def matmul(n: int) -> float:
    """FLOPs of one (n x n) @ (n x n) matmul."""
    return 2.0 * n ** 3


def matmul_part(kind: str, b: int, h: int, n: int, d: int, n_random: int = 0, chunk: int = 64) -> float:
    """Only the matmul terms of a variant (what torch's FlopCounterMode counts), for the test of these formulas.

    kind: "favor_features", "linear", "causal_chunked" (values of width M = d). An implementation that computes
    the normaliser phi_q . Z with matmuls rather than elementwise adds 2 B H N m (linear, a mat-vec) or
    B H (4 N m + 2 N C) (chunked, a column of ones appended to V).
    """
    if kind == "favor_features":
        return 2 * 2.0 * b * h * n * d * n_random
    if kind == "linear":
        return 4.0 * b * h * n * n_random * d
    if kind == "causal_chunked":
        return b * h * (4.0 * n * n_random * d + 2.0 * chunk_square_sum(n, chunk) * (n_random + d))
    raise ValueError(f"unknown kind {kind!r}; choose favor_features, linear or causal_chunked")
