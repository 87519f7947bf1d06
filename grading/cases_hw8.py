"""Trusted checks of HW8 (hidden: never released): every autograded point of the homework, on both graders.

Each check draws its inputs here (seeded), runs the student's function in the sandboxed child and compares with the
instructor's code run on the same inputs (grading/harness.py). Random feature maps receive the instructor's random
draws (`state_from_reference`), so their outputs are deterministic; stabilised FAVOR+ features are compared up to
the positive constants that cancel in attention (`_favor_up_to_constants`), everything else exactly. Checks with an
`nbgrader_cell` decide that notebook test cell's points (their points add up to the cell's); the others are points of
their own. Notebook functions run the student's solution cell alone after a trusted preamble (`cells`, `preamble`), so
the training cells never run while grading. The checkpoint is graded as submitted: its validation loss is computed
here, in the trusted process, with the instructor's model code from `weights_only` weights.
"""

import math

import torch

from grading.checks import Case, FileCase, compare_values, randn
from grading.sandbox_child import check_archive
from homework.parts import part_of_cell, part_of_function

KA = "kernel_attention"
SUM = "Summarization.ipynb"


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


# A checkpoint the grader will run: sizes outside these (the default model is 128 wide, 2 + 2 layers, 8000 tokens)
# would only make the trusted validation-loss computation slow or meaningless, so they are refused before any weight
# is used. Its file is read only after check_archive: stored (uncompressed) records, MAX_CHECKPOINT_BYTES in all.
CHECKPOINT_LIMITS = {"vocab_size": (300, 32000), "d_model": (8, 512), "d_decoder": (8, 512), "n_heads": (1, 16),
                     "n_encoder_layers": (1, 6), "n_decoder_layers": (1, 6), "d_ff": (8, 2048), "n_random": (1, 1024),
                     "max_source_len": (64, 512), "max_target_len": (32, 128), "dropout": (0, 1)}
MAX_CHECKPOINT_BYTES = 64 * 2**20


