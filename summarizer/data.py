"""The summarization corpus: (article, summary) pairs as a Hugging Face `DatasetDict` (train / validation / test).

Default (offline): Debian package descriptions shipped in `data/` (summary = a package's one-line synopsis,
article = its long description; provenance and statistics in data/README.md). It is the only source: the course's
settings, thresholds and worked answers are measured on it (a hub news corpus would need all of them redone).

    from summarizer.data import load_corpus
    corpus = load_corpus()                                  # DatasetDict: train / validation / test
    corpus["train"][0]["article"], corpus["train"][0]["summary"]
    small = load_corpus(max_examples={"train": 2000, "validation": 200})   # seeded random subsets

Every split has string columns `article` and `summary`; the Debian corpus also has `package`, `source` (Debian
source package) and `family` (the group of sibling packages kept inside one split).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping
from pathlib import Path

import run_flags

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
# What the code needs to know about the shipped corpus (its file names, its id column, the 1(e) example, the grading
# threshold): data/corpus.json, so that a swap of corpus changes the data folder, this loader and the notebook prose.
CORPUS = json.loads((DATA_DIR / "corpus.json").read_text(encoding="utf-8"))
CORPUS_PREFIX = CORPUS["name"]
SPLITS = ("train", "validation", "test")
REBUILD_HINT = ("rebuild it with `python data/build_corpus.py --update` (as root; see data/README.md) "
                "or restore it with `git checkout -- data/`")
# Sizes used when HW8_FAST=1 (or fast=True) and no max_examples is given.
FAST_MAX_EXAMPLES = {"train": 2000, "validation": 200, "test": 200}


def corpus_files(data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Paths of the shipped files: {"train": ..., "validation": ..., "test": ..., "stats": ...} (not checked)."""
    root = Path(data_dir) if data_dir is not None else DATA_DIR
    files = {split: root / f"{CORPUS_PREFIX}.{split}.jsonl.gz" for split in SPLITS}
    files["stats"] = root / f"{CORPUS_PREFIX}.stats.json"
    return files


def load_stats(data_dir: str | os.PathLike | None = None) -> dict:
    """The build's statistics (split sizes, file sha256, length / overlap / Lead-k numbers) from the stats JSON."""
    path = corpus_files(data_dir)["stats"]
    if not path.is_file():
        raise FileNotFoundError(f"corpus statistics file {path} is missing; {REBUILD_HINT}")
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
        missing = [f"splits.{split}.{key}" for split in SPLITS for key in ("examples", "sha256")
                   if key not in stats["splits"][split]]
        if missing:
            raise KeyError(", ".join(missing))
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"corpus statistics file {path} is corrupt ({err!r}); {REBUILD_HINT}") from err
    return stats


def check_corpus_files(data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Verify that every split file exists and matches the sha256 in the stats JSON; return the split paths.

    Raises FileNotFoundError (missing file) or ValueError (corrupt file), naming the file and how to rebuild it.
    """
    files = corpus_files(data_dir)
    stats = load_stats(data_dir)
    for split in SPLITS:
        if not files[split].is_file():
            raise FileNotFoundError(f"corpus file {files[split]} ({split} split) is missing; {REBUILD_HINT}")
    for split in SPLITS:
        digest = hashlib.sha256(files[split].read_bytes()).hexdigest()
        if digest != stats["splits"][split]["sha256"]:
            raise ValueError(f"corpus file {files[split]} ({split} split) is corrupt: sha256 {digest[:12]}... differs "
                             f"from {files['stats'].name}; {REBUILD_HINT}")
    return {split: files[split] for split in SPLITS}


def _load_debian(data_dir):
    """The shipped Debian corpus as a DatasetDict, after checking files against the stats JSON."""
    import datasets

    paths = check_corpus_files(data_dir)
    expected = load_stats(data_dir)["splits"]
    # The first load of a folder converts it into datasets' cache (a second or two) behind progress bars of unknown
    # length; without them a notebook's output is the same on a fresh machine and afterwards.
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        corpus = datasets.load_dataset("json", data_files={split: str(path) for split, path in paths.items()})
    except Exception as err:  # datasets wraps parse errors in several exception types
        raise ValueError(f"could not read the corpus files in {paths['train'].parent} ({err}); {REBUILD_HINT}") from err
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    for split in SPLITS:
        if len(corpus[split]) != expected[split]["examples"]:
            raise ValueError(f"corpus file {paths[split]} has {len(corpus[split])} rows, the stats JSON says "
                             f"{expected[split]['examples']}; {REBUILD_HINT}")
    return corpus


def shrink(corpus, max_examples: int | Mapping[str, int | None] | None, seed: int = 0):
    """Keep a seeded random subset of at most max_examples rows per split (dict: per split; None: all), in order."""
    from datasets import DatasetDict

    if max_examples is None:
        return corpus
    limits = max_examples if isinstance(max_examples, Mapping) else {split: max_examples for split in corpus}
    unknown = set(limits) - set(corpus)
    if unknown:
        raise ValueError(f"max_examples names unknown splits {sorted(unknown)}; splits are {list(corpus)}")
    out = {}
    for split, dataset in corpus.items():
        limit = limits.get(split)
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"max_examples[{split!r}] must be a positive int or None, got {limit!r}")
        if limit is None or limit >= len(dataset):
            out[split] = dataset
        else:
            keep = sorted(random.Random(f"{seed}:{split}").sample(range(len(dataset)), limit))
            out[split] = dataset.select(keep)
    return DatasetDict(out)


def load_corpus(
    *,
    data_dir: str | os.PathLike | None = None,
    max_examples: int | Mapping[str, int | None] | None = None,
    fast: bool | None = None,
    seed: int = 0,
):
    """Load the summarization corpus as a `datasets.DatasetDict` with splits train / validation / test.

    data_dir: the folder of the corpus files (default: the repository's data/).
    max_examples: keep a seeded random subset of at most this many rows per split (an int for every split, or a
        dict such as {"train": 2000, "validation": 200}; missing or None = the whole split).
    fast: shrink to FAST_MAX_EXAMPLES when max_examples is not given; None reads HW8_FAST from the environment.
    Columns: `article`, `summary` (str); the Debian corpus adds `package`, `source`, `family`.
    Raises FileNotFoundError / ValueError naming the missing or corrupt file and how to rebuild it.
    """
    corpus = _load_debian(data_dir)
    if fast is None:
        fast = run_flags.fast()
    if max_examples is None and fast:
        max_examples = FAST_MAX_EXAMPLES
    return shrink(corpus, max_examples, seed=seed)
