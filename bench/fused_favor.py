"""Fused FAVOR+ attention: the benchmark's fast path (bench/ is never released).

It is a complete implementation of FavorPositiveFeatures, linear_attention and causal_linear_attention of
kernel_attention.py, so releasing it would hand out their solutions and the 3(b) recursion; kernel_attention.py holds
only the readable path. The benchmark times `favor_attention_fused` beside it; tests/test_kernel_attention_fast.py
proves the two equal, also inside PerformerAttention.

Why it is faster: the readable path materialises phi(Q) and phi(K) (N x m each, 64 MiB per tensor at N = 8192,
H = 8, m = 256) and makes ~5 elementwise passes over such tensors; fresh 64 MiB buffers are page-faulted on every
call. Here the features are computed block by block inside the sequence loop (one (C, m) buffer per block, exp in
place, D^-1/4 folded into omega and 1/sqrt(m) into the exponent shift), V gets a column of ones so one matmul gives
the numerator and the normaliser, and the key stabiliser is a running maximum: when it grows, the carried state
[S | Z] is rescaled by exp(old max - new max) (as in flash attention's online softmax). The stabilising constants
cancel between numerator and normaliser, so they are detached (no gradient through them). In the causal case with
eps != 0 the constant does not cancel, and the readable path uses the maximum over the whole sequence: a first pass
over the key blocks computes it exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kernel_attention import FavorPositiveFeatures, _check_mask, _check_qkv, _upcast, causal_mask

__all__ = ["favor_attention_fused", "FUSED_BLOCK_ROWS", "FUSED_CAUSAL_CHUNK"]

FUSED_BLOCK_ROWS = 1024       # rows per block (non-causal) or per group of chunks (causal): 8 MiB at H=8, m=256
FUSED_CAUSAL_CHUNK = 128      # chunk C of the fused causal scan (tuned at N = 8192, m = 256, 2 threads)


def _favor_exponent(x: Tensor, omega_t: Tensor, half_norm_scale: float, is_query: bool, stabilize: bool) -> Tensor:
    """The FAVOR+ exponent of one block, before the stabilising shift: x (..., c, D) -> (..., c, m), one new buffer.

    omega_t (D, m) = (omega D^-1/4)^T. Keys, and queries without stabilisation: w . x' - ||x'||^2 / 2;
    stabilised queries: w . x' (the per-row ||x'||^2 / 2 cancels like the per-row maximum).
    """
    exponent = x @ omega_t
    if not (is_query and stabilize):
        exponent -= x.pow(2).sum(dim=-1, keepdim=True) * half_norm_scale
    return exponent


def _fused_key_max(k: Tensor, omega_t: Tensor, half_norm_scale: float, block: int) -> Tensor:
    """max over all keys and features of w . k' - ||k'||^2 / 2, block by block: k (..., N, D) -> (..., 1, 1)."""
    result = torch.full((*k.shape[:-2], 1, 1), -math.inf, dtype=k.dtype, device=k.device)
    with torch.no_grad():
        for start in range(0, k.shape[-2], block):
            exponent = _favor_exponent(k[..., start:start + block, :], omega_t, half_norm_scale, False, True)
            result = torch.maximum(result, exponent.amax(dim=(-2, -1), keepdim=True))
    return result


def favor_attention_fused(q: Tensor, k: Tensor, v: Tensor, feature_map: FavorPositiveFeatures, causal: bool = False,
                          key_padding_mask: Tensor | None = None, eps: float = 1e-6,
                          chunk_size: int | None = None) -> Tensor:
    """FAVOR+ features and kernel attention in one pass over the sequence, never holding all N x m features:

        causal=False: equals linear_attention(feature_map(q, is_query=True), feature_map(k), v, key_padding_mask, eps)
        causal=True:  equals causal_linear_attention(feature_map(q, is_query=True), feature_map(k), v, chunk_size,
                      eps, key_padding_mask)

    q (..., N_q, D), k (..., N_k, D), v (..., N_k, M) (batch dimensions broadcast), key_padding_mask (..., N_k) bool
    True = real token, feature_map a FavorPositiveFeatures of width D -> (..., N_q, M) in q's dtype (float16 / bfloat16
    are computed in float32). chunk_size: block length (default FUSED_CAUSAL_CHUNK causal, FUSED_BLOCK_ROWS otherwise).
    """
    if not isinstance(feature_map, FavorPositiveFeatures):
        raise ValueError(f"favor_attention_fused needs a FavorPositiveFeatures map, got {type(feature_map).__name__}")
    batch = _check_qkv(q, k, v)
    if q.shape[-1] != feature_map.d:
        raise ValueError(f"feature_map expects width {feature_map.d}, got q {tuple(q.shape)}")
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(f"causal attention needs N_q == N_k, got q {tuple(q.shape)}, k {tuple(k.shape)}")
    if key_padding_mask is not None:
        _check_mask("key_padding_mask", key_padding_mask, (*batch, k.shape[-2]))
    block = chunk_size if chunk_size is not None else FUSED_CAUSAL_CHUNK if causal else FUSED_BLOCK_ROWS
    if not isinstance(block, int) or block < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    out_dtype = q.dtype
    q, k, v = _upcast(q, k, v)
    dtype = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    q, k, v = (t.to(dtype).expand(*batch, *t.shape[-2:]) for t in (q, k, v))
    keep = None if key_padding_mask is None else key_padding_mask.expand(*batch, k.shape[-2])[..., None]
    n_q, n_k, width = q.shape[-2], k.shape[-2], v.shape[-1]

    scale = feature_map.d ** -0.25
    omega_t = (feature_map.omega.to(dtype) * scale).T                   # (D, m): x' = x D^-1/4 folded into omega
    half_norm_scale = scale * scale / 2                                 # ||x'||^2 / 2 = ||x||^2 D^-1/2 / 2
    shift = 0.5 * math.log(feature_map.n_random)                        # exp(e - shift) = exp(e) / sqrt(m)
    stabilize = feature_map.stabilize
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, feature_map.omega))

    def query_features(q_c):                                            # (..., c, D) -> (..., c, m)
        exponent = _favor_exponent(q_c, omega_t, half_norm_scale, True, stabilize)
        if stabilize:
            exponent -= exponent.detach().amax(dim=-1, keepdim=True) + shift
        else:
            exponent -= shift
        return exponent.exp_()

    def values(start, stop):                                            # [V | 1] of a block, padded keys zeroed
        v_c = v[..., start:stop, :]
        v_c = torch.cat([v_c, torch.ones_like(v_c[..., :1])], dim=-1)   # (..., c, M + 1)
        return v_c if keep is None else torch.where(keep[..., start:stop, :], v_c, 0.0)

    def normalise(both):                                                # (..., c, M + 1) -> (..., c, M)
        numerator, normaliser = both[..., :width], both[..., width:] + eps
        zero = normaliser == 0
        return torch.where(zero, 0.0, numerator / torch.where(zero, 1.0, normaliser))

    # Key stabiliser: exact maximum first (causal with eps != 0), else a running maximum with rescaling.
    fixed_max = _fused_key_max(k, omega_t, half_norm_scale, max(block, FUSED_BLOCK_ROWS)) \
        if (stabilize and causal and eps != 0 and n_k > 0) else None
    running_max = torch.full((*batch, 1, 1), -math.inf, dtype=dtype, device=q.device)
    state = torch.zeros(*batch, feature_map.n_random, width + 1, dtype=dtype, device=q.device)   # [S | Z]

    def key_features(start, stop, state, running_max):
        exponent = _favor_exponent(k[..., start:stop, :], omega_t, half_norm_scale, False, stabilize)
        if not stabilize:
            new_max = running_max
            exponent -= shift
        elif fixed_max is not None:
            new_max = fixed_max
            exponent -= fixed_max + shift
        else:
            new_max = torch.maximum(running_max, exponent.detach().amax(dim=(-2, -1), keepdim=True))
            state = state * torch.exp(running_max - new_max)           # state was stabilised with the old maximum
            exponent -= new_max + shift
        return exponent.exp_(), state, new_max

    # Outputs: one (..., N_q, M) buffer filled block by block; with autograd, a list of blocks concatenated at the end
    # (writing into slices of one buffer would make every block's backward copy the whole buffer).
    out = None if needs_grad else torch.empty(*batch, n_q, width, dtype=dtype, device=q.device)
    blocks = []

    def emit(start, stop, both):
        if out is None:
            blocks.append(normalise(both))
        else:
            out[..., start:stop, :] = normalise(both)

    if not causal:
        for start in range(0, n_k, block):
            stop = min(start + block, n_k)
            phi_k, state, running_max = key_features(start, stop, state, running_max)     # (..., c, m)
            state = state + phi_k.transpose(-2, -1) @ values(start, stop)
        for start in range(0, n_q, block):
            stop = min(start + block, n_q)
            emit(start, stop, query_features(q[..., start:stop, :]) @ state)              # (..., c, M + 1)
    else:
        # Groups of g chunks of length c (g c <= FUSED_BLOCK_ROWS): the features of a group in one buffer each, the
        # within-chunk products of all its chunks as one batched matmul, the state before each chunk by a cumulative
        # sum over the group's chunks (fewer, larger operations than one chunk at a time).
        future = ~causal_mask(min(block, max(n_q, 1)), device=q.device)    # (C, C) True above the diagonal
        per_group = max(1, FUSED_BLOCK_ROWS // block)
        start = 0
        while start < n_q:
            c = min(block, n_q - start)
            g = max(1, min(per_group, (n_q - start) // c))
            stop = start + g * c
            phi_q = query_features(q[..., start:stop, :]).unflatten(-2, (g, c))             # (..., g, c, m)
            phi_k, state, running_max = key_features(start, stop, state, running_max)
            phi_k = phi_k.unflatten(-2, (g, c))                                             # (..., g, c, m)
            v_c = values(start, stop).unflatten(-2, (g, c))                                # (..., g, c, M + 1)
            scores = (phi_q @ phi_k.transpose(-2, -1)).masked_fill_(future[:c, :c], 0.0)   # (..., g, c, c)
            kv = phi_k.transpose(-2, -1) @ v_c                                              # (..., g, m, M + 1)
            inclusive = kv.cumsum(dim=-3)
            before = (inclusive - kv).add_(state[..., None, :, :])                          # state before chunk
            emit(start, stop, (scores @ v_c).add_(phi_q @ before).flatten(-3, -2))          # (..., g c, M + 1)
            state = state + inclusive[..., -1, :, :]
            start = stop
    if out is None:
        out = torch.cat(blocks, dim=-2) if blocks else torch.zeros(*batch, n_q, width, dtype=dtype, device=q.device)
    return out.to(out_dtype)

