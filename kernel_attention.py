"""Attention, from softmax to kernelized linear attention (CS182 HW8, questions 1 and 3).

Read top to bottom:

1. Masks                     -- one convention everywhere: a boolean mask, **True = may attend**,
                                broadcastable to (B, H, N_q, N_k).
2. Softmax attention         -- scaled dot-product attention (eq. 1) and multi-head attention.
3. Positional encoding       -- sinusoids and the matrix M with p_{t+1} = M p_t (question 1(c)).
4. Kernel feature maps       -- small nn.Modules phi: (..., N, D) -> (..., N, n_features), randomness drawn in
                                one place (`redraw(generator)`): random Fourier features (eq. 4), the softmax kernel
                                through the Gaussian kernel (question 3(a) i-ii), Performer FAVOR+, elu(x)+1, degree-2
                                polynomial.
5. Kernel attention          -- the explicit N x N reference, linear attention (eq. 2, right to left), causal
                                linear attention with S_i and Z_i (eq. 6): a plain loop and a fast chunked version.
6. PerformerAttention        -- a drop-in replacement for MultiHeadAttention built on 4 and 5.

Shapes: B batch, H heads, N / N_q / N_k sequence lengths, D query/key width, M value width, n_features feature count
(2 n_random for random Fourier features, n_random for FAVOR+). n_random is the number of random vectors w_i (the
homework's D_random); its default everywhere is DEFAULT_N_RANDOM. `F` is always torch.nn.functional.

You implement every function whose body raises `NotImplementedError` in your copy; everything else is provided.
"""

from __future__ import annotations

import abc
import functools
import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "causal_mask",
    "padding_mask",
    "combine_masks",
    "scaled_dot_product_attention",
    "split_heads",
    "merge_heads",
    "MultiHeadAttention",
    "sinusoidal_positional_encoding",
    "positional_shift_matrix",
    "PositionalEncoding",
    "DEFAULT_N_RANDOM",
    "FeatureMap",
    "RandomFourierFeatures",
    "SoftmaxRandomFourierFeatures",
    "orthogonal_gaussian_matrix",
    "FavorPositiveFeatures",
    "EluFeatureMap",
    "PolynomialFeatureMap",
    "make_feature_map",
    "kernel_attention_quadratic",
    "linear_attention",
    "causal_linear_attention_reference",
    "causal_linear_attention",
    "PerformerAttention",
]

_HALF_DTYPES = (torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------------------------------------------------
# Input checks (provided). Every bad input raises ValueError naming the shapes involved.
# ----------------------------------------------------------------------------------------------------------------------


def _check_float(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype} (shape {tuple(x.shape)})")


def _check_mask(name: str, mask: Tensor | None, target: tuple[int, ...]) -> None:
    """A mask must be boolean (True = may attend) and broadcast to `target` without enlarging it."""
    if mask is None:
        return
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a torch.bool tensor (True = may attend), got {got}; use mask.bool()")
    try:
        ok = torch.broadcast_shapes(tuple(mask.shape), target) == tuple(target)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} of shape {tuple(mask.shape)} does not broadcast to {tuple(target)}")


def _batch_shape(*tensors: Tensor, names: tuple[str, ...]) -> tuple[int, ...]:
    """Broadcast the leading (batch) dimensions of tensors of shape (..., N, X)."""
    try:
        return tuple(torch.broadcast_shapes(*(tuple(t.shape[:-2]) for t in tensors)))
    except RuntimeError:
        shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, tensors))
        raise ValueError(f"batch dimensions do not broadcast: {shapes}") from None


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, names=("q", "k", "v")) -> tuple[int, ...]:
    """Check q (..., N_q, D), k (..., N_k, D), v (..., N_k, M); return the broadcast batch shape."""
    for name, t in zip(names, (q, k, v)):
        _check_float(name, t)
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., N, width), got {tuple(t.shape)}")
    nq, nk, nv = names
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{nq} {tuple(q.shape)} and {nk} {tuple(k.shape)} must have the same last dimension")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{nk} {tuple(k.shape)} and {nv} {tuple(v.shape)} must have the same length N_k (dim -2)")
    return _batch_shape(q, k, v, names=names)


def _upcast(*tensors: Tensor) -> tuple[Tensor, ...]:
    """float16 / bfloat16 are computed in float32 (exp and sums overflow or lose precision in half)."""
    return tuple(t.float() if t.dtype in _HALF_DTYPES else t for t in tensors)


