"""Unit tests of the summarizer package: shapes, masks, copy head, decoding, training, checkpoints."""

import itertools
from pathlib import Path

import pytest
import torch

from summarizer.batching import EncodedPairs, collate
from summarizer.checkpoint import load_checkpoint, save_checkpoint
from summarizer.decode import _beam_hypotheses, beam_search, block_repeated_ngrams, filter_logits, generate, summarize
from summarizer.evaluate import lead_summary, rouge, rouge_table
from summarizer.model import Summarizer, SummarizerConfig
from summarizer.settings import FAST, FULL, settings
from summarizer.tokenizer import BOS_ID, EOS_ID, PAD_ID, decode, encode, train_tokenizer
from summarizer.train import autocast_dtype, cpu_has_native_bf16, lr_factor, train_model, validation_loss

V = 40


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread avoids oversubscription on a shared 2-core machine (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(attention="softmax", copy=True, d_decoder=None, seed=0, **kw) -> Summarizer:
    torch.manual_seed(seed)
    cfg = SummarizerConfig(vocab_size=V, d_model=32, d_decoder=d_decoder, n_heads=4, n_encoder_layers=2,
                           n_decoder_layers=2, d_ff=64, dropout=0.0, attention=attention, n_random=32, copy=copy,
                           max_target_len=10, **kw)
    return Summarizer(cfg).eval()


def batch(b=3, s=7, t=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, V, (b, s), generator=g)
    src[0, 4:] = PAD_ID
    src[1, 6:] = PAD_ID
    tgt = torch.randint(3, V, (b, t), generator=g)
    tgt[:, 0] = BOS_ID
    return src, tgt


@pytest.mark.parametrize("attention,d_decoder,copy", [("softmax", None, True), ("performer", None, True),
                                                       ("softmax", 48, True), ("softmax", None, False)])
def test_shapes_and_normalised_distribution(attention, d_decoder, copy):
    model = tiny(attention, copy, d_decoder)
    src, tgt = batch()
    memory, src_mask = model.encode(src)
    assert memory.shape == (3, 7, 32) and src_mask.dtype == torch.bool and src_mask.shape == (3, 7)
    logp = model(src, tgt)
    assert logp.shape == (3, 6, V)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(3, 6), atol=1e-5, rtol=0)
    maps = model.attention_weights(src, tgt)
    d_heads = 4
    assert maps["encoder"][0].shape == (3, d_heads, 7, 7)
    assert maps["decoder_self"][0].shape == (3, d_heads, 6, 6)
    assert maps["cross"][0].shape == (3, d_heads, 6, 7)


