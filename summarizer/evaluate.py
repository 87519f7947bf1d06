"""ROUGE-1/2/L (rouge-score, stemming) of model summaries against the Lead baseline, and an examples table."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def lead_summary(article: str, n_words: int = 10) -> str:
    """Lead baseline: the first `n_words` whitespace-separated words of the article."""
    return " ".join(article.split()[:n_words])


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (x100) of predictions against references (rouge-score, use_stemmer=True)."""
    if len(predictions) != len(references) or not references:
        raise ValueError(f"need equally many predictions and references, got {len(predictions)} / {len(references)}")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, ref in zip(predictions, references):
        for name, score in scorer.score(ref, pred).items():
            totals[name] += score.fmeasure
    return {name: 100 * total / len(references) for name, total in totals.items()}


def rouge_table(systems: dict[str, Sequence[str]], references: Sequence[str]) -> pd.DataFrame:
    """One row per system (e.g. {"Lead-10": [...], "model (beam)": [...]}) with ROUGE-1/2/L columns."""
    rows = {name: rouge(preds, references) for name, preds in systems.items()}
    return pd.DataFrame.from_dict(rows, orient="index").round(1).rename(
        columns={"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"})


def examples_table(articles: Sequence[str], references: Sequence[str], systems: dict[str, Sequence[str]],
                   n: int = 5, article_chars: int = 300) -> pd.DataFrame:
    """The first n examples: article (shortened), reference and each system's summary."""
    data = {"article": [a[:article_chars] + ("…" if len(a) > article_chars else "") for a in articles[:n]],
            "reference": list(references[:n])}
    data.update({name: list(preds[:n]) for name, preds in systems.items()})
    return pd.DataFrame(data)
