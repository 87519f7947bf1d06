"""From run settings to data and models: corpus -> tokenizer -> token ids, and the model the notebook trains."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from kernel_attention import DEFAULT_N_RANDOM
from summarizer.batching import EncodedPairs, encode_pairs
from summarizer.checkpoint import read_checkpoint
from summarizer.data import CORPUS, load_corpus
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


# Question 1(e): the validation pairs whose masks the notebook draws (why these: data/corpus.json).
MASK_EXAMPLE_PACKAGES = tuple(CORPUS["mask_example"])


def mask_example(corpus: PreparedCorpus, packages: tuple[str, ...] = MASK_EXAMPLE_PACKAGES) -> EncodedPairs:
    """The encoded validation pairs of these ids (data/corpus.json's id_column), in this order (the 1(e) batch)."""
    names = list(corpus.raw["validation"][CORPUS["id_column"]])
    missing = [p for p in packages if p not in names]
    if missing:
        raise ValueError(f"{CORPUS['id_column']} {missing} are not in this run's validation pairs")
    return corpus.validation.subset([names.index(p) for p in packages])


def build_model(run: RunSettings, vocab_size: int, attention: str = "softmax", n_random: int = DEFAULT_N_RANDOM,
                **overrides) -> Summarizer:
    """The notebook's summarizer for these run settings (overrides: any SummarizerConfig field)."""
    cfg = dict(vocab_size=vocab_size, d_model=run.d_model, n_heads=4, n_encoder_layers=run.n_layers,
               n_decoder_layers=run.n_layers, d_ff=run.d_ff, dropout=run.dropout, attention=attention,
               n_random=n_random, max_source_len=MAX_SOURCE_LEN, max_target_len=MAX_TARGET_LEN)
    cfg.update(overrides)
    return Summarizer(SummarizerConfig(**cfg))


def course_tokenizer(run: RunSettings, seed: int = 0) -> Tokenizer:
    """The tokenizer `prepare_corpus(run)` trains (cached next to this package, in build/tokenizer)."""
    from summarizer.tokenizer import load_or_train_tokenizer

    train = load_corpus(max_examples={"train": run.max_train, "validation": 1, "test": 1}, fast=False,
                        seed=seed)["train"]
    return load_or_train_tokenizer(list(train["article"]) + list(train["summary"]), run.vocab_size,
                                   cache_dir=Path(__file__).resolve().parents[1] / "build" / "tokenizer")


def checkpoint_validation_loss(path, run: RunSettings, seed: int = 0) -> float:
    """Recompute a saved summarizer's validation loss (NLL per summary token) under the course's own settings.

    The autograder's check of a submitted checkpoints/summarizer.pt: only its weights and the network's shape are
    taken from the file. The text is encoded with the course's tokenizer (`course_tokenizer(run)`; the checkpoint's
    must have the same vocabulary and merges, and it is compared as JSON, never parsed by the tokenizers library),
    articles cut to MAX_SOURCE_LEN and summaries to MAX_TARGET_LEN tokens, whatever the checkpoint's config says, so
    no config or tokenizer can make the task easier. Raises FileNotFoundError / ValueError for a missing / corrupt /
    incompatible file.
    """
    payload = read_checkpoint(path)
    tok = course_tokenizer(run, seed)
    problem = tokenizer_difference(payload["tokenizer"], tok)
    if problem:
        raise ValueError(f"{Path(path).name}: its tokenizer is not the course's ({problem}); train it with "
                         "Summarization.ipynb's cells (prepare_corpus), which use the course's")
    cfg = SummarizerConfig.from_dict(payload["config"])
    if cfg.vocab_size != tok.get_vocab_size() or cfg.max_source_len < MAX_SOURCE_LEN \
            or cfg.max_target_len < MAX_TARGET_LEN:
        raise ValueError(f"{Path(path).name}: the config must have vocab_size={tok.get_vocab_size()}, max_source_len "
                         f">= {MAX_SOURCE_LEN} and max_target_len >= {MAX_TARGET_LEN} (it has {cfg.vocab_size}, "
                         f"{cfg.max_source_len}, {cfg.max_target_len})")
    model = Summarizer(cfg)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{Path(path).name}: weights do not match the config ({str(e)[:300]})") from e
    val = load_corpus(max_examples={"train": 1, "validation": run.max_validation, "test": 1}, fast=False,
                      seed=seed)["validation"]
    pairs = encode_pairs(tok, list(val["article"]), list(val["summary"]), MAX_SOURCE_LEN, MAX_TARGET_LEN)
    return validation_loss(model.eval(), pairs)


def tokenizer_difference(stored: str, tok: Tokenizer) -> str | None:
    """None if the tokenizer JSON `stored` has `tok`'s vocabulary and merges (merges as "a b" or ["a", "b"], as the
    tokenizers versions write them), else what differs."""
    import json

    def vocab_and_merges(text: str):
        model = json.loads(text).get("model") if text.startswith("{") else None
        if not isinstance(model, dict) or not isinstance(model.get("vocab"), dict) \
                or not isinstance(model.get("merges"), list):
            return None
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) if isinstance(m, list) else m
                  for m in model["merges"]]
        return model["vocab"], merges

    try:
        theirs = vocab_and_merges(stored) if isinstance(stored, str) else None
    except (ValueError, RecursionError):
        theirs = None
    if theirs is None:
        return "not a BPE tokenizer's JSON"
    ours = vocab_and_merges(tok.to_str())
    if theirs[0] != ours[0]:
        return f"another vocabulary: {len(theirs[0])} tokens, the course's has {len(ours[0])}"
    if theirs[1] != ours[1]:
        return "other merges"
    return None
