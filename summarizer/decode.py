"""Decoding: greedy, sampling (temperature / top-k / top-p: one sampled summary per article), beam search.

The encoder memory is computed once per article; the decoder keeps the model's incremental-decoding cache
(`Summarizer.empty_cache`) so each step computes only the newest position (`use_cache=False` re-runs the decoder on
the whole prefix: the plain reference path the tests compare against).
Shapes: B articles, S source length, K beams per article, N decoded rows (B, or B * K in beam search: article b owns
rows b*K to b*K + K - 1), t ids generated so far (with the leading <bos>), T returned length, V vocabulary,
d_enc / d_dec widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tokenizers import Tokenizer
from torch import Tensor

from summarizer.batching import pad
from summarizer.model import DecoderCache, Summarizer
from summarizer.tokenizer import BOS_ID, EOS_ID, PAD_ID, decode, encode


class _Decoder:
    """Decoding state for N = B * repeats rows: encoder memory (computed once), generated ids, the model's cache.

    src (B, S) -> memory (N, S, d_enc), src_mask (N, S), src (N, S), ids (N, t) starting as <bos> (N, 1).
    """

    def __init__(self, model: Summarizer, src: Tensor, repeats: int, use_cache: bool):
        self.model = model
        memory, src_mask = model.encode(src)  # (B, S, d_enc), (B, S)
        self.memory = memory.repeat_interleave(repeats, 0)  # (N, S, d_enc)
        self.src_mask = src_mask.repeat_interleave(repeats, 0)  # (N, S)
        self.src = src.repeat_interleave(repeats, 0)  # (N, S)
        n = self.src.shape[0]
        self.ids = torch.full((n, 1), BOS_ID, dtype=torch.long, device=src.device)  # (N, t=1)
        self.cache: DecoderCache | None = model.empty_cache(n) if use_cache else None

    def next_log_probs(self) -> Tensor:
        """log p(next token | prefix) for every row: ids (N, t) -> (N, V); <pad> and <bos> are never generated."""
        h, _, _ = self.model.decode_hidden(self.ids, self.memory, self.src_mask, cache=self.cache)  # (N, t or 1, d_dec)
        logp = self.model.output_log_probs(h[:, -1:], self.memory, self.src, self.src_mask)[:, 0]  # (N, V)
        logp[:, PAD_ID] = float("-inf")
        logp[:, BOS_ID] = float("-inf")
        return logp

    def append(self, tokens: Tensor, rows: Tensor | None = None) -> None:
        """Keep rows `rows` (N,) in that order (beam search: each new beam's parent row), then append tokens (N,):
        ids (N, t) -> (N, t + 1)."""
        if rows is not None:
            self.ids = self.ids[rows]  # (N, t)
            if self.cache is not None:
                self.cache.reorder(rows)
        self.ids = torch.cat([self.ids, tokens[:, None]], dim=1)  # (N, t + 1)


def block_repeated_ngrams(logp: Tensor, ids: Tensor, n: int) -> Tensor:
    """Ban (-inf) each next token that would repeat an n-gram already in the row (in place; logp (N, V), ids (N, t))."""
    if n <= 0 or ids.shape[1] < n:
        return logp
    rows = ids.tolist()
    for r, seq in enumerate(rows):
        prefix = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
        banned = [seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == prefix]
        if banned:
            logp[r, banned] = float("-inf")
    return logp


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Keep the top_k largest logits and the smallest set whose probability reaches top_p; others -> -inf. (N, V)."""
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum - sorted_logits.softmax(-1) >= top_p  # drop tokens once the mass before them reaches top_p
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits


@torch.no_grad()
def generate(model: Summarizer, src: Tensor, *, max_len: int | None = None, sample: bool = False,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, no_repeat_ngram_size: int = 0,
             use_cache: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """Greedy (sample=False) or sampled (sample=True) continuation of each article: src (B, S) -> ids (B, T) without
    <bos>.

    Sampling draws each next token from the model's distribution divided by `temperature` (< 1 sharper, > 1 flatter)
    and cut to the top_k tokens / the top_p nucleus (filter_logits), with `generator`'s random numbers.
    After <eos> a row emits <pad>.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    model.eval()
    state = _Decoder(model, src, 1, use_cache)  # N = B rows
    return _extend(state, max_len or model.cfg.max_target_len, sample, temperature, top_k, top_p,
                   no_repeat_ngram_size, generator)


def _extend(state: _Decoder, max_len: int, sample: bool, temperature: float, top_k: int, top_p: float,
            no_repeat_ngram_size: int, generator: torch.Generator | None) -> Tensor:
    """Decode every row of `state` until all have emitted <eos> or max_len ids: ids (N, 1) -> (N, T) without <bos>."""
    done = torch.zeros(state.ids.shape[0], dtype=torch.bool, device=state.ids.device)  # (N,)
    for _ in range(max_len - 1):
        logp = block_repeated_ngrams(state.next_log_probs(), state.ids, no_repeat_ngram_size)  # (N, V)
        if sample:
            probs = filter_logits(logp / temperature, top_k, top_p).softmax(-1)  # (N, V)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (N,)
        else:
            token = logp.argmax(-1)  # (N,)
        token = token.masked_fill(done, PAD_ID)
        state.append(token)  # ids (N, t + 1)
        done |= token == EOS_ID
        if done.all():
            break
    return state.ids[:, 1:]  # (N, T)


# === BEGIN INSTRUCTOR ONLY ===
@torch.no_grad()
def generate_samples(model: Summarizer, src: Tensor, num_samples: int, *, max_len: int | None = None,
                     temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, no_repeat_ngram_size: int = 0,
                     use_cache: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """num_samples sampled continuations of each article from one batched call, the encoder run once per article
    (question 1(f)'s worked answer without re-encoding): src (B, S) -> ids (B * num_samples, T) without <bos>.

    The memory of article b is repeated num_samples times (repeat_interleave in _Decoder): rows b * num_samples ...
    (b + 1) * num_samples - 1 belong to article b, each row draws its own tokens and stops at its own <eos>.
    """
    if num_samples < 1 or temperature <= 0:
        raise ValueError(f"num_samples={num_samples} must be >= 1 and temperature={temperature} > 0")
    model.eval()
    state = _Decoder(model, src, num_samples, use_cache)  # N = B * num_samples rows
    return _extend(state, max_len or model.cfg.max_target_len, True, temperature, top_k, top_p,
                   no_repeat_ngram_size, generator)
# === END INSTRUCTOR ONLY ===


@torch.no_grad()
def beam_search(model: Summarizer, src: Tensor, *, beam_size: int = 4, max_len: int | None = None,
                length_penalty: float = 1.0, no_repeat_ngram_size: int = 3, min_len: int = 0,
                use_cache: bool = True) -> list[list[int]]:
    """Beam search for each article: src (B, S) -> per article the best hypothesis's ids (without <bos>/<eos>)."""
    hypotheses = _beam_hypotheses(model, src, beam_size=beam_size, max_len=max_len, length_penalty=length_penalty,
                                  no_repeat_ngram_size=no_repeat_ngram_size, min_len=min_len, use_cache=use_cache)
    return [found[0][1] if found else [] for found in hypotheses]


def _beam_hypotheses(model: Summarizer, src: Tensor, *, beam_size: int, max_len: int | None, length_penalty: float,
                     no_repeat_ngram_size: int, min_len: int, use_cache: bool) -> list[list[tuple[float, list[int]]]]:
    """The finished hypotheses of each article's beam search, best first: per article (score, ids) pairs.

    Hypothesis score = sum of log-probs / length ** length_penalty; <eos> is banned before `min_len` tokens. An article
    stops once it has beam_size finished hypotheses; at max_len the live beams count as finished.
    State: K = beam_size live beams per article in N = B * K rows (row b * K + j: beam j of article b), their ids
    (N, t) and summed log-probs `scores` (B, K); a dead beam has score -inf. Each step scores the K * V extensions
    of every article, keeps the best K that do not end (those ending in <eos> join `finished`) and reorders the rows
    (ids and cache) to the kept beams' parents.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size={beam_size} must be >= 1")
    model.eval()
    b, k = src.shape[0], beam_size
    max_len = max_len or model.cfg.max_target_len
    state = _Decoder(model, src, k, use_cache)  # N = B * K rows, ids (N, 1)
    scores = torch.full((b, k), float("-inf"), device=src.device)  # (B, K)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]  # per article: (normalised score, ids)
    for step in range(1, max_len):
        logp = block_repeated_ngrams(state.next_log_probs(), state.ids, no_repeat_ngram_size)  # (N, V)
        if step <= min_len:
            logp[:, EOS_ID] = float("-inf")
        vocab = logp.shape[-1]
        cand = (scores[:, :, None] + logp.view(b, k, vocab)).view(b, k * vocab)  # (B, K, V) -> (B, K * V)
        top_scores, top_idx = cand.topk(2 * k, dim=-1)  # (B, 2K): enough for K live beams after <= K end
        rows, tokens, new_scores = [], [], []  # N each: parent row, appended token, summed log-prob
        for i in range(b):
            alive = []  # up to K (score, parent row, token) of article i
            for sc, idx in zip(top_scores[i].tolist(), top_idx[i].tolist()):
                beam, tok = divmod(idx, vocab)
                if sc == float("-inf"):
                    break
                if tok == EOS_ID or step == max_len - 1:
                    if len(finished[i]) < k:
                        ids = state.ids[i * k + beam, 1:].tolist() + ([] if tok == EOS_ID else [tok])
                        finished[i].append((sc / max(1, len(ids) + 1) ** length_penalty, ids))
                elif len(alive) < k:
                    alive.append((sc, i * k + beam, tok))
                if len(alive) == k:
                    break
            if len(finished[i]) >= k or not alive:  # article done: keep dead rows (their score is -inf)
                alive = [(float("-inf"), i * k, PAD_ID)] * k
            alive += [(float("-inf"), alive[0][1], PAD_ID)] * (k - len(alive))
            for sc, row, tok in alive:
                new_scores.append(sc)
                rows.append(row)
                tokens.append(tok)
        if all(len(f) >= k for f in finished):
            break
        scores = torch.tensor(new_scores, device=src.device).view(b, k)  # (N,) -> (B, K)
        state.append(torch.tensor(tokens, device=src.device), torch.tensor(rows, device=src.device))  # ids (N, t + 1)
    return [sorted(f, key=lambda x: -x[0]) for f in finished]


@torch.no_grad()
def summarize(model: Summarizer, tok: Tokenizer, articles: Sequence[str], *, method: str = "beam",
              batch_size: int = 128, beam_size: int = 4, temperature: float = 1.0, top_k: int = 0,
              top_p: float = 1.0, no_repeat_ngram_size: int = 3, max_len: int | None = None,
              seed: int = 0) -> list[str]:
    """One summary of each raw article text. method: "greedy", "beam" or "sample" (generate(sample=True), with
    temperature / top_k / top_p; `seed` seeds its random numbers: the same call gives the same summaries)."""
    if method not in ("greedy", "beam", "sample"):
        raise ValueError(f"method={method!r}: expected 'greedy', 'beam' or 'sample'")
    generator = torch.Generator(device=model.device).manual_seed(seed)
    out: list[str] = []
    for start in range(0, len(articles), batch_size):
        chunk = articles[start:start + batch_size]
        src = pad(encode(tok, chunk, model.cfg.max_source_len), model.device)  # (b, S)
        if method == "beam":
            best = beam_search(model, src, beam_size=beam_size, max_len=max_len,
                               no_repeat_ngram_size=no_repeat_ngram_size)
        else:
            best = generate(model, src, max_len=max_len, sample=method == "sample", temperature=temperature,
                            top_k=top_k, top_p=top_p, no_repeat_ngram_size=no_repeat_ngram_size,
                            generator=generator).tolist()  # ids (b, T)
        out += [decode(tok, ids) for ids in best]
    return out
