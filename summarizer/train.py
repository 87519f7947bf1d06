"""Training loop: AdamW, linear warm-up then cosine decay, gradient clipping, tqdm, periodic validation loss.

Mixed precision: where the hardware multiplies bfloat16 natively (CUDA GPUs with bf16, CPUs with AVX512-BF16 or AMX)
the forward pass runs under `torch.autocast(dtype=torch.bfloat16)`: matrix products in bf16, weights, optimizer and
losses in float32. On this repository's 2-core CPU it made a step 1.7x faster while nn.Dropout's masks were slow;
with FastDropout it measures about even with float32 there. The loss agrees with float32's to bf16 rounding
(tests/test_summarizer.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

import run_flags
from summarizer.batching import EncodedPairs, iterate_batches, sequential_batches
from summarizer.model import Summarizer
from summarizer.threads import ThreadChooser
from summarizer.tokenizer import PAD_ID

HISTORY_KEYS = ("steps", "train_loss", "val_steps", "val_loss", "seconds", "precision")


@dataclass
class TrainHistory:
    """Loss curves of one run: train loss per step, validation loss at eval steps, wall-clock seconds, and the
    precision it trained in ("fp32", or "bf16" for bf16 autocast)."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    precision: str = "fp32"

    def curves(self, smooth: int = 25) -> dict[str, list[tuple[int, float]]]:
        """{"train loss (moving avg)": [(step, loss)], "validation loss": [(step, loss)]} for
        figures.plot_training_curves; the train loss is averaged over the last `smooth` steps."""
        k = max(1, min(smooth, len(self.train_loss)))
        avg = [sum(self.train_loss[i - k + 1:i + 1]) / k for i in range(k - 1, len(self.train_loss))]
        return {"train loss (moving avg)": list(zip(self.steps[k - 1:], avg)),
                "validation loss": list(zip(self.val_steps, self.val_loss))}

    @classmethod
    def from_dict(cls, d: dict) -> TrainHistory:
        """Inverse of to_dict (e.g. the history stored in a checkpoint)."""
        return cls(**{k: d[k] for k in HISTORY_KEYS if k in d})

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in HISTORY_KEYS}


PRECISIONS = run_flags.PRECISIONS  # the values of HW8_PRECISION and of train(precision=)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for training on `device`: torch.bfloat16, or None for plain float32.

    precision "auto" picks bf16 only where it is native (emulated bf16 is slower than float32), "bf16" / "fp32" force.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {PRECISIONS}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":          # native bf16 from Ampere (8.0) on; a T4 (7.5) only emulates it: float32
        return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else None
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None


def precision_name(dtype: torch.dtype | None) -> str:
    """How a history and a results file name the precision of an autocast dtype: "bf16", or "fp32" for None."""
    return "fp32" if dtype is None else "bf16"


def cpu_has_native_bf16() -> bool:
    """True if the CPU has AVX512-BF16 or AMX-BF16 instructions (torch's own report where it has one: torch < 2.8
    lacks torch.cpu.get_capabilities, so Linux's /proc/cpuinfo flags are read instead; elsewhere False)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        caps = get()
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def lr_factor(step: int, warmup: int, total: int, floor: float = 0.1) -> float:
    """Learning-rate multiplier: linear warm-up over `warmup` steps, then cosine decay to `floor` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def validation_loss(model: Summarizer, pairs: EncodedPairs, batch_size: int = 128) -> float:
    """Mean NLL per target token over all pairs (eval mode, no dropout)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for src, tgt_in, tgt_out in sequential_batches(pairs, batch_size, model.device):
        total += model.token_nll(src, tgt_in, tgt_out).sum().item()
        count += int((tgt_out != PAD_ID).sum())
    model.train(was_training)
    return total / max(count, 1)


def train_model(model: Summarizer, train_pairs: EncodedPairs, val_pairs: EncodedPairs, *, steps: int,
                batch_size: int = 64, lr: float = 2e-3, warmup: int = 100, weight_decay: float = 0.01,
                clip: float = 1.0, eval_every: int = 200, seed: int = 0, desc: str = "train",
                progress: bool = True, precision: str | None = None) -> TrainHistory:
    """Train `model` in place for `steps` AdamW steps; validation loss (float32) every `eval_every` steps and at the
    end.

    precision: "auto" (bf16 autocast where native, see `autocast_dtype`), "bf16" or "fp32"; None: HW8_PRECISION.
    On a CPU, torch's thread count is chosen by timing the steps (`summarizer.threads`) unless HW8_THREADS is set; the
    last choice stays in effect after training.
    """
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    dtype = autocast_dtype(model.device, run_flags.precision() if precision is None else precision)
    torch.manual_seed(seed)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98),
                            fused=model.device.type in ("cpu", "cuda"))  # one kernel for all parameters
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, steps))
    history = TrainHistory(precision=precision_name(dtype))
    batches = iterate_batches(train_pairs, batch_size, seed, model.device)
    chooser = ThreadChooser.for_device(model.device)
    start = time.perf_counter()
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress, mininterval=2.0)
    for step in bar:
        src, tgt_in, tgt_out = next(batches)
        if chooser:
            chooser.before_step()
            step_start = time.perf_counter()
        with torch.autocast(model.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model.loss(src, tgt_in, tgt_out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        history.steps.append(step)
        history.train_loss.append(loss.item())
        if chooser:
            chooser.after_step(time.perf_counter() - step_start, src.numel() + tgt_in.numel())
        if step % eval_every == 0 or step == steps:
            history.val_steps.append(step)
            history.val_loss.append(validation_loss(model, val_pairs))
            bar.set_postfix(train=f"{loss.item():.3f}", val=f"{history.val_loss[-1]:.3f}",
                            threads=torch.get_num_threads())
    history.seconds = time.perf_counter() - start
    model.eval()
    return history