def _half_computed_in_float32(function):
    """Decorator: if the first argument is float16 / bfloat16, every floating tensor argument is computed in float32
    and every returned tensor is cast back to that half dtype."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        dtype = args[0].dtype if args and isinstance(args[0], Tensor) else None
        if dtype not in _HALF_DTYPES:
            return function(*args, **kwargs)

        def up(x):
            return x.float() if isinstance(x, Tensor) and x.is_floating_point() else x

        result = function(*map(up, args), **{name: up(x) for name, x in kwargs.items()})
        if isinstance(result, tuple):
            return tuple(r.to(dtype) for r in result)
        return result.to(dtype)

    return wrapper


# ----------------------------------------------------------------------------------------------------------------------
# 1. Masks (provided). True = may attend. Shapes broadcast to (B, H, N_q, N_k).
# ----------------------------------------------------------------------------------------------------------------------


def causal_mask(n_q: int, n_k: int | None = None, device=None) -> Tensor:
    """Causal (subsequent-position) mask: query i may attend key j iff j <= i.

    Returns (n_q, n_k) bool, lower-triangular (top-left aligned, like torch's `is_causal=True`); n_k defaults to n_q.
    """
    n_k = n_q if n_k is None else n_k
    if n_q < 1 or n_k < 1:
        raise ValueError(f"causal_mask needs positive sizes, got n_q={n_q}, n_k={n_k}")
    return torch.ones(n_q, n_k, dtype=torch.bool, device=device).tril()


def padding_mask(is_token: Tensor) -> Tensor:
    """Key padding mask: (B, N_k) bool, True = real token  ->  (B, 1, 1, N_k), broadcast over heads and queries."""
    if not isinstance(is_token, Tensor) or is_token.dtype != torch.bool or is_token.dim() != 2:
        got = f"{is_token.dtype} {tuple(is_token.shape)}" if isinstance(is_token, Tensor) else type(is_token).__name__
        raise ValueError(f"padding_mask expects a (B, N_k) torch.bool tensor (True = real token), got {got}")
    return is_token[:, None, None, :]


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of boolean masks with broadcasting; None entries are ignored; all None -> None."""
    result = None
    for i, mask in enumerate(masks):
        if mask is None:
            continue
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise ValueError(f"combine_masks: mask {i} must be a torch.bool tensor (True = may attend)")
        if result is None:
            result = mask
            continue
        try:
            result = result & mask
        except RuntimeError:
            raise ValueError(
                f"combine_masks: mask shapes {tuple(result.shape)} and {tuple(mask.shape)} do not broadcast"
            ) from None
    return result


# ----------------------------------------------------------------------------------------------------------------------
# 2. Softmax attention
# ----------------------------------------------------------------------------------------------------------------------


@_half_computed_in_float32
def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                                 return_weights: bool = False):
    """Scaled dot-product (softmax) attention, eq. (1):

        V'_i = sum_j sim(Q_i, K_j) V_j / sum_j sim(Q_i, K_j),     sim(q, k) = sim_softmax(q, k) = exp(q . k / sqrt(D)).

    Args:
        q: queries (..., N_q, D).
        k: keys (..., N_k, D).
        v: values (..., N_k, M).
        mask: bool, True = may attend, broadcastable to (..., N_q, N_k); None = attend everywhere.
        return_weights: also return the attention weights.

    Returns:
        out (..., N_q, M) and, if return_weights, the attention weights (..., N_q, N_k): entry (i, j) is the
        coefficient of V_j in V'_i.
        A query row whose keys are all masked gets zero weights and a zero output (never NaN).
        float16 / bfloat16 inputs are computed in float32 and returned in the input dtype.
    === BEGIN INSTRUCTOR ONLY ===
    The weights' rows sum to 1 over the keys (a softmax over j for each query i; question 1(a)).
    === END INSTRUCTOR ONLY ===
    """
    batch = _check_qkv(q, k, v)
    _check_mask("mask", mask, (*batch, q.shape[-2], k.shape[-2]))
    ### BEGIN SOLUTION
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])          # (..., N_q, N_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    # Softmax with the row max subtracted; a fully masked row has max -inf -> use 0 so exp gives zeros, not NaN.
    row_max = scores.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    unnormalised = torch.exp(scores - row_max)                          # (..., N_q, N_k), masked entries 0
    total = unnormalised.sum(dim=-1, keepdim=True)
    weights = unnormalised / torch.where(total > 0, total, torch.ones_like(total))
    out = weights @ v                                                   # (..., N_q, M)
    return (out, weights) if return_weights else out
    ### END SOLUTION


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """Split the feature dimension into heads: (B, N, H*Dh) -> (B, H, N, Dh)."""
    if x.dim() != 3 or n_heads < 1 or x.shape[-1] % n_heads != 0:
        raise ValueError(f"split_heads expects (B, N, H*Dh) with width divisible by n_heads={n_heads}, "
                         f"got {tuple(x.shape)}")
    ### BEGIN SOLUTION
    batch, length, width = x.shape
    return x.view(batch, length, n_heads, width // n_heads).transpose(1, 2)
    ### END SOLUTION


def merge_heads(x: Tensor) -> Tensor:
    """Merge heads back into the feature dimension: (B, H, N, Dh) -> (B, N, H*Dh) (inverse of split_heads)."""
    if x.dim() != 4:
        raise ValueError(f"merge_heads expects (B, H, N, Dh), got {tuple(x.shape)}")
    ### BEGIN SOLUTION
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)
    ### END SOLUTION


class MultiHeadAttention(nn.Module):
    """Multi-head softmax attention (Vaswani et al. 2017), numerically equal to nn.MultiheadAttention(batch_first=True).

    Queries come from a width-d_model stream; keys and values from a width-d_key_value memory (default: d_model);
    the output has width d_model. Dropout acts on the attention weights.
    """

    def __init__(self, d_model: int, n_heads: int, d_key_value: int | None = None, dropout: float = 0.0,
                 bias: bool = True):
        super().__init__()
        if d_model < 1 or n_heads < 1 or d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} must be a positive multiple of n_heads={n_heads}")
        d_key_value = d_model if d_key_value is None else d_key_value
        self.d_model, self.n_heads, self.d_key_value = d_model, n_heads, d_key_value
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_key_value, d_model, bias=bias)
        self.v_proj = nn.Linear(d_key_value, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                causal: bool = False, attn_mask: Tensor | None = None, return_weights: bool = False):
        """query (B, N_q, d_model), key / value (B, N_k, d_key_value), key_padding_mask (B, N_k) bool True = real
        token, attn_mask bool broadcastable to (B, H, N_q, N_k)  ->  out (B, N_q, d_model), weights (B, H, N_q, N_k)
        if return_weights else None."""
        self._check_inputs(query, key, value, key_padding_mask)
        q = split_heads(self.q_proj(query), self.n_heads)                # (B, H, N_q, Dh)
        k = split_heads(self.k_proj(key), self.n_heads)                  # (B, H, N_k, Dh)
        v = split_heads(self.v_proj(value), self.n_heads)                # (B, H, N_k, Dh)
        out, weights = self._attend(q, k, v, key_padding_mask, causal, attn_mask, return_weights)
        out = self.out_proj(merge_heads(out))                            # (B, N_q, d_model)
        return out, weights

    def _check_inputs(self, query, key, value, key_padding_mask):
        for name, t, width in (("query", query, self.d_model), ("key", key, self.d_key_value),
                               ("value", value, self.d_key_value)):
            if not isinstance(t, Tensor) or t.dim() != 3 or t.shape[-1] != width:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{name} must have shape (B, N, {width}), got {got}")
            if not t.is_floating_point():
                raise ValueError(f"{name} must be a floating-point tensor (embeddings), got dtype {t.dtype}: "
                                 "embed token ids first (nn.Embedding)")
        if key.shape[:2] != value.shape[:2] or query.shape[0] != key.shape[0]:
            raise ValueError(f"query {tuple(query.shape)}, key {tuple(key.shape)} and value {tuple(value.shape)} "
                             "must share B, and key / value must share N_k")
        if key_padding_mask is not None:
            if not isinstance(key_padding_mask, Tensor) or key_padding_mask.dtype != torch.bool:
                raise ValueError("key_padding_mask must be a torch.bool tensor of shape (B, N_k), True = real token")
            if tuple(key_padding_mask.shape) != tuple(key.shape[:2]):
                raise ValueError(f"key_padding_mask {tuple(key_padding_mask.shape)} must have shape (B, N_k) = "
                                 f"{tuple(key.shape[:2])}")

    def _attend(self, q, k, v, key_padding_mask, causal, attn_mask, return_weights):
        """Softmax attention per head: q (B, H, N_q, Dh), k / v (B, H, N_k, Dh) -> (B, H, N_q, Dh), weights."""
        n_q, n_k = q.shape[-2], k.shape[-2]
        mask = combine_masks(
            padding_mask(key_padding_mask) if key_padding_mask is not None else None,   # (B, 1, 1, N_k)
            causal_mask(n_q, n_k, device=q.device) if causal else None,                 # (N_q, N_k)
            attn_mask,
        )
        out, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
        if self.training and self.dropout > 0:
            out = F.dropout(weights, self.dropout) @ v.to(weights.dtype)
        return out, (weights if return_weights else None)


