"""Trusted checks of kernel_attention.py and the summarizer checkpoint (hidden: never released).

Each check draws its inputs here (seeded), runs the student's function in the sandboxed child and compares with the
instructor's kernel_attention.py run on the same inputs (grading/harness.py). Random feature maps receive the
instructor's random draws (`state_from_reference`), so their outputs are deterministic and compared exactly.
"""

import math

import torch

from grading.checks import Case, FileCase, randn

KA = "kernel_attention"


def _causal(n_q, n_k):
    return torch.ones(n_q, n_k, dtype=torch.bool).tril()


def _one_empty_row(n_q, n_k):
    mask = _causal(n_q, n_k)
    mask[1] = False                                            # query 1 may attend to nothing -> zeros, not NaN
    return mask


def _phi_inputs(g, n_q=9, n_k=11, f=6, m=5, positive=True):
    phi = (lambda *s: randn(g, *s).exp()) if positive else (lambda *s: randn(g, *s))
    return phi(2, 3, n_q, f), phi(2, 3, n_k, f), randn(g, 2, 3, n_k, m)


def _padding(g, b, n):
    keep = torch.rand(b, n, generator=g) > 0.3
    keep[:, 0] = True                                          # at least one real token per row
    return keep


def _checkpoint_format():
    """(format name, required keys) of summarizer.checkpoint. The Gradescope image has neither the summarizer package
    nor tokenizers: there the same values, copied from summarizer/checkpoint.py (keep the two equal)."""
    try:
        from summarizer.checkpoint import FORMAT, REQUIRED_KEYS
    except ImportError:
        return "hw8-summarizer", ("config", "state_dict", "tokenizer")
    return FORMAT, REQUIRED_KEYS


def _checkpoint(path, reference):
    """checkpoints/summarizer.pt: a readable hw8-summarizer checkpoint whose weights are finite tensors."""
    checkpoint_format, required_keys = _checkpoint_format()
    if path.stat().st_size == 0:
        return f"{path.name} is empty"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - not a torch file, truncated, pickled objects
        return f"{path.name} cannot be loaded with torch.load(weights_only=True): {type(err).__name__}"
    if not isinstance(payload, dict) or payload.get("format") != checkpoint_format:
        return f"{path.name} is not a summarizer checkpoint saved by summarizer.checkpoint.save_checkpoint"
    missing = [k for k in required_keys if k not in payload]
    if missing:
        return f"{path.name} lacks {missing}"
    state = payload["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return f"{path.name}: state_dict should map parameter names to tensors"
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        return f"{path.name}: weights contain NaN/inf ({bad[:3]})"
    try:
        from summarizer.checkpoint import load_checkpoint
    except ImportError:
        return None                                            # the Gradescope image checks the format only
    try:
        load_checkpoint(path)
    except (ValueError, FileNotFoundError) as err:
        return str(err)[:300]
    return None


CASES = [
    Case("scaled_dot_product_attention: batched, no mask", 2, f"{KA}:scaled_dot_product_attention",
         lambda g: {"args": [randn(g, 2, 3, 5, 8), randn(g, 2, 3, 7, 8), randn(g, 2, 3, 7, 4)]}, atol=1e-4),
    Case("scaled_dot_product_attention: causal mask, weights returned", 2, f"{KA}:scaled_dot_product_attention",
         lambda g: {"args": [randn(g, 3, 6, 5), randn(g, 3, 6, 5), randn(g, 3, 6, 2)],
                    "kwargs": {"mask": _causal(6, 6), "return_weights": True}}, atol=1e-4),
    Case("scaled_dot_product_attention: a fully masked query row gives zeros (no NaN)", 1,
         f"{KA}:scaled_dot_product_attention",
         lambda g: {"args": [randn(g, 4, 3), randn(g, 5, 3), randn(g, 5, 2)], "kwargs": {"mask": _one_empty_row(4, 5)}},
         atol=1e-4),
    Case("split_heads", 1, f"{KA}:split_heads", lambda g: {"args": [randn(g, 2, 5, 12), 3]}),
    Case("merge_heads", 1, f"{KA}:merge_heads", lambda g: {"args": [randn(g, 2, 4, 5, 3)]}),
    Case("MultiHeadAttention: cross-attention, padding + causal masks", 2, f"{KA}:MultiHeadAttention",
         lambda g: {"init": {"args": [12, 3], "kwargs": {"d_key_value": 8}},
                    "args": [randn(g, 2, 6, 12), *(2 * [randn(g, 2, 6, 8)])],
                    "kwargs": {"key_padding_mask": _padding(g, 2, 6), "causal": True, "return_weights": True}},
         state_from_reference=True, atol=1e-4),
    Case("sinusoidal_positional_encoding(13, 10)", 1, f"{KA}:sinusoidal_positional_encoding",
         lambda g: {"args": [13, 10]}, atol=1e-5),
    Case("positional_shift_matrix(10, shift=3)", 1, f"{KA}:positional_shift_matrix",
         lambda g: {"args": [10], "kwargs": {"shift": 3}}, atol=1e-5),
    Case("RandomFourierFeatures.forward (eq. 4)", 1, f"{KA}:RandomFourierFeatures",
         lambda g: {"init": {"args": [6, 16]}, "args": [randn(g, 2, 7, 6)], "attrs": ["n_features"]},
         state_from_reference=True, atol=1e-5),
    Case("SoftmaxRandomFourierFeatures.forward", 1, f"{KA}:SoftmaxRandomFourierFeatures",
         lambda g: {"init": {"args": [4, 16]}, "args": [randn(g, 2, 7, 4) * 0.5]},
         state_from_reference=True, atol=1e-4),
    Case("FavorPositiveFeatures.forward (queries)", 1, f"{KA}:FavorPositiveFeatures",
         lambda g: {"init": {"args": [8, 16]}, "args": [randn(g, 2, 9, 8)], "kwargs": {"is_query": True}},
         state_from_reference=True, atol=1e-5),
    Case("FavorPositiveFeatures.forward (keys)", 1, f"{KA}:FavorPositiveFeatures",
         lambda g: {"init": {"args": [8, 16]}, "args": [randn(g, 2, 9, 8)], "kwargs": {"is_query": False}},
         state_from_reference=True, atol=1e-5),
    Case("linear_attention (eq. 2) with a key padding mask", 2, f"{KA}:linear_attention",
         lambda g: {"args": list(_phi_inputs(g)), "kwargs": {"key_padding_mask": _padding(g, 2, 11)[:, None, :]
                                                             .expand(2, 3, 11)}}, atol=1e-4),
    Case("causal_linear_attention_reference (eq. 6, S_i and Z_i)", 2, f"{KA}:causal_linear_attention_reference",
         lambda g: {"args": list(_phi_inputs(g, 10, 10))}, atol=1e-4),
    Case("PerformerAttention (uses your feature map and causal linear attention)", 1, f"{KA}:PerformerAttention",
         lambda g: {"init": {"args": [8, 2], "kwargs": {"n_random": 16, "feature_map": "favor+"}},
                    "args": [*(3 * [randn(g, 2, 6, 8)])], "kwargs": {"causal": True}},
         state_from_reference=True, atol=1e-4),
    FileCase("checkpoints/summarizer.pt is a trained summarizer checkpoint", 2, "checkpoints/summarizer.pt",
             _checkpoint),
]

TOTAL_POINTS = sum(c.points for c in CASES)
assert math.isclose(TOTAL_POINTS, 22), TOTAL_POINTS
