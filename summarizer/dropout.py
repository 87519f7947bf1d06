"""Dropout with a cheaper random mask, for training the summarizer on a CPU.

`nn.Dropout` draws one random number per element (`bernoulli_`), about 8 ns each on this repository's CPU: with
dropout 0.1 at every site of the summarizer that was a third of a float32 training step. Here one 64-bit draw feeds
four elements: each element gets a 16-bit slice of it and is kept when the slice is at or above p * 65536, so p is
rounded to a multiple of 1/65536. Same seed, same mask; the output and gradient are x * keep / (1 - p), as in
`nn.Dropout`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_LANES = 4  # 16-bit slices of one int64 draw
_INT16_MIN = -(2**15)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device=None, generator: torch.Generator | None = None
              ) -> Tensor:
    """Bool tensor of `shape`, each entry True with probability 1 - p, 0 <= p < 1 (p rounded to a multiple of 2^-16,
    at most 1 - 2^-16)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    n = 1
    for size in shape:
        n *= size
    draws = torch.empty((n + _LANES - 1) // _LANES, dtype=torch.int64, device=device)
    draws.random_(-(2**63), 2**63 - 1, generator=generator)  # (almost) all 64 bits random
    lanes = draws.view(torch.int16)[:n].view(shape)  # uniform over [-2^15, 2^15)
    return lanes >= _INT16_MIN + min(round(p * 2**16), 2**16 - 1)  # the bound must fit in int16 (no wrap-around)


class FastDropout(nn.Module):
    """Drop-in for nn.Dropout(p) in training: x (any shape) -> x * keep / (1 - p); identity in eval mode or at p = 0."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = keep_mask(x.shape, self.p, x.device)
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"
