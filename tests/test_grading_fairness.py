"""The trusted checks are fair to correct work and strict on what the questions are about (issue #33, section 6).

FAVOR+'s stabilising constants cancel in attention, so the stabilised FavorPositiveFeatures checks accept any positive
factor per query row and per key sequence (the Performer authors' per-batch maximum, performer-pytorch's per-sequence
one) and nothing else; linear attention through the N x N matrix and causal linear attention with every S_i at once
are right on small inputs but lose the complexity checks, whose sizes do not fit in the sandbox's memory.

Each variant is the instructor's kernel_attention.py with one function replaced (appended code), graded by the real
harness (sandboxed child, comparison in the parent) with only the checks concerned: one harness run per variant.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

from grading import sandbox  # noqa: E402
from grading.course import load_course  # noqa: E402
from grading.harness import load_cases, run_course  # noqa: E402

COURSE = load_course(REPO / "grading" / "course.toml")
CASES = {c.name: c for c in load_cases(REPO / "grading" / "cases_hw8.py")}

QUERIES, KEYS = "FavorPositiveFeatures.forward (queries)", "FavorPositiveFeatures.forward (keys)"
LARGE = "3(a)iii FavorPositiveFeatures on large inputs (stabilised, finite)"
EXACT = "3(a)iii FavorPositiveFeatures without orthogonal rows or stabiliser"
PERFORMER = "PerformerAttention with your FavorPositiveFeatures and linear_attention"
FAVOR = (QUERIES, KEYS, LARGE, EXACT, PERFORMER)
LINEAR = ("linear_attention (eq. 2) with a key padding mask",
          "3(a)iii linear_attention with positive features, 3-D inputs",
          "3(a)iii linear_attention with a broadcast key padding mask")
LINEAR_LONG = "linear_attention (eq. 2) on 65536 queries and keys, without an N x N matrix"
CAUSAL = ("causal_linear_attention_reference (eq. 6, S_i and Z_i)",
          "3(b) causal_linear_attention_reference on 13 positions",
          "3(b) causal_linear_attention (chunks of 4) equals eq. 6")
CAUSAL_LONG = "causal_linear_attention on 4096 positions with F = M = 384, without all S_i at once"

FAVOR_PARTS = '''
_exact_forward = FavorPositiveFeatures.forward


def _favor_parts(self, x):
    x = x * self.d ** -0.25
    return x @ self.omega.to(x.dtype).T, x.pow(2).sum(dim=-1, keepdim=True) / 2      # w_i . x', ||x'||^2 / 2
'''
VARIANTS = {
    # The Performer authors' code: queries subtract their row's max_i w_i . x', keys the max of w_i . x' over the
    # whole batch (every sequence and head); the -||x'||^2 / 2 term stays in both.
    "per_batch": FAVOR_PARTS + '''

def _forward(self, x, is_query=False):
    if not self.stabilize:
        return _exact_forward(self, x, is_query)
    projection, half_norm = _favor_parts(self, x)
    top = projection.amax(dim=-1, keepdim=True) if is_query else projection.max()
    return torch.exp(projection - half_norm - top) / math.sqrt(self.n_random)


FavorPositiveFeatures.forward = _forward
''',
    # performer-pytorch: the same, with the keys' maximum of w_i . x' taken per sequence (over positions and features).
    "per_sequence": FAVOR_PARTS + '''

def _forward(self, x, is_query=False):
    if not self.stabilize:
        return _exact_forward(self, x, is_query)
    projection, half_norm = _favor_parts(self, x)
    top = projection.amax(dim=-1, keepdim=True) if is_query else projection.amax(dim=(-2, -1), keepdim=True)
    return torch.exp(projection - half_norm - top) / math.sqrt(self.n_random)


FavorPositiveFeatures.forward = _forward
''',
    # Wrong: -||x'||^2 / 2 forgotten (for queries a per-row factor, which cancels; for keys it does not).
    "no_norm_term": FAVOR_PARTS + '''

def _forward(self, x, is_query=False):
    projection, _ = _favor_parts(self, x)
    return torch.exp(projection - projection.amax(dim=-1, keepdim=True)) / math.sqrt(self.n_random)


FavorPositiveFeatures.forward = _forward
''',
    # Wrong: a negative factor for queries, a zero factor for keys.
    "bad_factor": FAVOR_PARTS + '''

def _forward(self, x, is_query=False):
    return (-1.0 if is_query else 0.0) * _exact_forward(self, x, is_query)


FavorPositiveFeatures.forward = _forward
''',
    # Right on small inputs, but through the N x N matrix and with every S_i at once (an (N, F, M) tensor).
    "quadratic_memory": '''

def linear_attention(phi_q, phi_k, v, key_padding_mask=None, eps=1e-6):
    _check_kernel_inputs(phi_q, phi_k, v)
    phi_k, v = _drop_padded_keys(phi_k, v, key_padding_mask)
    scores = phi_q @ phi_k.transpose(-2, -1)                                  # (..., N_q, N_k)
    return _divide_or_zero(scores @ v, scores.sum(dim=-1, keepdim=True) + eps)


def causal_linear_attention(phi_q, phi_k, v, chunk_size=64, eps=1e-6, key_padding_mask=None):
    _check_causal_inputs(phi_q, phi_k, v)
    phi_k, v = _drop_padded_keys(phi_k, v, key_padding_mask)
    s = (phi_k[..., :, None] * v[..., None, :]).cumsum(dim=-3)                # (..., N, F, M): every S_i
    z = phi_k.cumsum(dim=-2)                                                  # (..., N, F): every Z_i
    numerator = (phi_q[..., None, :] @ s).squeeze(-2)
    return _divide_or_zero(numerator, (phi_q * z).sum(dim=-1, keepdim=True) + eps)
''',
}
CHECKS = {"instructor": (*FAVOR, *LINEAR, LINEAR_LONG, *CAUSAL, CAUSAL_LONG), "per_batch": FAVOR,
          "per_sequence": FAVOR, "no_norm_term": FAVOR, "bad_factor": FAVOR,
          "quadratic_memory": (*LINEAR, LINEAR_LONG, CAUSAL[2], CAUSAL_LONG)}
UIDS = {name: sandbox.SANDBOX_UID + 320 + i for i, name in enumerate(CHECKS)}   # no other test uses these


@pytest.fixture(scope="module")
def graded():
    """variant -> {check name: TestResult}: each variant graded once, when a test first asks for it."""
    folder = Path(tempfile.mkdtemp(prefix="hw8-fairness-tests-"))
    done: dict[str, dict] = {}

    def grade(variant: str) -> dict:
        if variant not in done:
            submission = folder / variant
            submission.mkdir()
            source = (REPO / "kernel_attention.py").read_text() + VARIANTS.get(variant, "")
            (submission / "kernel_attention.py").write_text(source)
            results = run_course(COURSE, submission, hide=[REPO], uid=UIDS[variant],
                                 cases=[CASES[name] for name in CHECKS[variant]])
            done[variant] = {r.name: r for r in results}
        return done[variant]

    yield grade
    shutil.rmtree(folder, ignore_errors=True)


def _lost(results: dict) -> set[str]:
    return {name for name, r in results.items() if r.score < r.max_score}


def test_the_instructor_module_passes_every_check_concerned(graded):
    results = graded("instructor")
    assert _lost(results) == set(), {n: r.output for n, r in results.items() if r.score < r.max_score}
    assert results[LINEAR_LONG].max_score == results[CAUSAL_LONG].max_score == 1
    assert CASES[LINEAR_LONG].hint and CASES[CAUSAL_LONG].hint


@pytest.mark.parametrize("variant", ["per_batch", "per_sequence"])
def test_other_stabilising_constants_get_the_feature_points(graded, variant):
    """Their constants cancel; on the large inputs the maximum of w . x' alone leaves -||x'||^2 / 2 (about 290) in
    every key's exponent, so every key feature underflows to 0: that check, about exactly this, is lost."""
    results = graded(variant)
    assert _lost(results) == {LARGE}, {n: r.output for n, r in results.items()}
    assert "every feature of the key sequence is 0" in results[LARGE].output