# ----------------------------------------------------------------------------------------------------------------------
# 3. Sinusoidal positional encoding and the shift matrix M (question 1(c))
# ----------------------------------------------------------------------------------------------------------------------


def _check_even_width(d_model: int) -> None:
    if not isinstance(d_model, int) or d_model < 2 or d_model % 2 != 0:
        raise ValueError(f"d_model must be a positive even integer (sin/cos pairs), got {d_model}")


def _frequencies(d_model: int) -> Tensor:
    """w_i = 10000^(-2i/d) for i = 0 .. d/2-1, float64 (d/2,)."""
    return torch.pow(10000.0, -torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)


def sinusoidal_positional_encoding(n_positions: int, d_model: int, dtype: torch.dtype | None = None) -> Tensor:
    """Sinusoidal positional encodings: p_t[2i] = sin(t w_i), p_t[2i+1] = cos(t w_i), w_i = 10000^(-2i/d).

    Returns (n_positions, d_model), rows t = 0 .. n_positions-1, in `dtype` (default: torch's default dtype).
    Computed in float64 so that large t stays accurate.
    """
    _check_even_width(d_model)
    if n_positions < 0:
        raise ValueError(f"n_positions must be >= 0, got {n_positions}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    ### BEGIN SOLUTION
    w = _frequencies(d_model)                                           # (d/2,): w_i, in float64
    t = torch.arange(n_positions, dtype=torch.float64)[:, None]         # (N, 1)
    angles = t * w                                                      # (N, d/2)
    p = torch.empty(n_positions, d_model, dtype=torch.float64)
    p[:, 0::2] = torch.sin(angles)
    p[:, 1::2] = torch.cos(angles)
    return p.to(dtype)
    ### END SOLUTION


def positional_shift_matrix(d_model: int, shift: int = 1, dtype: torch.dtype | None = None) -> Tensor:
    """The matrix M (d_model, d_model) with p_{t+shift} = M p_t for every t (question 1(c)), in `dtype`.
    === BEGIN INSTRUCTOR ONLY ===

    Each (sin, cos) pair rotates by the angle shift * w_i:
        [sin((t+k) w)]   [ cos(k w)  sin(k w)] [sin(t w)]
        [cos((t+k) w)] = [-sin(k w)  cos(k w)] [cos(t w)]
    so M (d_model, d_model) is block-diagonal with these 2x2 blocks; M depends on the shift k, not on t.
    === END INSTRUCTOR ONLY ===
    """
    _check_even_width(d_model)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    ### BEGIN SOLUTION
    w = _frequencies(d_model)                                           # (d/2,): w_i, in float64
    c, s = torch.cos(shift * w), torch.sin(shift * w)                   # (d/2,)
    blocks = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)   # (d/2, 2, 2)
    m = torch.block_diag(*blocks)                                       # (d, d)
    return m.to(dtype)
    ### END SOLUTION


class PositionalEncoding(nn.Module):
    """Adds sinusoidal positional encodings to token embeddings: x (B, N, d) -> dropout(x + p[:N])."""

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", sinusoidal_positional_encoding(max_len, d_model), persistent=False)   # (max_len, d)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"PositionalEncoding expects float embeddings (B, N, d), got {got}: embed token ids "
                             "first (nn.Embedding)")
        if x.dim() != 3 or x.shape[-1] != self.pe.shape[1] or x.shape[1] > self.pe.shape[0]:
            raise ValueError(f"PositionalEncoding expects (B, N <= {self.pe.shape[0]}, {self.pe.shape[1]}), "
                             f"got {tuple(x.shape)}")
        return self.dropout(x + self.pe[: x.shape[1]].to(x.dtype))


# ----------------------------------------------------------------------------------------------------------------------
# 4. Kernel feature maps phi: (..., N, D) -> (..., N, n_features), with sim(q, k) ~ phi(q) . phi(k)
# ----------------------------------------------------------------------------------------------------------------------

DEFAULT_N_RANDOM = 64  # random vectors w_i of a random feature map, unless the caller chooses (the homework's D_random)


