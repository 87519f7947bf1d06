"""Transformer encoder–decoder summarizer built from `kernel_attention` pieces, with a pointer-generator copy head.

Shapes: B batch, S source length, T target length, V vocabulary, d_enc / d_dec encoder / decoder widths.
Masks follow kernel_attention: boolean, True = real token / may attend.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kernel_attention import (
    DEFAULT_N_RANDOM,
    MultiHeadAttention,
    PerformerAttention,
    PositionalEncoding,
    scaled_dot_product_attention,
)
from summarizer.dropout import FastDropout
from summarizer.tokenizer import BOS_ID, EOS_ID, PAD_ID

ATTENTIONS = ("softmax", "performer")
MAX_SOURCE_LEN = 64  # article tokens kept: the synopsis mostly reuses words of the first sentences
MAX_TARGET_LEN = 32  # <bos> + synopsis + <eos>


@dataclass
class SummarizerConfig:
    """Hyperparameters that define the network (saved in every checkpoint).

    d_decoder: decoder width; None = d_model.
    === BEGIN INSTRUCTOR ONLY ===
    It may differ from the encoder's width: cross-attention projects the memory's d_model-wide keys/values to the
    decoder's width (MultiHeadAttention(d_key_value=d_model)).
    === END INSTRUCTOR ONLY ===
    attention: "softmax" (MultiHeadAttention) or "performer" (PerformerAttention with n_random features) in every
    encoder/decoder attention. copy: add the pointer-generator copy distribution (always softmax, it is a probability).
    dropout: rate on the embeddings and on every residual branch's output (attention, FFN), not inside the FFN.
    """

    vocab_size: int
    d_model: int = 128
    d_decoder: int | None = None
    n_heads: int = 4
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    d_ff: int = 512
    dropout: float = 0.0
    attention: str = "softmax"
    n_random: int = DEFAULT_N_RANDOM
    copy: bool = True
    max_source_len: int = MAX_SOURCE_LEN
    max_target_len: int = MAX_TARGET_LEN

    def __post_init__(self):
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention={self.attention!r}: expected one of {ATTENTIONS}")
        for width in (self.d_model, self.d_dec):
            if width % self.n_heads:
                raise ValueError(f"width {width} is not divisible by n_heads={self.n_heads}")

    @property
    def d_dec(self) -> int:
        return self.d_model if self.d_decoder is None else self.d_decoder

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SummarizerConfig:
        """Config from a checkpoint dict; unknown or missing keys raise ValueError naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown summarizer config keys {unknown}: checkpoint from another version of the code")
        if "vocab_size" not in d:
            raise ValueError("summarizer config has no 'vocab_size'")
        return cls(**d)


def make_attention(cfg: SummarizerConfig, d_model: int, d_key_value: int | None = None) -> nn.Module:
    """The attention core chosen by cfg.attention; PerformerAttention is a drop-in for MultiHeadAttention."""
    if cfg.attention == "performer":
        return PerformerAttention(d_model, cfg.n_heads, d_key_value=d_key_value, n_random=cfg.n_random)
    return MultiHeadAttention(d_model, cfg.n_heads, d_key_value=d_key_value)


class FeedForward(nn.Sequential):
    """Position-wise MLP: (B, N, d) -> (B, N, d).

    No dropout on the d_ff-wide hidden activations (as in the original Transformer): the layers drop the FFN's output
    instead. The hidden site held ~60 % of all dropped elements; removing it cut the float32 step time and, in a
    3,200-step screen, slightly improved validation loss (3.425 vs 3.450) and ROUGE (summarizer/RESULTS.md).
    """

    def __init__(self, d: int, d_ff: int):
        super().__init__(nn.Linear(d, d_ff), nn.GELU(), nn.Linear(d_ff, d))


