"""Helpers shared by the test files: references written independently of kernel_attention, memory spies, and the
nbgrader metadata of a notebook cell.

Released with the visible tests (tests/test_kernel_attention.py imports it), so it holds nothing instructor-only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode


def randn(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype)


def kernel_attention_loops(q, k, v, kernel, allowed):
    """V'_i = sum_j K(q_i, k_j) v_j / sum_j K(q_i, k_j) over the j with allowed(i, j), in plain Python loops.
    q (N_q, D), k (N_k, D), v (N_k, M)."""
    out = torch.zeros(q.shape[0], v.shape[1], dtype=v.dtype)
    for i in range(q.shape[0]):
        numerator, normaliser = torch.zeros(v.shape[1], dtype=v.dtype), 0.0
        for j in range(k.shape[0]):
            if allowed(i, j):
                weight = kernel(q[i], k[j])
                numerator += weight * v[j]
                normaliser += weight
        out[i] = numerator / normaliser
    return out


def copy_into_torch_mha(mha) -> nn.MultiheadAttention:
    """An nn.MultiheadAttention with exactly the weights (and biases, if any) of a kernel_attention.MultiHeadAttention,
    including cross attention with another key/value width."""
    has_bias = mha.q_proj.bias is not None
    ref = nn.MultiheadAttention(mha.d_model, mha.n_heads, batch_first=True, bias=has_bias,
                                kdim=mha.d_key_value, vdim=mha.d_key_value, dtype=mha.q_proj.weight.dtype)
    with torch.no_grad():
        if mha.d_key_value == mha.d_model:
            ref.in_proj_weight.copy_(torch.cat([mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight]))
        else:
            ref.q_proj_weight.copy_(mha.q_proj.weight)
            ref.k_proj_weight.copy_(mha.k_proj.weight)
            ref.v_proj_weight.copy_(mha.v_proj.weight)
        if has_bias:
            ref.in_proj_bias.copy_(torch.cat([mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias]))
            ref.out_proj.bias.copy_(mha.out_proj.bias)
        ref.out_proj.weight.copy_(mha.out_proj.weight)
    return ref


class _LargestResult:
    """Records in `largest` the largest number of elements of any tensor the intercepted calls return."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def _call(self, func, args, kwargs):
        result = func(*args, **(kwargs or {}))
        for r in result if isinstance(result, (tuple, list)) else (result,):
            if isinstance(r, torch.Tensor):
                self.largest = max(self.largest, r.numel())
        return result


class LargestTensor(_LargestResult, TorchFunctionMode):
    """The largest tensor any torch function called by the code under test returns (what that code builds itself;
    internals of a torch function are not seen, so a correct implementation never fails on them)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self._call(func, args, kwargs)


class LargestIntermediate(_LargestResult, TorchDispatchMode):
    """The largest tensor any aten operator produces, internals of composite torch functions included (a stricter
    proxy for peak extra memory)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return self._call(func, args, kwargs)


def nbgrader(cell) -> dict:
    """A notebook cell's nbgrader metadata ({} for a cell nbgrader does not manage)."""
    return cell.metadata.get("nbgrader", {})


def assert_renders_to_png(fig, path) -> None:
    """`fig` is a matplotlib Figure (the plotting convention of figures.py and helper.py) that saves headless as a
    non-trivial PNG at `path`."""
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure), type(fig)
    fig.savefig(path, dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
