"""The summarizer's training-speed pieces behave like what they replace: FastDropout like nn.Dropout (checked
statistically and exactly on its own mask), the length-bucketed batches cover every pair once per epoch."""

import math

import pytest
import torch

from summarizer.batching import EncodedPairs, iterate_batches
from summarizer.dropout import FastDropout, keep_mask
from summarizer.tokenizer import PAD_ID


def binomial_tolerance(n: int, p: float, sigmas: float = 6.0) -> float:
    return sigmas * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 1 / 3])
def test_keep_mask_keeps_each_element_with_probability_1_minus_p(p):
    """Every one of the four 16-bit slices of a draw (positions i mod 4) keeps 1 - p of its elements, and
    neighbours are independent (a slice reused or a biased top slice would show here)."""
    torch.manual_seed(0)
    n = 4 * 250_000
    keep = keep_mask((n,), p).float()
    for lane in range(4):
        assert keep[lane::4].mean().item() == pytest.approx(1 - p, abs=binomial_tolerance(n // 4, p))
    both = (keep[:-1] * keep[1:]).mean().item()  # P(keep_i and keep_i+1) = (1 - p)^2 if independent
    assert both == pytest.approx((1 - p) ** 2, abs=binomial_tolerance(n, (1 - p) ** 2))


def test_keep_mask_shapes_and_rounding():
    torch.manual_seed(0)
    for shape in [(), (0,), (3,), (5, 7), (2, 3, 5)]:  # numel not a multiple of 4 too
        mask = keep_mask(shape, 0.25)
        assert mask.shape == shape and mask.dtype == torch.bool
    assert keep_mask((10_000,), 0.0).all()
    assert keep_mask((100_000,), 1 - 2**-20).float().mean().item() == pytest.approx(2**-16, abs=1e-4)  # no wrap
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="dropout probability"):
            keep_mask((3,), bad)


def test_fast_dropout_output_and_gradient_follow_its_mask():
    """out = x * keep / (1 - p) with one mask; the gradient is that same keep / (1 - p); the mean is kept."""
    torch.manual_seed(1)
    p = 0.1
    x = (torch.rand(64, 33, 129) + 0.5).requires_grad_()  # > 0: a dropped entry is exactly 0, a kept one x / (1 - p)
    drop = FastDropout(p).train()
    out = drop(x)
    keep = out != 0
    torch.testing.assert_close(out, torch.where(keep, x / (1 - p), torch.zeros_like(x)), rtol=1e-6, atol=0)
    out.sum().backward()
    torch.testing.assert_close(x.grad, keep.float() / (1 - p), rtol=1e-6, atol=0)
    assert keep.float().mean().item() == pytest.approx(1 - p, abs=binomial_tolerance(x.numel(), p))
    assert out.mean().item() == pytest.approx(x.mean().item(), rel=1e-2)


def test_fast_dropout_matches_nn_dropout_statistics_and_modes():
    torch.manual_seed(2)
    x = torch.randn(200, 500)
    ours, theirs = FastDropout(0.3).train()(x), torch.nn.Dropout(0.3).train()(x)
    for out in (ours, theirs):
        assert (out == 0).float().mean().item() == pytest.approx(0.3, abs=binomial_tolerance(x.numel(), 0.3))
    assert ours.var().item() == pytest.approx(theirs.var().item(), rel=0.05)
    assert FastDropout(0.3).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="dropout probability"):
            FastDropout(bad)


def test_fast_dropout_is_seeded():
    x = torch.randn(1000)
    drop = FastDropout(0.5).train()
    torch.manual_seed(3)
    first, second = drop(x), drop(x)
    torch.manual_seed(3)
    assert torch.equal(drop(x), first) and not torch.equal(first, second)


def test_bucketed_batches_cover_every_pair_once_per_epoch_with_less_padding():
    """One epoch = every pair exactly once; sorting by article length bucket then summary length pads fewer source
    and summary tokens than the same batches drawn without sorting."""
    g = torch.Generator().manual_seed(0)
    n, batch_size = 640, 16
    src = [list(range(1, 1 + int(length))) for length in torch.randint(5, 65, (n,), generator=g)]
    tgt = [[1] + [i + 3] * int(length) for i, length in enumerate(torch.randint(2, 20, (n,), generator=g))]
    pairs = EncodedPairs(src, tgt)
    batches = iterate_batches(pairs, batch_size, seed=0, bucket=10)
    seen, padded = [], 0
    for _ in range(n // batch_size):
        s, tgt_in, tgt_out = next(batches)
        seen += [int(row[1]) - 3 for row in tgt_in]  # the summary's token identifies its pair
        padded += int((s == PAD_ID).sum()) + int((tgt_out == PAD_ID).sum())
    assert sorted(seen) == list(range(n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1)).tolist()
    unsorted = 0
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        unsorted += sum(max(len(src[i]) for i in rows) - len(src[i]) for i in rows)
        unsorted += sum(max(len(tgt[i]) for i in rows) - len(tgt[i]) for i in rows)
    assert padded < 0.5 * unsorted


def test_dropout_sits_on_embeddings_and_residual_branches_only():
    """In training, a layer's FFN is deterministic (no dropout on its d_ff-wide hidden activations, the costliest
    site) while the layer output and the embeddings are dropped."""
    from summarizer.model import EncoderLayer, SummarizerConfig

    torch.manual_seed(0)
    layer = EncoderLayer(SummarizerConfig(vocab_size=10, d_model=16, n_heads=2, d_ff=64, dropout=0.5)).train()
    h = torch.randn(3, 5, 16)
    torch.testing.assert_close(layer.ff(h), layer.ff(h))
    mask = torch.ones(3, 5, dtype=torch.bool)
    assert not torch.allclose(layer(h, mask)[0], layer(h, mask)[0])
