"""Torch CPU threads chosen by timing the training steps themselves, and chosen again as the machine's load changes.

On a quiet 2-core machine two threads make a training step ~1.7x faster than one; when another program keeps a core
busy, the two threads wait for each other at every parallel region and a step became 1.7x *slower* than with one
thread (measured in summarizer/RESULTS.md). No fixed count is right for both, so `ThreadChooser` tries each candidate
for a few real steps (no extra work: the steps train the model as usual), keeps the fastest per token, and repeats
the trial every `recheck_every` steps. HW8_THREADS, when set, fixes the count instead.
"""

from __future__ import annotations

import statistics

import torch

import run_flags


def thread_candidates(available: int) -> list[int]:
    """The counts tried, largest first: all of torch's threads, half of them, one."""
    return sorted({available, max(1, available // 2), 1}, reverse=True)


class ThreadChooser:
    """Picks torch's CPU thread count for a loop of similar steps from their measured seconds per unit of work.

    Use: `chooser.before_step()` (sets the count for the coming step), run the step, then
    `chooser.after_step(seconds, work)` with work ~ the step's cost (e.g. its tokens). Each trial runs `probe_steps` + 1
    steps per candidate (the first after a switch is not counted) and compares medians of seconds / work.
    """

    def __init__(self, candidates: list[int], probe_steps: int = 4, recheck_every: int = 200):
        if not candidates or min(candidates) < 1:
            raise ValueError(f"thread candidates must be positive integers, got {candidates}")
        self.candidates = list(candidates)
        self.probe_steps = probe_steps
        self.recheck_every = recheck_every
        self.current = self.candidates[0]
        self.choices: list[int] = []  # the count picked by each trial, in order
        self._start_trial()

    @classmethod
    def for_device(cls, device: torch.device, **kwargs) -> ThreadChooser | None:
        """A chooser for training on `device`, or None where there is nothing to choose (CUDA, one thread, or
        HW8_THREADS set)."""
        if device.type != "cpu" or run_flags.threads() is not None or torch.get_num_threads() < 2:
            return None
        return cls(thread_candidates(torch.get_num_threads()), **kwargs)

    def _start_trial(self):
        self._queue = list(self.candidates)
        self._samples: dict[int, list[float]] = {n: [] for n in self.candidates}
        self._skip_next = True
        self._until_trial = None

    def before_step(self):
        """Set torch's thread count for the next step."""
        wanted = self._queue[0] if self._queue else self.current
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)

    def after_step(self, seconds: float, work: float):
        """Record the step just run: its wall-clock seconds and its amount of work (> 0)."""
        if not self._queue:
            self._until_trial -= 1
            if self._until_trial <= 0:
                self._start_trial()
            return
        if self._skip_next:  # the first step after a switch (or the loop's first step) pays for the change
            self._skip_next = False
            return
        trying = self._queue[0]
        self._samples[trying].append(seconds / max(work, 1e-9))
        if len(self._samples[trying]) < self.probe_steps:
            return
        self._queue.pop(0)
        self._skip_next = True
        if not self._queue:
            self.current = min(self.candidates, key=lambda n: statistics.median(self._samples[n]))
            self.choices.append(self.current)
            self._until_trial = self.recheck_every
