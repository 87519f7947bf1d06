"""summarizer.threads: the training loop's thread count follows measured step times, and follows them again when the
load changes; HW8_THREADS, CUDA or a single thread leave nothing to choose."""

import pytest
import torch

from summarizer.batching import EncodedPairs
from summarizer.model import Summarizer, SummarizerConfig
from summarizer.threads import ThreadChooser, thread_candidates
from summarizer.tokenizer import BOS_ID, EOS_ID
from summarizer.train import train_model


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def run_steps(chooser, n, seconds_per_work):
    """Drive `chooser` for n steps whose cost per unit of work is seconds_per_work[threads in use]; the threads used."""
    used = []
    for i in range(n):
        chooser.before_step()
        threads = torch.get_num_threads()
        used.append(threads)
        work = 100 + 50 * (i % 3)  # batches of different sizes: compared per unit of work
        chooser.after_step(seconds_per_work[threads] * work, work)
    return used


def test_candidates_are_all_half_and_one():
    assert thread_candidates(16) == [16, 8, 1]
    assert thread_candidates(2) == [2, 1]
    assert thread_candidates(1) == [1]


def test_the_faster_count_is_kept_and_chosen_again_when_the_load_changes():
    chooser = ThreadChooser([2, 1], probe_steps=4, recheck_every=20)
    used = run_steps(chooser, 10, {2: 1.0, 1: 2.0})          # quiet: two threads are faster
    assert used == [2] * 5 + [1] * 5 and chooser.choices == [2]
    used = run_steps(chooser, 20, {2: 3.0, 1: 2.0})          # busy: two threads now wait for each other
    assert used == [2] * 20 and chooser.choices == [2]          # until the next trial, the last choice holds
    used = run_steps(chooser, 20, {2: 3.0, 1: 2.0})
    assert used[:10] == [2] * 5 + [1] * 5 and chooser.choices == [2, 1] and used[10:] == [1] * 10


def test_the_first_step_after_a_switch_is_not_counted():
    chooser = ThreadChooser([2, 1], probe_steps=2, recheck_every=50)
    times = iter([100.0, 1.0, 1.0, 100.0, 2.0, 2.0])          # first steps of each candidate: 100x (warm-up, switch)
    for _ in range(6):
        chooser.before_step()
        chooser.after_step(next(times), 1)
    assert chooser.choices == [2]


def test_nothing_to_choose_on_cuda_with_one_thread_or_with_hw8_threads(monkeypatch):
    torch.set_num_threads(2)
    assert ThreadChooser.for_device(torch.device("cpu")).candidates == [2, 1]
    assert ThreadChooser.for_device(torch.device("cuda")) is None
    monkeypatch.setenv("HW8_THREADS", "2")
    assert ThreadChooser.for_device(torch.device("cpu")) is None
    monkeypatch.delenv("HW8_THREADS")
    torch.set_num_threads(1)
    assert ThreadChooser.for_device(torch.device("cpu")) is None


def test_train_model_times_its_steps_with_the_chooser(monkeypatch):
    """Every training step goes through the chooser with its tokens as work; its choice stays after training."""
    recorded = []

    class Recording(ThreadChooser):
        def after_step(self, seconds, work):
            recorded.append((seconds, work))
            super().after_step(seconds, work)

    monkeypatch.setattr("summarizer.train.ThreadChooser", Recording)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = SummarizerConfig(vocab_size=40, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32,
                           dropout=0.0, max_target_len=8)
    pairs = EncodedPairs([[5, 6, 7], [8, 9, 10, 11]], [[BOS_ID, 5, EOS_ID], [BOS_ID, 9, 10, EOS_ID]])
    train_model(Summarizer(cfg), pairs, pairs, steps=12, batch_size=2, progress=False, precision="fp32")
    assert len(recorded) == 12 and all(s > 0 and w == 2 * 4 + 2 * 3 for s, w in recorded)
    assert torch.get_num_threads() in (2, 1)