def _checkpoint(path, reference):
    """checkpoints/summarizer.pt: a readable hw8-summarizer checkpoint whose weights are finite tensors that fit its
    config (within CHECKPOINT_LIMITS). The stored tokenizer is only read as JSON, never by the tokenizers library."""
    checkpoint = reference("summarizer.checkpoint")          # the instructor's summarizer package
    if path.stat().st_size == 0:
        return f"{path.name} is empty"
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        return f"{path.name} is larger than {MAX_CHECKPOINT_BYTES >> 20} MiB (the default model's is about 12 MiB)"
    try:
        check_archive(path, MAX_CHECKPOINT_BYTES)
        payload = checkpoint.read_checkpoint(path)
    except ValueError as err:
        return f"{path.name} cannot be loaded with torch.load(weights_only=True): {str(err)[:300]}"
    state, config = payload["state_dict"], payload["config"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return f"{path.name}: state_dict should map parameter names to tensors"
    views = [k for k, v in state.items() if not v.is_contiguous()
             or v.untyped_storage().nbytes() != v.numel() * v.element_size()]
    if views:                  # e.g. torch.zeros(1).expand(10**12): a few bytes in the file, a huge tensor to check
        return f"{path.name}: weights should be plain tensors that own their storage (not views: {views[:3]})"
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        return f"{path.name}: weights contain NaN/inf ({bad[:3]})"
    if not isinstance(config, dict):
        return f"{path.name}: config should be a dict (SummarizerConfig.to_dict())"
    outside = [f"{k}={config[k]!r}" for k, (low, high) in CHECKPOINT_LIMITS.items() if config.get(k) is not None
               and (type(config[k]) not in (int, float) or not low <= config[k] <= high)]
    if outside:
        return (f"{path.name}: the config is outside what the grader runs ({', '.join(outside)}; limits "
                f"{CHECKPOINT_LIMITS})")
    try:
        network = reference("summarizer.model")
        network.Summarizer(network.SummarizerConfig.from_dict(config)).load_state_dict(state)
    except (ValueError, TypeError, RuntimeError) as err:
        return f"{path.name}: the weights do not fit the config ({str(err)[:300]})"
    return None


def _checkpoint_quality(path, reference):
    """The validation loss of the submitted weights, computed with the instructor's model code, below the threshold
    of the full run (the test suite grades with HW8_FAST=1: the fast run's threshold and validation subset)."""
    problem = _checkpoint(path, reference)
    if problem:
        return problem
    run = reference("summarizer.settings").settings()
    loss = reference("summarizer.pipeline").checkpoint_validation_loss(path, run)
    if not math.isfinite(loss) or loss >= run.val_loss_threshold:
        return (f"validation loss {loss:.3f} is not below {run.val_loss_threshold} (the full run of "
                "Summarization.ipynb trains a model that gets there)")
    return None


# 1(f): the student's cell calls `summarize` (method="sample": one draw per article, as in summarizer/decode.py);
# here it is a recording stand-in with the same signature (no model runs in the sandbox) whose output tells the
# parent how it was called: a draw is named by its row in the call and the seed, so the same call repeated gives the
# same summaries, as the real sampler does.
FAKE_SUMMARIZE = """
import torch
from types import SimpleNamespace

SEED = 0
model, tok = SimpleNamespace(), SimpleNamespace()
corpus = SimpleNamespace(test_articles=[f"article {i}: a package description" for i in range(8)])


def summarize(model, tok, articles, *, method="beam", batch_size=128, beam_size=4, temperature=1.0, top_k=0,
              top_p=1.0, no_repeat_ngram_size=3, max_len=None, seed=0):
    if method not in ("greedy", "beam", "sample"):
        raise ValueError(f"method={method!r}: expected 'greedy', 'beam' or 'sample'")
    number = lambda text: int(text.split(":")[0].split()[-1])
    if method != "sample":
        return [f"{method} summary of article {number(a)}" for a in articles]
    return [f"sample {row} of article {number(a)} (seed {seed})" for row, a in enumerate(articles)]
"""


def _samples(got, expected, request):
    """samples: for each of the 4 articles, N_SAMPLES = 5 different sampled summaries (method="sample")."""
    if not isinstance(got, list) or len(got) != 4:
        return f"samples should be a list with one entry per article (4), got {type(got).__name__}"
    for i, options in enumerate(got):
        if not isinstance(options, list) or len(options) != 5 or not all(isinstance(s, str) for s in options):
            return f"samples[{i}] should be a list of N_SAMPLES = 5 strings"
        if not all(s.startswith("sample ") and f" of article {i} " in s for s in options):
            return f"samples[{i}] was not made by summarize(..., method='sample') on article {i}"
        if len(set(options)) != 5:
            return f"samples[{i}] repeats a summary: its N_SAMPLES summaries should be different draws"
    return None


def _favor_up_to_constants(got, expected, request):
    """Stabilised FavorPositiveFeatures: the features up to the positive constants that cancel in kernel attention,
    which is all the mathematics fixes: one per query row (is_query=True); one per sequence of keys, common to its
    positions and features (one per leading index; one for the whole batch is a special case). Each group is divided
    by its maximum and compared; every feature must be finite and >= 0, and no group all 0 (underflow)."""
    if not isinstance(got, torch.Tensor) or not got.is_floating_point():
        kind = f"a tensor of dtype {got.dtype}" if isinstance(got, torch.Tensor) else f"a {type(got).__name__}"
        return f"features: expected a floating-point tensor, got {kind}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"features: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    got, expected = got.double(), expected.double()
    if not torch.isfinite(got).all() or (got < 0).any():
        return "features: every feature should be finite and >= 0 (exp of something): NaN, inf or a negative factor"
    query = bool(request["kwargs"].get("is_query", False))
    dims, group = ((-1,), "query row") if query else ((-2, -1), "key sequence")
    top = got.amax(dim=dims, keepdim=True)
    if (top == 0).any():
        first = tuple(int(i) for i in (top == 0).nonzero()[0][:-len(dims)].tolist())
        where = f"{group} {first}" if first else f"the {group}"
        return (f"features: every feature of {where} is 0 (a zero factor, or exp underflowed: the stabilising "
                f"constant should keep the largest feature of each {group} representable)")
    return compare_values(got / top, expected / expected.amax(dim=dims, keepdim=True), atol=1e-5, rtol=1e-3,
                          where=f"features divided by their maximum per {group} (the constants that cancel)")


def _long_linear_inputs(g, n=65536):
    """(2, N, 4) positive features and values, padded keys: phi_q phi_k^T (2 x 16 GiB in float32) cannot be formed."""
    return {"args": [randn(g, 2, n, 4).exp(), randn(g, 2, n, 4).exp(), randn(g, 2, n, 4)],
            "kwargs": {"key_padding_mask": _padding(g, 2, n)}}


def _long_causal_inputs(g, n=4096, f=384, m=384):
    """(1, N, F) positive features, (1, N, M) values: all S_i at once, an (N, F, M) tensor, is 2.25 GiB in float32,
    more than the grader gives the student's code (MEMORY_LIMIT of grading/sandbox_parent.py); carrying S and Z from
    chunk to chunk needs a few MiB. Small N and large F, M keep the inputs small (18 MiB) for Gradescope's 768 MB."""
    return {"args": [(0.5 * randn(g, 1, n, f)).exp(), (0.5 * randn(g, 1, n, f)).exp(), randn(g, 1, n, m)]}


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
         state_from_reference=True, compare=_favor_up_to_constants),
    Case("FavorPositiveFeatures.forward (keys)", 1, f"{KA}:FavorPositiveFeatures",
         lambda g: {"init": {"args": [8, 16]}, "args": [randn(g, 2, 9, 8)], "kwargs": {"is_query": False}},
         state_from_reference=True, compare=_favor_up_to_constants),
    Case("linear_attention (eq. 2) with a key padding mask", 1, f"{KA}:linear_attention",
         lambda g: {"args": list(_phi_inputs(g)), "kwargs": {"key_padding_mask": _padding(g, 2, 11)[:, None, :]
                                                             .expand(2, 3, 11)}}, atol=1e-4),
    Case("linear_attention (eq. 2) on 65536 queries and keys, without an N x N matrix", 1, f"{KA}:linear_attention",
         _long_linear_inputs, atol=1e-5,
         hint="N = 65536: an N x N matrix (16 GiB in float32) does not fit in the 2 GiB the grader gives your code; "
              "eq. 2 computed right to left never forms it"),
    Case("causal_linear_attention_reference (eq. 6, S_i and Z_i)", 1, f"{KA}:causal_linear_attention_reference",
         lambda g: {"args": list(_phi_inputs(g, 10, 10))}, atol=1e-4),
    Case("causal_linear_attention on 4096 positions with F = M = 384, without all S_i at once", 1,
         f"{KA}:causal_linear_attention", _long_causal_inputs, atol=1e-5,
         hint="N = 4096, F = M = 384: every S_i at once, an (N, F, M) tensor, is 2.25 GiB in float32 and does not "
              "fit in the 2 GiB the grader gives your code; carry S and Z from chunk to chunk"),
    Case("PerformerAttention with your FavorPositiveFeatures and linear_attention", 1, f"{KA}:PerformerAttention",
         lambda g: {"init": {"args": [8, 2], "kwargs": {"n_random": 16, "feature_map": "favor+"}},
                    "args": [*(3 * [randn(g, 2, 6, 8)])], "kwargs": {"causal": False}},
         state_from_reference=True, atol=1e-4),
    FileCase("checkpoints/summarizer.pt is a readable summarizer checkpoint", 2, "checkpoints/summarizer.pt",
             _checkpoint, part="1 model"),
    # ---- the notebooks' test cells: these checks decide their points
    Case("1(a) attention_weights: softmax(Q K^T / sqrt(D)) of a (10, 16) and a (4, 16) matrix", 1,
         f"{SUM}:attention_weights", lambda g: {"args": [3 * randn(g, 10, 16), 3 * randn(g, 4, 16)]},
         cells=("q1a_code",), preamble="import torch\n", nbgrader_cell="test_1a", atol=1e-5),
    Case("1(a) SUM_AXIS: the axis of A whose entries sum to 1", 1, f"{SUM}:SUM_AXIS", None, call=False,
         cells=("q1a_code",), preamble="import torch\n", nbgrader_cell="test_1a"),
    Case("1(c) shift_matrix(16, k=5)", 1, f"{SUM}:shift_matrix", lambda g: {"args": [16], "kwargs": {"k": 5}},
         cells=("q1c_code",), preamble="import torch\n", nbgrader_cell="test_1c", atol=1e-5),
    Case("1(f) samples: N_SAMPLES sampled summaries for each article", 2, f"{SUM}:samples", None, call=False,
         cells=("q1f_code",), preamble=FAKE_SUMMARIZE, compare=_samples, nbgrader_cell="test_1f"),
    FileCase("checkpoints/summarizer.pt: validation loss below the threshold", 3, "checkpoints/summarizer.pt",
             _checkpoint_quality, nbgrader_cell="test_checkpoint"),
    Case("3(a)i scaled_dot_product_attention: (4, 6, 16) queries, a query that may attend nothing", 1,
         f"{KA}:scaled_dot_product_attention",
         lambda g: {"args": [randn(g, 4, 6, 16), randn(g, 4, 9, 16), randn(g, 4, 9, 3)],
                    "kwargs": {"mask": _one_empty_row(6, 9), "return_weights": True}},
         nbgrader_cell="test_scaled_dot_product_attention", atol=1e-4),
    Case("3(a)i scaled_dot_product_attention: scores near 1000 (exp overflows unless the row maximum is subtracted)",
         1, f"{KA}:scaled_dot_product_attention",
         lambda g: {"args": [300 * randn(g, 4, 6, 16), randn(g, 4, 9, 16), randn(g, 4, 9, 3)]},
         nbgrader_cell="test_scaled_dot_product_attention", atol=1e-4),
    Case("3(a)ii RandomFourierFeatures in float64", 1, f"{KA}:RandomFourierFeatures",
         lambda g: {"init": {"args": [4, 32]}, "args": [0.7 * randn(g, 3, 4).double()]},
         state_from_reference=True, nbgrader_cell="test_random_fourier_features", atol=1e-8),
    Case("3(a)ii SoftmaxRandomFourierFeatures in float64", 1, f"{KA}:SoftmaxRandomFourierFeatures",
         lambda g: {"init": {"args": [4, 32]}, "args": [0.35 * randn(g, 3, 4).double()]},
         state_from_reference=True, nbgrader_cell="test_random_fourier_features", atol=1e-8),
    Case("3(a)iii FavorPositiveFeatures without orthogonal rows or stabiliser", 1, f"{KA}:FavorPositiveFeatures",
         lambda g: {"init": {"args": [16, 32], "kwargs": {"orthogonal": False, "stabilize": False}},
                    "args": [0.4 * randn(g, 10, 16)], "kwargs": {"is_query": True}},
         state_from_reference=True, nbgrader_cell="test_favor_positive_features", atol=1e-5),
    Case("3(a)iii FavorPositiveFeatures on large inputs (stabilised, finite)", 1, f"{KA}:FavorPositiveFeatures",
         lambda g: {"init": {"args": [16, 32]}, "args": [12 * randn(g, 10, 16)], "kwargs": {"is_query": False}},
         state_from_reference=True, nbgrader_cell="test_favor_positive_features", compare=_favor_up_to_constants),
    Case("3(a)iii linear_attention with positive features, 3-D inputs", 1, f"{KA}:linear_attention",
         lambda g: {"args": [randn(g, 4, 9, 6).exp(), randn(g, 4, 11, 6).exp(), randn(g, 4, 11, 5)]},
         nbgrader_cell="test_linear_attention", atol=1e-4),
    Case("3(a)iii linear_attention with a broadcast key padding mask", 1, f"{KA}:linear_attention",
         lambda g: {"args": list(_phi_inputs(g, 9, 11)), "kwargs": {"key_padding_mask": _padding(g, 2, 11)[:, None]}},
         nbgrader_cell="test_linear_attention", atol=1e-4),
    Case("3(b) causal_linear_attention_reference on 13 positions", 1, f"{KA}:causal_linear_attention_reference",
         lambda g: {"args": list(_phi_inputs(g, 13, 13))}, nbgrader_cell="test_causal_linear_attention", atol=1e-4),
    Case("3(b) causal_linear_attention (chunks of 4) equals eq. 6", 1, f"{KA}:causal_linear_attention",
         lambda g: {"args": list(_phi_inputs(g, 13, 13)), "kwargs": {"chunk_size": 4}},
         nbgrader_cell="test_causal_linear_attention", atol=1e-4),
]



def _part(case) -> str:
    """The part of homework/parts.py that a check belongs to: that of its notebook cell, else of its function."""
    cells = [case.nbgrader_cell, *getattr(case, "cells", ())]
    part = next((p for p in map(part_of_cell, cells) if p), None) or part_of_function(getattr(case, "attr", ""))
    if part is None:
        raise ValueError(f"check {case.name!r}: no part in homework/parts.py has its cell or function")
    return part.name


for _case in CASES:
    _case.part = _case.part or _part(_case)