def test_wrong_features_lose_the_feature_points(graded):
    results = graded("no_norm_term")
    assert _lost(results) == {KEYS, LARGE, EXACT, PERFORMER}          # for queries the term is a per-row factor
    assert "divided by their maximum per key sequence" in results[KEYS].output
    results = graded("bad_factor")
    assert _lost(results) == set(FAVOR)
    assert "negative factor" in results[QUERIES].output and "zero factor" in results[KEYS].output


def test_linear_attention_through_the_n_by_n_matrix_loses_only_the_complexity_point(graded):
    results = graded("quadratic_memory")
    assert _lost(results) & {*LINEAR, LINEAR_LONG} == {LINEAR_LONG}
    output = results[LINEAR_LONG].output
    assert "can't allocate memory" in output and "N x N matrix" in output     # the hint says what it exercises


def test_causal_linear_attention_with_every_s_i_at_once_loses_only_the_complexity_point(graded):
    results = graded("quadratic_memory")
    assert _lost(results) & {CAUSAL[2], CAUSAL_LONG} == {CAUSAL_LONG}
    output = results[CAUSAL_LONG].output
    assert "can't allocate memory" in output and "(N, F, M) tensor" in output


def test_feature_messages_never_show_expected_values():
    compare = CASES[KEYS].compare
    expected = torch.linspace(0.123456, 0.987654, 24).reshape(2, 3, 4)
    request = {"kwargs": {"is_query": False}}
    for got in (torch.zeros(2, 3, 4), torch.full((2, 3, 4), float("nan")), -expected, torch.ones(3, 4), [1.0],
                torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(0))):
        message = compare(got, expected, request)
        assert message and "0.123" not in message and "0.987" not in message, message
    scale = torch.tensor([7.0, 1e-3])[:, None, None]
    assert compare(scale * expected, expected, request) is None                   # a positive factor per sequence
    assert compare(scale * expected, expected, {"kwargs": {"is_query": True}}) is None
    assert compare(expected * torch.arange(1.0, 5.0), expected, request) is not None  # a factor per feature
    assert {CASES[name].compare for name in (QUERIES, KEYS, LARGE)} == {compare} and CASES[EXACT].compare is None
