"""Run sizes of the summarization notebook: the full default run and the `HW8_FAST=1` smoke run (same code path).

The environment flags themselves (HW8_FAST, HW8_THREADS, ...) are read by the top-level `run_flags`.
"""

from __future__ import annotations

from dataclasses import dataclass

import run_flags
from summarizer.data import CORPUS


@dataclass(frozen=True)
class RunSettings:
    """Every size the notebook uses; `settings()` picks the full or the fast set.

    max_train / max_validation: pairs kept per split (None = all); n_eval_test: size of the fixed random test subset
    scored with ROUGE; steps: optimizer steps of the main model; dropout: the main model's dropout (its 3.8 passes over
    the train split overfit without it); sweep_*: the smaller models of the 1(g)
    sweep (sweep_steps steps each, widths sweep_d_model / sweep_d_ff, every pair of sweep_lrs x attention settings).
    """

    fast: bool
    vocab_size: int
    max_train: int | None
    max_validation: int | None
    n_eval_test: int
    d_model: int
    d_ff: int
    n_layers: int
    dropout: float
    batch_size: int
    steps: int
    eval_every: int
    lr: float
    warmup: int
    beam_size: int
    sweep_steps: int
    sweep_d_model: int
    sweep_d_ff: int
    sweep_lrs: tuple[float, ...]
    sweep_n_random: tuple[int, ...]
    checkpoint: str
    val_loss_threshold: float


FULL = RunSettings(
    fast=False, vocab_size=8000, max_train=None, max_validation=2000, n_eval_test=1000,
    d_model=128, d_ff=512, n_layers=2, dropout=0.1, batch_size=64, steps=3200, eval_every=400, lr=2e-3, warmup=150,
    beam_size=4, sweep_steps=200, sweep_d_model=64, sweep_d_ff=256, sweep_lrs=(1e-3, 3e-3), sweep_n_random=(16, 64),
    checkpoint="checkpoints/summarizer.pt", val_loss_threshold=CORPUS["val_loss_threshold"]["full"],
)

FAST = RunSettings(
    fast=True, vocab_size=1000, max_train=2000, max_validation=200, n_eval_test=100,
    d_model=64, d_ff=128, n_layers=1, dropout=0.1, batch_size=32, steps=60, eval_every=20, lr=3e-3, warmup=10,
    beam_size=2, sweep_steps=15, sweep_d_model=64, sweep_d_ff=128, sweep_lrs=(1e-3, 3e-3), sweep_n_random=(8, 16),
    checkpoint="build/checkpoints/summarizer_fast.pt", val_loss_threshold=CORPUS["val_loss_threshold"]["fast"],
)


def settings() -> RunSettings:
    """The run sizes for this process: FAST when HW8_FAST=1, else FULL."""
    return FAST if run_flags.fast() else FULL


RESULTS_DIR = "build/summarizer"


def results_path(run: RunSettings, precision: str) -> str:
    """Where the notebook saves a run's measured numbers for `make bench` (bench/time_to_quality.py):
    build/summarizer/results.<full|fast>-<fp32|bf16>.json: one file per mode, float32 and bf16 runs side by side."""
    return f"{RESULTS_DIR}/results.{'fast' if run.fast else 'full'}-{precision}.json"


def configure_threads() -> str:
    """Set torch's CPU threads from HW8_THREADS when given; otherwise training picks the count by timing its own
    steps (`summarizer.threads`: fewer threads when another program keeps a core busy). Returns what is in effect."""
    import torch

    threads = run_flags.threads()
    if threads is not None:
        torch.set_num_threads(threads)
        return f"{threads} (HW8_THREADS)"
    return f"{torch.get_num_threads()}, re-chosen during training by timing its steps"


def graded_checkpoint() -> tuple[str, float]:
    """(path, validation-loss threshold) checked by the notebook's saved-model test: this run's own checkpoint with its
    own threshold (fast mode: the tiny model just trained, build/checkpoints/summarizer_fast.pt). The autograder
    scores the submitted checkpoints/summarizer.pt itself, under the full run's threshold."""
    run = settings()
    return run.checkpoint, run.val_loss_threshold