class FeatureMap(nn.Module, abc.ABC):
    """Base class: `n_features` is the feature count; random maps draw all their randomness in `redraw(generator)`.

    redraw(generator=None) uses torch's global RNG when generator is None, so torch.manual_seed(s) fixes the features;
    a torch.Generator gives an independent reproducible stream. Random draws are made on the CPU (or on the
    generator's device) and moved to the module's device, so a seed gives the same features on every device.
    """

    n_features: int | None = None

    def redraw(self, generator: torch.Generator | None = None) -> None:
        """Deterministic feature maps have nothing to draw."""

    @abc.abstractmethod
    def forward(self, x: Tensor, is_query: bool = False) -> Tensor:
        """phi: x (..., N, D) -> phi(x) (..., N, n_features); is_query tells queries from keys."""

    @staticmethod
    def _check_sizes(d: int, n_random: int) -> None:
        if not isinstance(d, int) or d < 1:
            raise ValueError(f"input width d must be a positive integer, got {d}")
        if not isinstance(n_random, int) or n_random < 1:
            raise ValueError(f"n_random (number of random features) must be a positive integer, got {n_random}")

    def _check_input(self, x: Tensor, d: int) -> None:
        _check_float("x", x)
        if x.dim() < 2 or x.shape[-1] != d:
            raise ValueError(f"{type(self).__name__} expects inputs (..., N, {d}), got {tuple(x.shape)}")


