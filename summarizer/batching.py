"""Tokenised (article, summary) pairs and padded mini-batches for teacher-forced training."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer
from torch import Tensor

from summarizer.tokenizer import PAD_ID, encode

SOURCE_LENGTH_STEP = 8  # article-length granularity of the batch bucketing


@dataclass
class EncodedPairs:
    """Token ids of articles (cut to max_source_len) and summaries (<bos> ... <eos>, cut to max_target_len)."""

    src: list[list[int]]
    tgt: list[list[int]]

    def __len__(self) -> int:
        return len(self.src)

    def subset(self, indices: Sequence[int]) -> EncodedPairs:
        return EncodedPairs([self.src[i] for i in indices], [self.tgt[i] for i in indices])


def encode_pairs(tok: Tokenizer, articles: Sequence[str], summaries: Sequence[str], max_source_len: int,
                 max_target_len: int) -> EncodedPairs:
    """Tokenise parallel lists of articles and summaries."""
    if len(articles) != len(summaries):
        raise ValueError(f"{len(articles)} articles but {len(summaries)} summaries")
    return EncodedPairs(encode(tok, articles, max_source_len), encode(tok, summaries, max_target_len, True))


def pad(seqs: Sequence[Sequence[int]], device=None) -> Tensor:
    """Right-pad id lists with <pad> (id 0): list of B sequences -> (B, max length) long tensor."""
    width = max(1, max(len(s) for s in seqs))
    out = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out.to(device)


def collate(pairs: EncodedPairs, device=None) -> tuple[Tensor, Tensor, Tensor]:
    """Batch -> src (B, S), tgt_in (B, T) = summary without its last id, tgt_out (B, T) = summary shifted by one."""
    src = pad(pairs.src, device)
    tgt = pad(pairs.tgt, device)
    return src, tgt[:, :-1], tgt[:, 1:]


def iterate_batches(pairs: EncodedPairs, batch_size: int, seed: int = 0, device=None,
                    bucket: int = 50) -> Iterator[tuple[Tensor, ...]]:
    """Endless shuffled epochs of collated batches (the same seed gives the same order).

    Length bucketing: each run of `bucket` * batch_size shuffled pairs is sorted by article length (in steps of
    SOURCE_LENGTH_STEP tokens), then by summary length, and cut into batches, whose order is shuffled again: a batch
    pads its articles and its summaries to similar lengths (less wasted compute; half the articles fill all 64 tokens).
    """
    if len(pairs) == 0:
        raise ValueError("no training pairs")
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(pairs), generator=g).tolist()
        batches = []
        for start in range(0, len(order), bucket * batch_size):
            chunk = sorted(order[start : start + bucket * batch_size],
                           key=lambda i: (len(pairs.src[i]) // SOURCE_LENGTH_STEP, len(pairs.tgt[i])))
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        for b in torch.randperm(len(batches), generator=g).tolist():
            yield collate(pairs.subset(batches[b]), device)


def sequential_batches(pairs: EncodedPairs, batch_size: int, device=None) -> Iterator[tuple[Tensor, ...]]:
    """One pass over the pairs in order (evaluation)."""
    for start in range(0, len(pairs), batch_size):
        yield collate(pairs.subset(range(start, min(start + batch_size, len(pairs)))), device)
