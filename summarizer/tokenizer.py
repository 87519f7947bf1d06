"""Byte-level BPE subword tokenizer trained with Hugging Face `tokenizers` on the training split, cached in build/."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, BOS, EOS)  # ids 0, 1, 2
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
DEFAULT_CACHE_DIR = Path("build/tokenizer")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8000, lowercase: bool = True) -> Tokenizer:
    """Train a byte-level BPE tokenizer on `texts` with ids 0, 1, 2 reserved for <pad>, <bos>, <eos>.

    Byte-level BPE never produces an unknown token, so every source token id is a valid target id (the copy
    mechanism relies on that). Lowercasing halves the vocabulary a small model must learn; ROUGE ignores case.
    """
    if vocab_size < 300:
        raise ValueError(f"vocab_size={vocab_size} is too small: byte-level BPE needs 256 byte tokens + specials")
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else []))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [PAD_ID, BOS_ID, EOS_ID]
    return tok


def load_or_train_tokenizer(
    texts: Sequence[str], vocab_size: int = 8000, lowercase: bool = True, cache_dir: str | Path = DEFAULT_CACHE_DIR
) -> Tokenizer:
    """Return the tokenizer for these training texts, reading it from `cache_dir` when it was trained before.

    The cache key hashes the texts, the vocabulary size and the lowercasing flag, so a changed corpus retrains.
    """
    digest = hashlib.sha1(f"{vocab_size}|{lowercase}|".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace"))
        digest.update(b"\0")
    path = Path(cache_dir) / f"bpe_{vocab_size}_{digest.hexdigest()[:16]}.json"
    if path.exists():
        return Tokenizer.from_file(str(path))
    tok = train_tokenizer(texts, vocab_size, lowercase)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tok.save(str(tmp))
    os.replace(tmp, path)                     # processes training the same tokenizer at once never read half a file
    return tok


def encode(tok: Tokenizer, texts: Sequence[str], max_len: int, add_bos_eos: bool = False) -> list[list[int]]:
    """Token ids of each text, cut to `max_len` ids (counting <bos>/<eos> when `add_bos_eos`)."""
    ids = [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]
    if not add_bos_eos:
        return [x[:max_len] for x in ids]
    return [[BOS_ID] + x[: max_len - 2] + [EOS_ID] for x in ids]


def decode(tok: Tokenizer, ids: Sequence[int]) -> str:
    """Text of a token id sequence, stopping at the first <eos> and dropping <bos>/<pad>."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            out.append(i)
    return tok.decode(out).strip()


def token_labels(tok: Tokenizer, ids: Sequence[int]) -> list[str]:
    """Readable token strings for plot axes: byte-level BPE's word-start marker 'Ġ' shown as '_'."""
    return [tok.id_to_token(int(i)).replace("Ġ", "_") for i in ids]
