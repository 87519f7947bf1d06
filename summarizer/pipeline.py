"""From run settings to data and models: corpus -> tokenizer -> token ids, and the model the notebook trains."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tokenizers import Tokenizer

from kernel_attention import DEFAULT_N_RANDOM
from summarizer.batching import EncodedPairs, encode_pairs
from summarizer.checkpoint import load_checkpoint
from summarizer.data import load_corpus
from summarizer.model import MAX_SOURCE_LEN, MAX_TARGET_LEN, Summarizer, SummarizerConfig
from summarizer.settings import RunSettings
from summarizer.train import validation_loss


@dataclass
class PreparedCorpus:
    """Tokenizer, tokenised train / validation pairs, and the fixed random test subset scored with ROUGE."""

    tokenizer: Tokenizer
    train: EncodedPairs
    validation: EncodedPairs
    test: EncodedPairs
    test_articles: list[str]
    test_summaries: list[str]
    raw: object  # the DatasetDict


def prepare_corpus(run: RunSettings, seed: int = 0, max_source_len: int = MAX_SOURCE_LEN,
                   max_target_len: int = MAX_TARGET_LEN) -> PreparedCorpus:
    """Load the corpus (sizes from `run`), train or reuse the cached tokenizer on the train split, encode the splits.

    The test subset is `run.n_eval_test` pairs drawn with random.Random(seed) (all pairs if the split is smaller).
    """
    from summarizer.tokenizer import load_or_train_tokenizer

    corpus = load_corpus(max_examples={"train": run.max_train, "validation": run.max_validation, "test": None},
                         fast=False, seed=seed)
    train, val, test = corpus["train"], corpus["validation"], corpus["test"]
    tok = load_or_train_tokenizer(list(train["article"]) + list(train["summary"]), run.vocab_size)
    keep = sorted(random.Random(seed).sample(range(len(test)), min(run.n_eval_test, len(test))))
    test = test.select(keep)

    def enc(split):
        return encode_pairs(tok, list(split["article"]), list(split["summary"]), max_source_len, max_target_len)

    return PreparedCorpus(tok, enc(train), enc(val), enc(test), list(test["article"]), list(test["summary"]), corpus)


# Question 1(e): the validation pairs whose masks the notebook draws. Most descriptions fill all MAX_SOURCE_LEN article
# tokens (a batch of them has no source padding at all); these four are shorter, of different lengths, and so are
# their synopses, so the batch is padded on both sides in the full and in the fast run (their tokenizers differ).
# The first is the shortest: the pictures show it. tests/test_summarization_notebook.py checks the lengths in both.
MASK_EXAMPLE_PACKAGES = ("libcangjie2", "bdfresize", "python3-pyao", "file")


def mask_example(corpus: PreparedCorpus, packages: tuple[str, ...] = MASK_EXAMPLE_PACKAGES) -> EncodedPairs:
    """The encoded validation pairs of these Debian packages, in this order (the 1(e) batch)."""
    names = list(corpus.raw["validation"]["package"])
    missing = [p for p in packages if p not in names]
    if missing:
        raise ValueError(f"packages {missing} are not in this run's validation pairs")
    return corpus.validation.subset([names.index(p) for p in packages])


def build_model(run: RunSettings, vocab_size: int, attention: str = "softmax", n_random: int = DEFAULT_N_RANDOM,
                **overrides) -> Summarizer:
    """The notebook's summarizer for these run settings (overrides: any SummarizerConfig field)."""
    cfg = dict(vocab_size=vocab_size, d_model=run.d_model, n_heads=4, n_encoder_layers=run.n_layers,
               n_decoder_layers=run.n_layers, d_ff=run.d_ff, dropout=run.dropout, attention=attention,
               n_random=n_random, max_source_len=MAX_SOURCE_LEN, max_target_len=MAX_TARGET_LEN)
    cfg.update(overrides)
    return Summarizer(SummarizerConfig(**cfg))


def checkpoint_validation_loss(path, run: RunSettings, seed: int = 0) -> float:
    """Load a saved summarizer and recompute its validation loss (NLL per summary token) with its own tokenizer.

    The autograder's check of a submitted checkpoints/summarizer.pt: nothing is trusted from the file but weights,
    config and tokenizer. Raises FileNotFoundError / ValueError for a missing / corrupt / incompatible file.
    """
    model, tok, _ = load_checkpoint(path)
    val = load_corpus(max_examples={"train": 1, "validation": run.max_validation, "test": 1}, fast=False,
                      seed=seed)["validation"]
    pairs = encode_pairs(tok, list(val["article"]), list(val["summary"]), model.cfg.max_source_len,
                         model.cfg.max_target_len)
    return validation_loss(model, pairs)