def test_token_nll_equals_full_distribution():
    """The gather-only training loss equals -log p(target) of the full scattered distribution."""
    model = tiny()
    src, tgt = batch()
    src[2, 1] = src[2, 3] = tgt[2, 2]  # a target token that occurs twice in the source: copy mass adds up
    logp = model(src, tgt[:, :-1])
    expected = -logp.gather(-1, tgt[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(model.token_nll(src, tgt[:, :-1], tgt[:, 1:]), expected, atol=1e-5, rtol=1e-5)


def test_copy_distribution_matches_brute_force():
    """p(w) = g p_vocab(w) + (1 - g) * sum of copy weights on source positions holding w, by explicit loops."""
    model = tiny()
    src, tgt = batch(b=2, s=5, t=3)
    memory, src_mask = model.encode(src)
    h, _, _ = model.decode_hidden(tgt, memory, src_mask)
    log_p_vocab, a, g = model.output_parts(h, memory, src_mask)
    p = model.output_log_probs(h, memory, src, src_mask).exp()
    for b, t, w in itertools.product(range(2), range(3), range(V)):
        copy = sum(a[b, t, s].item() for s in range(5) if src[b, s].item() == w)
        ref = g[b, t, 0].item() * log_p_vocab[b, t, w].exp().item() + (1 - g[b, t, 0].item()) * copy
        assert abs(p[b, t, w].item() - ref) < 1e-5
    assert a[0, :, 4:].abs().max() == 0  # no copy mass on padding


@pytest.mark.parametrize("attention", ["softmax", "performer"])
def test_padded_positions_do_not_matter(attention):
    """More padding, or arbitrary memory vectors at padded positions, leaves every output unchanged."""
    model = tiny(attention)
    src, tgt = batch()
    logp = model(src, tgt)
    longer = torch.cat([src, torch.full((3, 5), PAD_ID)], dim=1)
    torch.testing.assert_close(model(longer, tgt), logp, atol=1e-5, rtol=1e-4)
    memory, src_mask = model.encode(src)
    noisy = memory.clone()
    noisy[~src_mask] = 100 * torch.randn(int((~src_mask).sum()), memory.shape[-1])
    h_ref, _, _ = model.decode_hidden(tgt, memory, src_mask)
    h_noisy, _, _ = model.decode_hidden(tgt, noisy, src_mask)
    torch.testing.assert_close(model.output_log_probs(h_noisy, noisy, src, src_mask),
                               model.output_log_probs(h_ref, memory, src, src_mask), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attention", ["softmax", "performer"])
def test_future_target_tokens_do_not_matter(attention):
    """Changing target token j changes no prediction made at positions < j (causal mask)."""
    model = tiny(attention)
    src, tgt = batch()
    logp = model(src, tgt)
    for j in range(1, tgt.shape[1]):
        changed = tgt.clone()
        changed[:, j] = (changed[:, j] + 7 - 3) % (V - 3) + 3
        out = model(src, changed)
        torch.testing.assert_close(out[:, :j], logp[:, :j], atol=1e-5, rtol=1e-4)
        assert not torch.allclose(out[:, j:], logp[:, j:])


@pytest.mark.parametrize("attention", ["softmax", "performer"])
def test_cached_decoding_equals_uncached(attention):
    model = tiny(attention)
    src, _ = batch()
    fast = generate(model, src, max_len=9)
    slow = generate(model, src, max_len=9, use_cache=False)
    assert torch.equal(fast, slow)
    assert beam_search(model, src, beam_size=3, max_len=9) == beam_search(model, src, beam_size=3, max_len=9,
                                                                         use_cache=False)


@pytest.mark.parametrize("attention,d_decoder,copy", [("softmax", None, True), ("performer", None, True),
                                                       ("softmax", 48, False)])
def test_beam_search_with_model_cache_equals_uncached(attention, d_decoder, copy):
    """Beam search through the model-owned DecoderCache (empty_cache / reorder) = re-running the decoder on every
    prefix (use_cache=False), with n-gram blocking, min_len, and every finished hypothesis, not only the best."""
    model = tiny(attention, copy, d_decoder, max_source_len=7)
    src, _ = batch(b=4)
    kw = dict(beam_size=4, max_len=10, min_len=2, no_repeat_ngram_size=2, length_penalty=0.7)

    def hypotheses(use_cache):
        return [[ids for _, ids in found] for found in _beam_hypotheses(model, src, use_cache=use_cache, **kw)]

    assert hypotheses(True) == hypotheses(False)
    assert beam_search(model, src, **kw) == [found[0] for found in hypotheses(True)]


def test_decoder_cache_reorder_follows_the_rows():
    """Step the model-owned cache, reorder its rows (as beam search does), step again: the newest decoder state equals
    the uncached decoder's on the reordered prefixes."""
    model = tiny(d_decoder=48)
    src, tgt = batch(t=4)
    memory, src_mask = model.encode(src)
    cache = model.empty_cache(src.shape[0])
    assert len(cache) == 0
    with torch.no_grad():
        for t in range(1, 3):
            model.decode_hidden(tgt[:, :t], memory, src_mask, cache=cache)
        rows = torch.tensor([2, 0, 0])
        cache.reorder(rows)
        tgt, memory, src_mask = tgt[rows], memory[rows], src_mask[rows]
        h, cache, _ = model.decode_hidden(tgt[:, :3], memory, src_mask, cache=cache)
        h_ref, _, _ = model.decode_hidden(tgt[:, :3], memory, src_mask)
    assert len(cache) == 3 and h.shape == (3, 1, 48)
    torch.testing.assert_close(h[:, 0], h_ref[:, -1], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="cache holds 3 positions"):
        model.decode_hidden(tgt[:, :3], memory, src_mask, cache=cache)


def test_greedy_equals_stepwise_argmax_of_full_model():
    """Greedy decoding = repeatedly running the whole model on the prefix and taking the argmax (independent loop)."""
    model = tiny()
    src, _ = batch()
    out = generate(model, src, max_len=7)
    for b in range(src.shape[0]):
        prefix = [BOS_ID]
        for _ in range(out.shape[1]):
            logp = model(src[b:b + 1], torch.tensor([prefix]))[0, -1]
            logp[PAD_ID] = logp[BOS_ID] = float("-inf")
            prefix.append(int(logp.argmax()))
            if prefix[-1] == EOS_ID:
                break
        assert out[b, : len(prefix) - 1].tolist() == prefix[1:]


def test_sampling_filters_and_beam_hypotheses():
    model = tiny()
    src, _ = batch()
    draw = lambda seed: generate(model, src, sample=True, top_k=5, top_p=0.9,  # noqa: E731
                                 generator=torch.Generator().manual_seed(seed))
    assert draw(0).shape[0] == 3 and torch.equal(draw(0), draw(0))              # one row per article, seeded
    assert torch.equal(generate(model, src, sample=True, top_k=1), generate(model, src))  # top-1 sampling = greedy
    found = _beam_hypotheses(model, src, beam_size=4, max_len=None, length_penalty=1.0, no_repeat_ngram_size=3,
                             min_len=0, use_cache=True)
    assert [len(f) for f in found] == [4, 4, 4]                                # beam_size finished per article
    assert all([s for s, _ in f] == sorted((s for s, _ in f), reverse=True) for f in found)   # best first
    assert all(len(ids) >= 6 for ids in beam_search(model, src, beam_size=2, min_len=6))
    with pytest.raises(ValueError, match="temperature"):
        generate(model, src, sample=True, temperature=0)
    # === BEGIN INSTRUCTOR ONLY ===
    from summarizer.decode import generate_samples

    ids = generate_samples(model, src, 4, top_k=5, top_p=0.9, generator=torch.Generator().manual_seed(0))
    assert ids.shape[0] == 3 * 4
    top1 = generate_samples(model, src, 4, top_k=1)        # top-1 samples: rows b*4 .. b*4 + 3 are article b's greedy
    assert torch.equal(top1, generate(model, src).repeat_interleave(4, 0))
    with pytest.raises(ValueError, match="num_samples"):
        generate_samples(model, src, 0)
    # === END INSTRUCTOR ONLY ===


def test_filter_logits_against_brute_force():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    p = logits.softmax(-1)[0].tolist()
    kept = filter_logits(logits, top_p=0.8).isfinite()[0].tolist()
    # smallest prefix of the sorted tokens whose mass reaches 0.8
    order = sorted(range(5), key=lambda i: -p[i])
    mass, expected = 0.0, set()
    for i in order:
        expected.add(i)
        mass += p[i]
        if mass >= 0.8:
            break
    assert {i for i, k in enumerate(kept) if k} == expected
    assert filter_logits(logits, top_k=2).isfinite()[0].tolist() == [True, True, False, False, False]


def test_block_repeated_ngrams_against_brute_force():
    ids = torch.tensor([[5, 6, 7, 5, 6], [1, 2, 3, 4, 5]])
    logp = block_repeated_ngrams(torch.zeros(2, 10), ids, 3)
    for r, seq in enumerate(ids.tolist()):
        for w in range(10):
            new = seq + [w]
            grams = [tuple(new[i:i + 3]) for i in range(len(new) - 2)]
            assert (logp[r, w] == float("-inf")) == (len(grams) != len(set(grams)))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tiny_model_overfits_a_handful_of_pairs(precision):
    """A small model memorises 6 pairs (one of them pure copying) and decodes them back exactly, in float32 and
    under bf16 autocast."""
    g = torch.Generator().manual_seed(0)
    src = [torch.randint(3, V, (int(n),), generator=g).tolist() for n in (6, 8, 5, 7, 8, 6)]
    tgt = [[BOS_ID] + torch.randint(3, V, (4,), generator=g).tolist() + [EOS_ID] for _ in src]
    tgt[0] = [BOS_ID] + src[0][:4] + [EOS_ID]
    pairs = EncodedPairs(src, tgt)
    model = tiny(seed=0)
    history = train_model(model, pairs, pairs, steps=150, batch_size=6, lr=5e-3, warmup=10, eval_every=50,
                          progress=False, precision=precision)
    assert history.val_loss[-1] < 0.05 and history.val_loss[-1] < history.val_loss[0]
    assert validation_loss(model, pairs) == pytest.approx(history.val_loss[-1])
    src_t, _, _ = collate(pairs)
    out = generate(model, src_t, max_len=7)
    for row, ref in zip(out.tolist(), tgt):
        assert row[: len(ref) - 1] == ref[1:]


def test_autocast_dtype_choice():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") is torch.bfloat16
    assert autocast_dtype(cpu, "auto") is (torch.bfloat16 if cpu_has_native_bf16() else None)
    with pytest.raises(ValueError, match="precision='fp16'"):
        autocast_dtype(cpu, "fp16")


def test_native_bf16_is_found_without_torch_cpu_get_capabilities(monkeypatch):
    """torch < 2.8 (Debian's 2.6) has no torch.cpu.get_capabilities: Linux's CPU flags say the same; on a GPU, bf16
    only from compute capability 8.0 (a T4, 7.5, trains in float32)."""
    with_torch = cpu_has_native_bf16()
    if Path("/proc/cpuinfo").is_file():
        monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
        assert cpu_has_native_bf16() == with_torch
    for capability, dtype in (((7, 5), None), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert autocast_dtype(torch.device("cuda"), "auto") is dtype, capability


def test_bf16_autocast_loss_matches_float32():
    """The bf16 forward pass gives the float32 loss to within 2 % (bf16 keeps 8 mantissa bits), float32 gradients."""
    model = tiny(seed=4).train()
    src, tgt = batch()
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    reference = model.loss(src, tgt_in, tgt_out)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.loss(src, tgt_in, tgt_out)
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(reference.item(), rel=2e-2)
    mixed.backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())


def test_training_is_reproducible():
    pairs = EncodedPairs([[5, 6, 7], [8, 9, 10, 11]], [[BOS_ID, 5, EOS_ID], [BOS_ID, 9, 10, EOS_ID]])
    runs = [train_model(tiny(seed=3), pairs, pairs, steps=5, batch_size=2, progress=False, seed=1,
                        precision=precision).train_loss for precision in ("fp32", "fp32", "bf16", "bf16")]
    assert runs[0] == runs[1] and runs[2] == runs[3]
    assert runs[2] != runs[0] and runs[2] == pytest.approx(runs[0], rel=2e-2)  # bf16 autocast took effect


def test_history_records_the_precision_it_trained_in():
    """The history says fp32 or bf16 (autocast) and keeps it through to_dict / from_dict (the checkpoint's copy)."""
    from summarizer.train import TrainHistory

    pairs = EncodedPairs([[5, 6, 7]], [[BOS_ID, 5, EOS_ID]])
    for precision in ("fp32", "bf16"):
        history = train_model(tiny(), pairs, pairs, steps=1, batch_size=1, progress=False, precision=precision)
        assert history.precision == precision
        assert TrainHistory.from_dict(history.to_dict()) == history


def test_hw8_precision_sets_the_default_precision(monkeypatch):
    """HW8_PRECISION=fp32 makes the default run float32 (what a laptop without native bf16 does), =bf16 autocast."""
    pairs = EncodedPairs([[5, 6, 7], [8, 9, 10, 11]], [[BOS_ID, 5, EOS_ID], [BOS_ID, 9, 10, EOS_ID]])

    def losses(precision=None):
        return train_model(tiny(seed=3), pairs, pairs, steps=3, batch_size=2, progress=False, seed=1,
                           precision=precision).train_loss

    for name in ("fp32", "bf16"):
        monkeypatch.setenv("HW8_PRECISION", name)
        assert losses() == losses(name)
    monkeypatch.setenv("HW8_PRECISION", "half")
    with pytest.raises(ValueError, match="HW8_PRECISION='half'"):
        losses()


def test_lr_schedule():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100) == pytest.approx(0.1)
    assert all(lr_factor(s, 10, 100) >= lr_factor(s + 1, 10, 100) for s in range(10, 100))


@pytest.fixture(scope="module")
def tokenizer():
    words = "the package provides a library for parsing xml files and tools to convert them quickly".split()
    g = torch.Generator().manual_seed(0)
    texts = [" ".join(words[i] for i in torch.randint(0, len(words), (12,), generator=g).tolist()) for _ in range(300)]
    return train_tokenizer(texts, vocab_size=300)


def test_tokenizer_specials_and_round_trip(tokenizer):
    assert [tokenizer.token_to_id(t) for t in ("<pad>", "<bos>", "<eos>")] == [PAD_ID, BOS_ID, EOS_ID]
    ids = encode(tokenizer, ["A Library for XML files"], max_len=50, add_bos_eos=True)[0]
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert decode(tokenizer, ids + [7, 8]) == "a library for xml files"  # lowercased; stops at <eos>
    assert len(encode(tokenizer, ["parsing xml files and tools " * 20], max_len=9)[0]) == 9


def test_checkpoint_round_trip_and_errors(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = Summarizer(SummarizerConfig(vocab_size=tokenizer.get_vocab_size(), d_model=32, n_heads=4, d_ff=64,
                                        n_encoder_layers=1, n_decoder_layers=1, attention="performer",
                                        n_random=16, max_target_len=8)).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, tokenizer, history={"val_loss": [1.0]})
    loaded, tok, payload = load_checkpoint(path)
    src, tgt = batch()
    torch.testing.assert_close(loaded(src, tgt), model(src, tgt), atol=0, rtol=0)
    articles = ["the package provides a library for parsing xml files", "tools to convert them"]
    assert summarize(loaded, tok, articles, method="greedy") == summarize(model, tokenizer, articles, method="greedy")
    assert payload["history"]["val_loss"] == [1.0] and tok.to_str() == tokenizer.to_str()

    with pytest.raises(FileNotFoundError, match="no summarizer checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable summarizer checkpoint"):
        load_checkpoint(truncated)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="not a hw8-summarizer checkpoint"):
        load_checkpoint(other)
    payload = torch.load(path, weights_only=True)
    payload["config"]["d_model"] = 48  # weights no longer fit the config
    torch.save(payload, other)
    with pytest.raises(ValueError, match="weights do not match"):
        load_checkpoint(other)
    payload["config"]["layers"] = 3
    torch.save(payload, other)
    with pytest.raises(ValueError, match="unknown summarizer config keys"):
        load_checkpoint(other)


def test_config_validation():
    with pytest.raises(ValueError, match="attention"):
        SummarizerConfig(vocab_size=10, attention="linear")
    with pytest.raises(ValueError, match="divisible"):
        SummarizerConfig(vocab_size=10, d_model=30, n_heads=4)


def test_rouge_and_lead():
    assert lead_summary("one two three four", 2) == "one two"
    assert rouge(["a library for xml"], ["a library for xml"]) == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}
    scores = rouge(["parsing libraries"], ["library for parsing"])  # stemming: libraries ~ library
    assert scores["rouge1"] == pytest.approx(100 * 2 * (1 * 2 / 3) / (1 + 2 / 3))
    table = rouge_table({"x": ["a b"], "y": ["c"]}, ["a b"])
    assert table.loc["x", "ROUGE-1"] == 100.0 and table.loc["y", "ROUGE-1"] == 0.0


def test_fast_mode_switch(monkeypatch):
    monkeypatch.setenv("HW8_FAST", "1")
    assert settings() is FAST
    monkeypatch.setenv("HW8_FAST", "0")
    assert settings() is FULL
    monkeypatch.delenv("HW8_FAST")
    assert settings() is FULL


def test_build_model_takes_dropout_from_the_run_settings():
    """The main model gets run.dropout (active in training, off in eval); an override (the 1(g) sweep's) wins."""
    from summarizer.pipeline import build_model

    torch.manual_seed(0)
    model = build_model(FAST, V)
    assert model.cfg.dropout == FAST.dropout > 0
    src, tgt = batch()
    model.train()
    assert not torch.equal(model(src, tgt), model(src, tgt))
    model.eval()
    torch.testing.assert_close(model(src, tgt), model(src, tgt), rtol=0, atol=0)
    assert build_model(FAST, V, dropout=0.0).cfg.dropout == 0.0
