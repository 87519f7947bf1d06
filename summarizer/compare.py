"""Question 1(g): softmax vs Performer attention, trained for the same number of steps at several settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from kernel_attention import DEFAULT_N_RANDOM
from summarizer.decode import summarize
from summarizer.evaluate import rouge
from summarizer.model import Summarizer
from summarizer.pipeline import PreparedCorpus, build_model
from summarizer.settings import RunSettings
from summarizer.train import TrainHistory, train_model


@dataclass
class SweepRun:
    """One trained model of the sweep: its settings, loss curves and greedy ROUGE on the first test articles."""

    name: str
    attention: str
    n_random: int | None
    lr: float
    history: TrainHistory
    model: Summarizer
    rouge: dict[str, float]


def sweep_settings(lrs: Sequence[float], n_randoms: Sequence[int]) -> list[tuple[str, int | None, float]]:
    """(attention, n_random, lr) of every run: softmax at each lr, Performer at each (n_random, lr)."""
    runs = [("softmax", None, lr) for lr in lrs]
    return runs + [("performer", n_random, lr) for n_random in n_randoms for lr in lrs]


def attention_sweep(corpus: PreparedCorpus, run: RunSettings, *, steps: int, lrs: Sequence[float],
                    n_randoms: Sequence[int], n_rouge: int = 300, seed: int = 0, progress: bool = True,
                    device: torch.device | str = "cpu") -> list[SweepRun]:
    """Train every setting of sweep_settings for `steps` steps on the same batches (same seed), then score it.

    Equal steps, data order and initial seed make the comparison fair; the models are the main architecture at the
    smaller widths run.sweep_d_model / run.sweep_d_ff, without dropout. ROUGE: greedy decoding of the first
    `n_rouge` test articles. The models train on `device` (the notebook's: CUDA when present).
    """
    results = []
    articles, references = corpus.test_articles[:n_rouge], corpus.test_summaries[:n_rouge]
    for attention, n_random, lr in sweep_settings(lrs, n_randoms):
        name = f"{attention}" + (f" D_random={n_random}" if n_random else "") + f" lr={lr:g}"
        torch.manual_seed(seed)
        model = build_model(run, corpus.tokenizer.get_vocab_size(), attention=attention,
                            n_random=n_random or DEFAULT_N_RANDOM,
                            d_model=run.sweep_d_model, d_ff=run.sweep_d_ff, dropout=0.0).to(device)  # < 1 epoch
        history = train_model(model, corpus.train, corpus.validation, steps=steps, batch_size=run.batch_size, lr=lr,
                              warmup=max(1, steps // 10), eval_every=max(1, steps // 5), seed=seed, desc=name,
                              progress=progress)
        scores = rouge(summarize(model, corpus.tokenizer, articles, method="greedy"), references)
        results.append(SweepRun(name, attention, n_random, lr, history, model, scores))
    return results


def sweep_table(results: Sequence[SweepRun]) -> pd.DataFrame:
    """One row per run: final / best validation loss, ROUGE-1/2/L (greedy), training seconds."""
    rows = [{"run": r.name, "attention": r.attention, "D_random": r.n_random, "lr": r.lr,
             "final val loss": r.history.val_loss[-1], "best val loss": min(r.history.val_loss),
             "ROUGE-1": r.rouge["rouge1"], "ROUGE-2": r.rouge["rouge2"], "ROUGE-L": r.rouge["rougeL"],
             "train seconds": r.history.seconds} for r in results]
    return pd.DataFrame(rows).set_index("run").round(3)