def _draw_device(generator: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device


class RandomFourierFeatures(FeatureMap):
    """Random Fourier features for the Gaussian kernel (Rahimi & Recht 2007), eq. (4):

        phi_random(x) = sqrt(1/n_random) [sin(w_1 . x), ..., sin(w_n_random . x),
                                          cos(w_1 . x), ..., cos(w_n_random . x)],     n_features = 2 n_random.

    The goal is E[phi(q) . phi(k)] = K_Gauss(q, k) = exp(-||q - k||^2 / (2 sigma^2)) (eq. 5). `redraw` fills the
    buffer `omega` (D, n_random) with standard normal columns g_1 .. g_n_random ~ N(0, I_D); `forward` makes the w_i
    from them. Which distribution must the w_i have for the goal to hold? (Check eq. (5); question 3(a)ii.)
    === BEGIN INSTRUCTOR ONLY ===
    phi(q) . phi(k) = (1/n_random) sum_i cos(w_i . (q - k)), and E[cos(w . u)] = exp(-s^2 ||u||^2 / 2)
    for w ~ N(0, s^2 I).
    Eq. (5) as printed (w ~ N(0, sigma^2 I)) therefore gives exp(-sigma^2 ||q-k||^2 / 2); to get the Gaussian kernel
    K_Gauss(q, k) = exp(-||q - k||^2 / (2 sigma^2)) forward uses w_i = g_i / sigma ~ N(0, sigma^-2 I).
    === END INSTRUCTOR ONLY ===

    Args: d (input width D), n_random (number of random vectors), sigma2 (sigma^2; default sqrt(D), the value of
    question 3(a)i).
    """

    def __init__(self, d: int, n_random: int, sigma2: float | None = None):
        super().__init__()
        self._check_sizes(d, n_random)
        sigma2 = math.sqrt(d) if sigma2 is None else float(sigma2)
        if not sigma2 > 0:
            raise ValueError(f"sigma2 must be positive, got {sigma2}")
        self.d, self.n_random, self.sigma2 = d, n_random, sigma2
        self.n_features = 2 * n_random
        self.register_buffer("omega", torch.empty(d, n_random))
        self.redraw()

    def redraw(self, generator: torch.Generator | None = None) -> None:
        """Draw omega (D, n_random): n_random independent standard normal columns g_i ~ N(0, I_D)."""
        omega = torch.randn(self.d, self.n_random, generator=generator, device=_draw_device(generator))
        self.omega = omega.to(self.omega)                               # reassign, never in place (autograd-safe)

    def forward(self, x: Tensor, is_query: bool = False) -> Tensor:
        """x (..., N, D) -> phi_random(x) (..., N, 2 n_random), eq. (4), with the w_i made from the columns of
        self.omega (D, n_random) and self.sigma2. is_query is unused (same map for q and k)."""
        self._check_input(x, self.d)
        ### BEGIN SOLUTION
        w = (self.omega / math.sqrt(self.sigma2)).to(x.dtype)          # (D, n_random): w_i = g_i / sigma
        projection = x @ w                                              # (..., N, n_random): w_i . x
        features = torch.cat([torch.sin(projection), torch.cos(projection)], dim=-1)   # (..., N, 2 n_random)
        return features / math.sqrt(self.n_random)
        ### END SOLUTION


class SoftmaxRandomFourierFeatures(FeatureMap):
    """The softmax similarity exp(q . k / sqrt(D)) approximated with random Fourier features, question 3(a) i-ii.

    phi_sm (..., N, 2 n_random) is the feature map you derive in 3(a) i-ii from the Gaussian kernel with
    sigma^2 = sqrt(D) and the random Fourier features `self.rff` of eq. (4), such that
    E[phi_sm(q) . phi_sm(k)] = exp(q . k / sqrt(D)).
    === BEGIN INSTRUCTOR ONLY ===
    With sigma^2 = sqrt(D):  exp(q . k / sqrt(D)) = exp(||q||^2 / (2 sigma^2)) K_Gauss(q, k) exp(||k||^2 / (2 sigma^2)),
    so with random Fourier features for K_Gauss

        phi_sm(x) = exp(||x||^2 / (2 sigma^2)) phi_random(x)   (..., N, 2 n_random),
        E[phi_sm(q) . phi_sm(k)] = exp(q . k / sqrt(D))          (unbiased, but not positive: the normaliser can be
                                                                  near 0 or negative -- see the 3(a)iii experiment).
    Attention with these features costs O(N n_random (D + M)) instead of O(N^2 max(D, M)).
    === END INSTRUCTOR ONLY ===
    """

    def __init__(self, d: int, n_random: int):
        super().__init__()
        self._check_sizes(d, n_random)
        self.d, self.n_random = d, n_random
        self.sigma2 = math.sqrt(d)
        self.rff = RandomFourierFeatures(d, n_random, sigma2=self.sigma2)   # all randomness lives here
        self.n_features = self.rff.n_features

    def redraw(self, generator: torch.Generator | None = None) -> None:
        self.rff.redraw(generator)

    def forward(self, x: Tensor, is_query: bool = False) -> Tensor:
        """x (..., N, D) -> phi_sm(x) (..., N, 2 n_random), built on self.rff (phi_random of eq. 4)."""
        self._check_input(x, self.d)
        ### BEGIN SOLUTION
        scale = torch.exp(x.pow(2).sum(dim=-1, keepdim=True) / (2 * self.sigma2))   # (..., N, 1)
        return scale * self.rff(x)                                                  # (..., N, 2 n_random)
        ### END SOLUTION


def orthogonal_gaussian_matrix(n_rows: int, d: int, generator: torch.Generator | None = None,
                               device=None) -> Tensor:
    """Random matrix (n_rows, d) whose rows are marginally N(0, I_d) and, within each block of d rows, orthogonal.

    Performer's orthogonal random features: QR of Gaussian (d, d) blocks gives orthonormal rows; each row is then
    rescaled by the norm of an independent N(0, I_d) vector (a chi_d length), so every row keeps the Gaussian
    marginal (the estimator stays unbiased).
    === BEGIN INSTRUCTOR ONLY ===
    The orthogonality lowers its variance (Choromanski et al. 2021; measured in 3(a)iii at small norms).
    === END INSTRUCTOR ONLY ===
    """
    if n_rows < 1 or d < 1:
        raise ValueError(f"orthogonal_gaussian_matrix needs positive sizes, got n_rows={n_rows}, d={d}")
    device = _draw_device(generator) if device is None else device
    blocks = []
    for _ in range(math.ceil(n_rows / d)):
        gaussian = torch.randn(d, d, generator=generator, device=device)
        q, r = torch.linalg.qr(gaussian)
        q = q * torch.sign(torch.diagonal(r))[None, :]                  # unique QR -> Haar-distributed q
        blocks.append(q.T)                                              # rows orthonormal
    directions = torch.cat(blocks, dim=0)[:n_rows]                      # (n_rows, d)
    lengths = torch.randn(n_rows, d, generator=generator, device=device).norm(dim=1, keepdim=True)
    return directions * lengths                                         # (n_rows, d)


class FavorPositiveFeatures(FeatureMap):
    """Performer FAVOR+ positive random features (Choromanski et al. 2021):

        phi(x) = exp(w_i . x' - ||x'||^2 / 2) / sqrt(n_random),  i = 1 .. n_random,  x' = x / D^(1/4),
        n_features = n_random,
        E[phi(q) . phi(k)] = exp(q' . k') = exp(q . k / sqrt(D))  for w_i ~ N(0, I_D)   (positive, unbiased).

    Numerical stabilisation (stabilize=True, the default): exp overflows for large w . x'. A constant factor that
    multiplies every feature of one query, or every feature of every key, cancels between the numerator and the
    normaliser of kernel attention, so
      * queries (is_query=True) subtract their per-row max_i w_i . x' (the per-row ||x'||^2/2 cancels as well),
      * keys subtract the max of w_i . x' - ||x'||^2 / 2 over the whole sequence and all features,
    making every exponent <= 0 (no overflow) while the largest feature of each query, and of the key set, is exactly
    1/sqrt(n_random) (never all underflowing to 0). The stabilised features equal the exact ones up to these constants;
    pass stabilize=False to get the unbiased estimator itself. Key features then depend on the whole sequence through
    one shared constant; it cancels exactly, also in causal attention, provided no absolute eps is added to the
    normaliser (PerformerAttention uses eps=0 for this reason). Padded keys take part in the key maximum.

    Args: d (D), n_random (number of random vectors), orthogonal (orthogonal random projections, default True),
    stabilize.
    Buffer `omega` (n_random, D) holds w_1 .. w_n_random as rows.
    """

    def __init__(self, d: int, n_random: int, orthogonal: bool = True, stabilize: bool = True):
        super().__init__()
        self._check_sizes(d, n_random)
        self.d, self.n_random, self.orthogonal, self.stabilize = d, n_random, orthogonal, stabilize
        self.n_features = n_random
        self.register_buffer("omega", torch.empty(n_random, d))
        self.redraw()

    def redraw(self, generator: torch.Generator | None = None) -> None:
        """Draw w_1 .. w_n_random ~ N(0, I_D): orthogonal blocks (default) or i.i.d."""
        if self.orthogonal:
            omega = orthogonal_gaussian_matrix(self.n_random, self.d, generator=generator)
        else:
            omega = torch.randn(self.n_random, self.d, generator=generator, device=_draw_device(generator))
        self.omega = omega.to(self.omega)                               # reassign, never in place (autograd-safe)

    def forward(self, x: Tensor, is_query: bool = False) -> Tensor:
        """x (..., N, D) -> phi(x) (..., N, n_random); is_query selects the stabilising constant (see the class doc)."""
        self._check_input(x, self.d)
        ### BEGIN SOLUTION
        x = x * self.d ** -0.25                                         # x' = x / D^(1/4)
        projection = x @ self.omega.to(x.dtype).T                       # (..., N, n_random): w_i . x'
        half_norm = x.pow(2).sum(dim=-1, keepdim=True) / 2              # (..., N, 1): ||x'||^2 / 2
        exponent = projection - half_norm                               # (..., N, n_random)
        if self.stabilize:
            if is_query:
                exponent = projection - projection.amax(dim=-1, keepdim=True)
            else:
                exponent = exponent - exponent.amax(dim=(-2, -1), keepdim=True)
        return torch.exp(exponent) / math.sqrt(self.n_random)
        ### END SOLUTION


class EluFeatureMap(FeatureMap):
    """phi(x) = elu(x) + 1 (Katharopoulos et al. 2020): positive, deterministic, n_features = D (d is optional)."""

    def __init__(self, d: int | None = None):
        super().__init__()
        self.d = d
        self.n_features = d

    def forward(self, x: Tensor, is_query: bool = False) -> Tensor:
        """x (..., N, D) -> elu(x) + 1 (..., N, D)."""
        if self.d is not None:
            self._check_input(x, self.d)
        return F.elu(x) + 1


class PolynomialFeatureMap(FeatureMap):
    """Exact degree-2 polynomial kernel: phi(x) = [1, sqrt(2) x, vec(x x^T)], n_features = 1 + D + D^2, so that

        phi(q) . phi(k) = 1 + 2 q . k + (q . k)^2 = (1 + q . k)^2     (no approximation; O(N D^2 M) attention).
    """

    def __init__(self, d: int):
        super().__init__()
        if not isinstance(d, int) or d < 1:
            raise ValueError(f"input width d must be a positive integer, got {d}")
        self.d = d
        self.n_features = 1 + d + d * d

    def forward(self, x: Tensor, is_query: bool = False) -> Tensor:
        """x (..., N, D) -> phi(x) (..., N, 1 + D + D^2)."""
        self._check_input(x, self.d)
        ones = torch.ones_like(x[..., :1])                              # (..., N, 1)
        outer = (x[..., :, None] * x[..., None, :]).flatten(-2)         # (..., N, D^2)
        return torch.cat([ones, math.sqrt(2) * x, outer], dim=-1)


def make_feature_map(name: str, d: int, n_random: int = DEFAULT_N_RANDOM) -> FeatureMap:
    """Feature map by name: "favor+", "favor+iid" (i.i.d. projections), "softmax_rff", "rff", "elu", "polynomial"."""
    maps = {
        "favor+": lambda: FavorPositiveFeatures(d, n_random, orthogonal=True),
        "favor+iid": lambda: FavorPositiveFeatures(d, n_random, orthogonal=False),
        "softmax_rff": lambda: SoftmaxRandomFourierFeatures(d, n_random),
        "rff": lambda: RandomFourierFeatures(d, n_random),
        "elu": lambda: EluFeatureMap(d),
        "polynomial": lambda: PolynomialFeatureMap(d),
    }
    if name not in maps:
        raise ValueError(f"unknown feature_map {name!r}; choose one of {sorted(maps)}")
    return maps[name]()


# ----------------------------------------------------------------------------------------------------------------------
# 5. Kernel attention: V'_i = sum_j phi(Q_i).phi(K_j) V_j / sum_j phi(Q_i).phi(K_j)   (eq. 2)
# ----------------------------------------------------------------------------------------------------------------------


def _check_kernel_inputs(phi_q: Tensor, phi_k: Tensor, v: Tensor) -> tuple[int, ...]:
    return _check_qkv(phi_q, phi_k, v, names=("phi_q", "phi_k", "v"))


def _drop_padded_keys(phi_k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Zero the features and values of padded keys, so they enter neither the numerator nor the normaliser.

    key_padding_mask (..., N_k) bool, True = real token, broadcastable to phi_k.shape[:-1].
    (torch.where, not multiplication, so that inf / NaN in padded positions cannot leak as 0 * inf = NaN.)
    """
    if key_padding_mask is None:
        return phi_k, v
    _check_mask("key_padding_mask", key_padding_mask, tuple(phi_k.shape[:-1]))
    keep = key_padding_mask[..., None]                                  # (..., N_k, 1)
    return torch.where(keep, phi_k, 0.0), torch.where(keep, v, 0.0)


def _divide_or_zero(numerator: Tensor, normaliser: Tensor) -> Tensor:
    """numerator / normaliser, with 0 (not NaN / inf) where the normaliser is exactly 0 (e.g. every key masked).

    numerator (..., N_q, M), normaliser broadcastable to it (..., N_q, 1).
    """
    zero = normaliser == 0
    return torch.where(zero, 0.0, numerator / torch.where(zero, 1.0, normaliser))


def kernel_attention_quadratic(phi_q: Tensor, phi_k: Tensor, v: Tensor, mask: Tensor | None = None,
                               eps: float = 1e-6, return_weights: bool = False):
    """Explicit O(N^2) kernel attention, the reference for eq. (2): A = phi_q phi_k^T, masked entries set to 0,
    out_i = sum_j A_ij V_j / (sum_j A_ij + eps).

    phi_q (..., N_q, n_features), phi_k (..., N_k, n_features), v (..., N_k, M), mask bool (True = may attend)
    broadcastable to (..., N_q, N_k)  ->  out (..., N_q, M) [, weights (..., N_q, N_k) = A / (row sum + eps)].
    """
    batch = _check_kernel_inputs(phi_q, phi_k, v)
    _check_mask("mask", mask, (*batch, phi_q.shape[-2], phi_k.shape[-2]))
    scores = phi_q @ phi_k.transpose(-2, -1)                            # (..., N_q, N_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, 0.0)
    weights = _divide_or_zero(scores, scores.sum(dim=-1, keepdim=True) + eps)
    out = weights @ v                                                   # (..., N_q, M)
    return (out, weights) if return_weights else out


def linear_attention(phi_q: Tensor, phi_k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None,
                     eps: float = 1e-6) -> Tensor:
    """Non-causal linear attention, eq. (2) computed right to left, never forming an N x N matrix:

        V'_i = phi(Q_i)^T (sum_j phi(K_j) V_j^T) / (phi(Q_i)^T sum_j phi(K_j) + eps).

    phi_q (..., N_q, n_features), phi_k (..., N_k, n_features), v (..., N_k, M), key_padding_mask (..., N_k) bool
    True = real token (broadcastable to phi_k.shape[:-1]; padded keys are excluded from numerator and normaliser)
    -> (..., N_q, M).
    A query whose normaliser + eps is 0 (e.g. every key padded and eps=0) gets a zero output (use _divide_or_zero).
    === BEGIN INSTRUCTOR ONLY ===
    Cost: O(N n_features M) time (sum_j phi(K_j) V_j^T once, then one product per query), O(n_features M) state.
    === END INSTRUCTOR ONLY ===
    """
    _check_kernel_inputs(phi_q, phi_k, v)
    phi_k, v = _drop_padded_keys(phi_k, v, key_padding_mask)
    ### BEGIN SOLUTION
    kv = phi_k.transpose(-2, -1) @ v                                    # (..., n_features, M): sum_j phi(K_j) V_j^T
    z = phi_k.sum(dim=-2)                                               # (..., n_features):    sum_j phi(K_j)
    numerator = phi_q @ kv                                              # (..., N_q, M)
    normaliser = (phi_q * z[..., None, :]).sum(dim=-1, keepdim=True)    # (..., N_q, 1)
    return _divide_or_zero(numerator, normaliser + eps)
    ### END SOLUTION


def _check_causal_inputs(phi_q: Tensor, phi_k: Tensor, v: Tensor) -> None:
    _check_kernel_inputs(phi_q, phi_k, v)
    if phi_q.shape[-2] != phi_k.shape[-2]:
        raise ValueError(f"causal attention needs N_q == N_k, got phi_q {tuple(phi_q.shape)}, "
                         f"phi_k {tuple(phi_k.shape)}")


def causal_linear_attention_reference(phi_q: Tensor, phi_k: Tensor, v: Tensor, eps: float = 1e-6) -> Tensor:
    """Causal linear attention written with S_i and Z_i of eq. (6), position by position (question 3(b), optional):
    readable and slow (a Python loop over positions).

        S_i = sum_{j<=i} phi(K_j) V_j^T   (..., n_features, M),      Z_i = sum_{j<=i} phi(K_j)   (..., n_features)

    Output i may use keys and values j <= i only; add eps to the normaliser (as linear_attention does).
    phi_q (..., N, n_features), phi_k (..., N, n_features), v (..., N, M) -> (..., N, M).
    === BEGIN INSTRUCTOR ONLY ===
        S_i = S_{i-1} + phi(K_i) V_i^T,   Z_i = Z_{i-1} + phi(K_i),   V'_i = phi(Q_i)^T S_i / (phi(Q_i)^T Z_i + eps)
    O(N n_features M) time, O(n_features M) state.
    === END INSTRUCTOR ONLY ===
    """
    _check_causal_inputs(phi_q, phi_k, v)
    ### BEGIN SOLUTION
    batch = _batch_shape(phi_q, phi_k, v, names=("phi_q", "phi_k", "v"))
    n, n_features, width = phi_q.shape[-2], phi_q.shape[-1], v.shape[-1]
    dtype = torch.promote_types(phi_q.dtype, v.dtype)
    s = torch.zeros(*batch, n_features, width, dtype=dtype, device=v.device)   # S_0 = 0
    z = torch.zeros(*batch, n_features, dtype=dtype, device=v.device)          # Z_0 = 0
    outputs = []
    for i in range(n):
        # k_i (..., n_features), v_i (..., M), q_i (..., n_features)
        k_i, v_i, q_i = phi_k[..., i, :], v[..., i, :], phi_q[..., i, :]
        s = s + k_i[..., :, None] * v_i[..., None, :]                          # S_i = S_{i-1} + phi(K_i) V_i^T
        z = z + k_i                                                            # Z_i = Z_{i-1} + phi(K_i)
        numerator = (q_i[..., None, :] @ s).squeeze(-2)                        # (..., M)
        normaliser = (q_i * z).sum(dim=-1, keepdim=True)                       # (..., 1)
        outputs.append(_divide_or_zero(numerator, normaliser + eps))
    return torch.stack(outputs, dim=-2)                                        # (..., N, M)
    ### END SOLUTION


def causal_linear_attention(phi_q: Tensor, phi_k: Tensor, v: Tensor, chunk_size: int = 64, eps: float = 1e-6,
                            key_padding_mask: Tensor | None = None) -> Tensor:
    """Causal linear attention, fast (question 3(b), optional): equals causal_linear_attention_reference, without a
    Python loop over single positions. Suggestion: cut the sequence into chunks of C = chunk_size positions.

    phi_q (..., N, n_features), phi_k (..., N, n_features), v (..., N, M), key_padding_mask (..., N) bool
    True = real token (padded keys are excluded from numerator and normaliser) -> (..., N, M).
    === BEGIN INSTRUCTOR ONLY ===
    Inside a chunk the masked quadratic form (C x C, lower-triangular) is used; across chunks the running state
    S (..., n_features, M) and Z (..., n_features) of eq. (6) is carried. Time O(N (C n_features + C M + n_features M)),
    extra memory O(C^2 + n_features M) per batch element -- no per-position outer products phi(K_j) V_j^T are ever
    materialised.
    === END INSTRUCTOR ONLY ===
    """
    _check_causal_inputs(phi_q, phi_k, v)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    phi_k, v = _drop_padded_keys(phi_k, v, key_padding_mask)
    ### BEGIN SOLUTION
    batch = _batch_shape(phi_q, phi_k, v, names=("phi_q", "phi_k", "v"))
    n, n_features, width = phi_q.shape[-2], phi_q.shape[-1], v.shape[-1]
    dtype = torch.promote_types(phi_q.dtype, v.dtype)
    s = torch.zeros(*batch, n_features, width, dtype=dtype, device=v.device)   # S: keys of all earlier chunks
    z = torch.zeros(*batch, n_features, dtype=dtype, device=v.device)          # Z
    tril = causal_mask(min(chunk_size, max(n, 1)), device=v.device)            # (C, C)
    outputs = []
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        q_c, k_c, v_c = phi_q[..., start:stop, :], phi_k[..., start:stop, :], v[..., start:stop, :]   # (..., c, .)
        c = stop - start
        scores = (q_c @ k_c.transpose(-2, -1)).masked_fill(~tril[:c, :c], 0.0)    # (..., c, c) within the chunk
        numerator = scores @ v_c + q_c @ s                                        # (..., c, M)
        normaliser = scores.sum(dim=-1, keepdim=True) + q_c @ z[..., :, None]     # (..., c, 1)
        outputs.append(_divide_or_zero(numerator, normaliser + eps))
        s = s + k_c.transpose(-2, -1) @ v_c                                       # carry S to the next chunk
        z = z + k_c.sum(dim=-2)                                                   # carry Z
    if not outputs:
        return torch.zeros(*batch, 0, width, dtype=dtype, device=v.device)
    return torch.cat(outputs, dim=-2)                                             # (..., N, M)
    ### END SOLUTION


# ----------------------------------------------------------------------------------------------------------------------
# 6. Performer attention: multi-head attention with the softmax kernel replaced by feature maps
# ----------------------------------------------------------------------------------------------------------------------

class PerformerAttention(MultiHeadAttention):
    """Drop-in replacement for MultiHeadAttention (same constructor first arguments, same forward signature) that
    computes each head with kernelized linear attention (linear_attention with a feature map).
    === BEGIN INSTRUCTOR ONLY ===
    Cost per head: O(N n_random Dh) instead of O(N^2 Dh).
    === END INSTRUCTOR ONLY ===

    feature_map: "favor+" (default, approximates softmax), "favor+iid", "softmax_rff", "rff", "elu", "polynomial"
    (see make_feature_map) or a FeatureMap instance; one feature map of input width Dh is shared by all heads.
    redraw_features=True draws fresh random features at every forward pass in training mode (Performer's feature
    redrawing); call `redraw_features_now(generator)` to redraw by hand. Dropout (no attention matrix to drop
    entries from) is applied to the per-head attention output. Causal attention uses causal_linear_attention
    (question 3(b), optional) and needs N_q == N_k; while that is not implemented it falls back, with a warning, to
    the masked quadratic form kernel_attention_quadratic (same result, through the N x N matrix). attn_mask is not
    supported (only padding and causal masks are) and raises ValueError. return_weights=True also returns the
    implied weights (B, H, N_q, N_k), computed explicitly as an N x N matrix -- for visualisation only.

    eps defaults to 0 here: FAVOR+ features are stabilised by constants that cancel between numerator and normaliser
    only if nothing is added to the normaliser. An absolute eps would not cancel: it would let a future key's
    stabilising constant leak into causal outputs and swamp small (but valid) normalisers. A zero normaliser (every
    key masked) still gives a zero output.
    """

    def __init__(self, d_model: int, n_heads: int, d_key_value: int | None = None, dropout: float = 0.0,
                 bias: bool = True, n_random: int = DEFAULT_N_RANDOM, feature_map: str | FeatureMap = "favor+",
                 redraw_features: bool = False, chunk_size: int = 64, eps: float = 0.0):
        super().__init__(d_model, n_heads, d_key_value, dropout, bias)
        if isinstance(feature_map, FeatureMap):
            self.feature_map = feature_map                              # a ready-made map of input width Dh
        else:
            self.feature_map = make_feature_map(feature_map, self.head_dim, n_random)
        self.redraw_features = redraw_features
        self.chunk_size, self.eps = chunk_size, eps

    def redraw_features_now(self, generator: torch.Generator | None = None) -> None:
        self.feature_map.redraw(generator)

    def _causal(self, phi_q, phi_k, v, keys):
        """causal_linear_attention, or the masked quadratic form while 3(b) (optional) is not implemented, so that
        the Performer experiment of 1(g) never depends on 3(b)."""
        try:
            return causal_linear_attention(phi_q, phi_k, v, self.chunk_size, self.eps, key_padding_mask=keys)
        except NotImplementedError:
            warnings.warn("causal_linear_attention (3(b), optional) is not implemented: causal PerformerAttention "
                          "uses the masked N x N kernel attention instead", stacklevel=3)
            mask = causal_mask(phi_q.shape[-2], device=phi_q.device)
            if keys is not None:
                mask = combine_masks(mask, keys[..., None, :])
            return kernel_attention_quadratic(phi_q, phi_k, v, mask, self.eps)

    def _attend(self, q, k, v, key_padding_mask, causal, attn_mask, return_weights):
        """q (B, H, N_q, Dh), k / v (B, H, N_k, Dh) -> out (B, H, N_q, Dh), implied weights or None."""
        if attn_mask is not None:
            raise ValueError("PerformerAttention supports only key_padding_mask and causal=True; attn_mask must be "
                             "None (use MultiHeadAttention for arbitrary masks)")
        if causal and q.shape[-2] != k.shape[-2]:
            raise ValueError(f"causal PerformerAttention needs N_q == N_k, got q {tuple(q.shape)}, k {tuple(k.shape)}")
        if self.redraw_features and self.training:
            self.feature_map.redraw()
        out_dtype = q.dtype
        q, k, v = _upcast(q, k, v)
        keys = key_padding_mask[:, None, :] if key_padding_mask is not None else None   # (B, 1, N_k)
        phi_q = self.feature_map(q, is_query=True)                      # (B, H, N_q, n_features)
        phi_k = self.feature_map(k, is_query=False)                     # (B, H, N_k, n_features)
        if causal:
            out = self._causal(phi_q, phi_k, v, keys)
        else:
            out = linear_attention(phi_q, phi_k, v, key_padding_mask=keys, eps=self.eps)   # (B, H, N_q, Dh)
        out = F.dropout(out, self.dropout, self.training).to(out_dtype)
        weights = None
        if return_weights:
            mask = combine_masks(
                padding_mask(key_padding_mask) if key_padding_mask is not None else None,
                causal_mask(q.shape[-2], k.shape[-2], device=q.device) if causal else None,
            )
            _, weights = kernel_attention_quadratic(phi_q, phi_k, v, mask, self.eps, return_weights=True)
            weights = weights.to(out_dtype)
        return out, weights
