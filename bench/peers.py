"""The peer libraries a user who wants linear attention would pick, timed in the same rounds as ours.

Benchmark-only dependencies (bench/requirements-peers.txt, which `make bench` installs; never a student requirement).

- performer-pytorch (lucidrains, pure PyTorch): `performer_pytorch.FastAttention(dim_heads=64, nb_features=m,
  causal=...)` on the same (B, H, N, D) float32 q, k, v and the same m as ours; its own defaults otherwise
  (ortho_scaling=0, softmax kernel = FAVOR+ with orthogonal random features, no feature redraw while timed). Without
  fast-transformers' CUDA kernel its causal path is `causal_linear_attention_noncuda` (it prints "will default to the
  memory inefficient non-cuda version"): q, k, v cut into 128 pieces along N, a cumulative sum of k v^T in each.
- fast-transformers (idiap, C++/CUDA kernels, incl. a causal product): not timed. Its 0.4.0 setup.py builds CUDA
  extensions unconditionally and stops with "CUDA_HOME environment variable is not set" where there is no CUDA
  toolkit (measured on this 2-core CPU machine), so every run lists it as unavailable with that reason in the JSON
  and the tables, never silently. On a machine where it imports, the reason says that it is not wired in yet.
"""

from __future__ import annotations

import importlib
import io
from contextlib import redirect_stdout
from typing import Callable

import torch

FAST_TRANSFORMERS_WHY = ("pytorch-fast-transformers 0.4.0 does not install here: its setup.py builds CUDA extensions "
                         "unconditionally (torch.utils.cpp_extension.CUDAExtension) and stops with 'CUDA_HOME "
                         "environment variable is not set' without a CUDA toolkit")


def _import(name: str):
    try:
        return importlib.import_module(name), None
    except ImportError as err:
        return None, f"{name} not importable ({err}); install bench/requirements-peers.txt (`make bench` does)"


def performer_pytorch_builds(n_random: int, causal: bool, device: torch.device) -> Callable | None:
    """build(q, k, v) -> the call to time, for performer-pytorch's FastAttention; None when it is not installed."""
    module, _ = _import("performer_pytorch")
    if module is None:
        return None
    torch.manual_seed(n_random)                         # its projection is drawn from the global generator
    with redirect_stdout(io.StringIO()):                # its causal constructor prints a warning on CPU
        attention = module.FastAttention(dim_heads=64, nb_features=n_random, causal=causal).to(device)
    return lambda q, k, v: lambda: attention(q, k, v)


PEERS = {"performer-pytorch": performer_pytorch_builds}


def unavailable() -> dict[str, str]:
    """{peer: why it is not timed in this run} for the peers that do not import."""
    why = {}
    module, problem = _import("performer_pytorch")
    if module is None:
        why["performer-pytorch"] = problem
    importable = _import("fast_transformers.attention")[0] is not None
    why["fast-transformers"] = ("it imports here, but bench/peers.py has no fast-transformers variant yet" if importable
                                else FAST_TRANSFORMERS_WHY)
    return why