class EncoderLayer(nn.Module):
    """Pre-norm encoder layer: x + SelfAttn(LN(x)) then x + FFN(LN(x)); padded keys are masked."""

    def __init__(self, cfg: SummarizerConfig):
        super().__init__()
        d = cfg.d_model
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = make_attention(cfg, d)
        self.ff = FeedForward(d, cfg.d_ff)
        self.drop = FastDropout(cfg.dropout)

    def forward(self, x: Tensor, src_mask: Tensor, return_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B, S, d_enc), src_mask (B, S) -> x (B, S, d_enc), weights (B, H, S, S) or None."""
        h = self.norm1(x)
        a, w = self.self_attn(h, h, h, key_padding_mask=src_mask, return_weights=return_weights)
        x = x + self.drop(a)
        return x + self.drop(self.ff(self.norm2(x))), w


class DecoderLayer(nn.Module):
    """Pre-norm decoder layer: causal self-attention, cross-attention over the encoder memory, FFN.

    Incremental decoding passes `cache` = the normalised self-attention inputs of the earlier positions (B, t-1, d):
    the new position's query then attends to them and to itself, which is what the causal mask allows it.
    """

    def __init__(self, cfg: SummarizerConfig):
        super().__init__()
        d = cfg.d_dec
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = make_attention(cfg, d)
        self.cross_attn = make_attention(cfg, d, d_key_value=cfg.d_model)
        self.ff = FeedForward(d, cfg.d_ff)
        self.drop = FastDropout(cfg.dropout)

    def forward(self, y: Tensor, memory: Tensor, src_mask: Tensor, tgt_mask: Tensor | None = None,
                cache: Tensor | None = None, return_weights: bool = False):
        """y (B, T, d_dec), memory (B, S, d_enc), src_mask (B, S), tgt_mask (B, T) or None, cache (B, t, d_dec) or None
        -> y (B, T, d_dec), new cache (B, t + T, d_dec), self weights (B, H, T, t+T), cross weights (B, H, T, S)."""
        h = self.norm1(y)
        if cache is None:
            kv = h
            a, w_self = self.self_attn(h, kv, kv, key_padding_mask=tgt_mask, causal=True,
                                       return_weights=return_weights)
        else:
            if h.shape[1] != 1:
                raise ValueError(f"cached decoding feeds one position at a time, got {h.shape[1]}")
            kv = torch.cat([cache, h], dim=1)
            a, w_self = self.self_attn(h, kv, kv, return_weights=return_weights)
        y = y + self.drop(a)
        c, w_cross = self.cross_attn(self.norm2(y), memory, memory, key_padding_mask=src_mask,
                                     return_weights=return_weights)
        y = y + self.drop(c)
        y = y + self.drop(self.ff(self.norm3(y)))
        return y, kv, w_self, w_cross


class DecoderCache:
    """Incremental-decoding state of `Summarizer.decode_hidden`, created by `Summarizer.empty_cache`.

    Per decoder layer it holds the normalised self-attention inputs of the t positions decoded so far, (N, t, d_dec)
    for N rows; `decode_hidden` appends the newest position in place. Callers only create, pass and `reorder` it.
    """

    def __init__(self, layers: list[Tensor]):
        self.layers = layers  # one (N, t, d_dec) tensor per decoder layer

    def __len__(self) -> int:
        """t: the number of positions cached."""
        return self.layers[0].shape[1] if self.layers else 0

    def reorder(self, indices: Tensor) -> None:
        """Keep rows `indices` (M,) in that order, in place (beam search): (N, t, d_dec) -> (M, t, d_dec)."""
        self.layers = [c[indices] for c in self.layers]


class CopyHead(nn.Module):
    """Pointer-generator copy head (See et al., 2017): one softmax attention from the decoder output over the memory.

    p(w) = g p_vocab(w) + (1 - g) sum_{s: src_s = w} a_s,  a = softmax(q k^T / sqrt(d)) over real source tokens,
    g = sigmoid(W [h; a memory]).
    """

    def __init__(self, d_dec: int, d_enc: int):
        super().__init__()
        self.query = nn.Linear(d_dec, d_dec)
        self.key = nn.Linear(d_enc, d_dec)
        self.gate = nn.Linear(d_dec + d_enc, 1)

    def forward(self, h: Tensor, memory: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor]:
        """h (B, T, d_dec), memory (B, S, d_enc), src_mask (B, S) -> copy weights (B, T, S), gate g (B, T, 1)."""
        context, a = scaled_dot_product_attention(self.query(h), self.key(memory), memory,
                                                  mask=src_mask[:, None, :], return_weights=True)
        return a, torch.sigmoid(self.gate(torch.cat([h, context], dim=-1)))


class Summarizer(nn.Module):
    """Encoder–decoder Transformer: source ids (B, S) and shifted target ids (B, T) -> log p(next token) (B, T, V)."""

    def __init__(self, cfg: SummarizerConfig):
        super().__init__()
        self.cfg = cfg
        self.src_embed = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=PAD_ID)
        self.tgt_embed = (self.src_embed if cfg.d_dec == cfg.d_model
                          else nn.Embedding(cfg.vocab_size, cfg.d_dec, padding_idx=PAD_ID))
        # dropout of embeddings + positions: FastDropout (summarizer/dropout.py) instead of PositionalEncoding's own
        self.src_pos = PositionalEncoding(cfg.d_model, max_len=max(cfg.max_source_len, 512))
        self.tgt_pos = PositionalEncoding(cfg.d_dec, max_len=max(cfg.max_target_len, 512))
        self.embed_drop = FastDropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_decoder_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_dec)
        self.out = nn.Linear(cfg.d_dec, cfg.vocab_size)
        self.copy = CopyHead(cfg.d_dec, cfg.d_model) if cfg.copy else None

    @property
    def device(self) -> torch.device:
        return self.out.weight.device

    def encode(self, src: Tensor, return_weights: bool = False):
        """src (B, S) ids -> memory (B, S, d_enc), src_mask (B, S) [, list of (B, H, S, S) weights per layer]."""
        src_mask = src != PAD_ID
        x = self.embed_drop(self.src_pos(self.src_embed(src)))
        weights = []
        for layer in self.encoder:
            x, w = layer(x, src_mask, return_weights)
            weights.append(w)
        memory = self.enc_norm(x)
        return (memory, src_mask, weights) if return_weights else (memory, src_mask)

    def empty_cache(self, batch_size: int) -> DecoderCache:
        """A cache for incremental decoding of `batch_size` rows, no position decoded yet: (N, 0, d_dec) per layer."""
        return DecoderCache([self.out.weight.new_zeros(batch_size, 0, self.cfg.d_dec) for _ in self.decoder])

    def decode_hidden(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor, cache: DecoderCache | None = None,
                      return_weights: bool = False):
        """Decoder states. tgt_in (B, T) ids (all positions so far), memory (B, S, d_enc), src_mask (B, S)
        -> h (B, T', d_dec), cache, (self weights, cross weights) per layer.

        Without a cache T' = T and the returned DecoderCache holds all T positions; with one (from `empty_cache`,
        holding the first T - 1 positions) only the last position is computed (T' = 1) and appended to it in place.
        """
        if cache is not None and cache.layers and len(cache) != tgt_in.shape[1] - 1:
            raise ValueError(f"the cache holds {len(cache)} positions, tgt_in has {tgt_in.shape[1]}: feed one new id")
        y = self.embed_drop(self.tgt_pos(self.tgt_embed(tgt_in)))  # (B, T, d_dec)
        tgt_mask = tgt_in != PAD_ID  # (B, T)
        if cache is not None:
            y, tgt_mask = y[:, -1:], None  # (B, 1, d_dec)
        layers, w_self, w_cross = [], [], []
        for i, layer in enumerate(self.decoder):
            y, kv, ws, wc = layer(y, memory, src_mask, tgt_mask, None if cache is None else cache.layers[i],
                                  return_weights)  # kv (B, t + T', d_dec)
            layers.append(kv)
            w_self.append(ws)
            w_cross.append(wc)
        if cache is None:
            cache = DecoderCache(layers)
        else:
            cache.layers = layers
        return self.dec_norm(y), cache, (w_self, w_cross)

    def output_parts(self, h: Tensor, memory: Tensor, src_mask: Tensor):
        """h (B, T, d_dec) -> vocabulary log-probs (B, T, V), copy weights (B, T, S), gate (B, T, 1) (None w/o copy)."""
        log_p_vocab = F.log_softmax(self.out(h).float(), dim=-1)
        if self.copy is None:
            return log_p_vocab, None, None
        a, g = self.copy(h, memory, src_mask)
        return log_p_vocab, a, g

    def output_log_probs(self, h: Tensor, memory: Tensor, src: Tensor, src_mask: Tensor) -> Tensor:
        """Full next-token distribution: h (B, T, d_dec), src (B, S) -> log p (B, T, V) (copy mass scattered on ids)."""
        log_p_vocab, a, g = self.output_parts(h, memory, src_mask)
        if a is None:
            return log_p_vocab
        b, t, s = a.shape
        p_copy = torch.zeros_like(log_p_vocab).scatter_add_(-1, src[:, None, :].expand(b, t, s), a)
        return (g * log_p_vocab.exp() + (1 - g) * p_copy).clamp_min(1e-12).log()

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """src (B, S), tgt_in (B, T) (starts with <bos>) -> log p(next token) (B, T, V)."""
        memory, src_mask = self.encode(src)
        h, _, _ = self.decode_hidden(tgt_in, memory, src_mask)
        return self.output_log_probs(h, memory, src, src_mask)

    def token_nll(self, src: Tensor, tgt_in: Tensor, tgt_out: Tensor) -> Tensor:
        """Negative log-likelihood of each target token, (B, T); 0 where tgt_out is <pad>.

        Only the real target positions go through the vocabulary projection, and only the target's probability
        p(y) = g p_vocab(y) + (1 - g) sum_s a_s [src_s = y] is gathered (no (B, T, V) scatter): same numbers as
        `forward`, a fraction of the cost.
        """
        memory, src_mask = self.encode(src)
        h, _, _ = self.decode_hidden(tgt_in, memory, src_mask)
        real = tgt_out != PAD_ID  # (B, T)
        b_idx, t_idx = real.nonzero(as_tuple=True)  # the R real positions
        y = tgt_out[b_idx, t_idx]  # (R,)
        lp = F.log_softmax(self.out(h[b_idx, t_idx]).float(), dim=-1).gather(-1, y[:, None]).squeeze(-1)  # (R,)
        if self.copy is not None:
            a, g = self.copy(h, memory, src_mask)  # (B, T, S), (B, T, 1)
            a, g = a[b_idx, t_idx], g[b_idx, t_idx, 0]  # (R, S), (R,)
            p_copy = (a * (src[b_idx] == y[:, None])).sum(-1)  # (R,)
            lp = (g * lp.exp() + (1 - g) * p_copy).clamp_min(1e-12).log()
        nll = torch.zeros(tgt_out.shape, dtype=lp.dtype, device=lp.device)
        return nll.index_put((b_idx, t_idx), -lp)

    def loss(self, src: Tensor, tgt_in: Tensor, tgt_out: Tensor) -> Tensor:
        """Mean NLL per real target token (scalar)."""
        nll = self.token_nll(src, tgt_in, tgt_out)
        return nll.sum() / (tgt_out != PAD_ID).sum().clamp_min(1)

    @torch.no_grad()
    def attention_weights(self, src: Tensor, tgt_in: Tensor) -> dict[str, list[Tensor]]:
        """Every attention map for one batch: 'encoder' (B, H, S, S), 'decoder_self' (B, H, T, T), 'cross' (B, H, T, S)
        per layer, and 'copy' [(B, T, S)] when the copy head exists."""
        memory, src_mask, enc_w = self.encode(src, return_weights=True)
        h, _, (self_w, cross_w) = self.decode_hidden(tgt_in, memory, src_mask, return_weights=True)
        maps = {"encoder": enc_w, "decoder_self": self_w, "cross": cross_w}
        if self.copy is not None:
            maps["copy"] = [self.copy(h, memory, src_mask)[0]]
        return maps


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["BOS_ID", "EOS_ID", "MAX_SOURCE_LEN", "MAX_TARGET_LEN", "PAD_ID", "DecoderCache", "Summarizer",
           "SummarizerConfig", "count_parameters"]
