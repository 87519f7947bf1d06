"""The shipped Debian summarization corpus (data/) and its loader (summarizer/data.py)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import importlib.util  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from summarizer.data import DATA_DIR, SPLITS, corpus_files, load_corpus, load_stats  # noqa: E402

README = DATA_DIR / "README.md"


def load_build_script():
    """data/build_corpus.py as a module (data/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_corpus", DATA_DIR / "build_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def key(text):
    """Case- and punctuation-blind form of a text (independent of the build script's own normalisation)."""
    return " ".join(re.findall(r"\w+", text.lower()))


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(fast=False)


@pytest.fixture(scope="module")
def stats():
    return load_stats()


@pytest.fixture(scope="module")
def columns(corpus):
    """{split: {column: list}}: one Arrow-to-Python conversion per split (iterating a Column row by row is slow)."""
    return {split: corpus[split][:] for split in SPLITS}


@pytest.fixture(scope="module")
def article_keys(columns):
    return {split: [key(a) for a in columns[split]["article"]] for split in SPLITS}


@pytest.fixture(scope="module")
def split_of_package(columns):
    return {package: split for split in SPLITS for package in columns[split]["package"]}


def copy_corpus(target: Path) -> dict:
    """Copy the shipped files into target; return the copied paths by role."""
    copied = {}
    for role, path in corpus_files().items():
        copied[role] = Path(shutil.copy(path, target / path.name))
    return copied


def test_split_sizes_match_stats_file_and_readme(corpus, stats):
    assert list(corpus) == list(SPLITS)
    readme = README.read_text(encoding="utf-8")
    for split in SPLITS:
        n = stats["splits"][split]["examples"]
        assert len(corpus[split]) == n
        assert f"{n:,}" in readme, f"data/README.md does not state the {split} size {n:,}"
    assert sum(len(corpus[s]) for s in SPLITS) == stats["examples"]
    assert len(corpus["train"]) > 0.85 * stats["examples"]
    for split in ("validation", "test"):
        assert 0.03 * stats["examples"] < len(corpus[split]) < 0.07 * stats["examples"]


def test_columns_and_no_empty_or_degenerate_pairs(corpus, columns, article_keys):
    for split in SPLITS:
        assert {"article", "summary", "package", "family"} <= set(corpus[split].column_names)
        for article, summary, article_key in zip(columns[split]["article"], columns[split]["summary"],
                                                 article_keys[split]):
            assert summary.strip() and article.strip()
            assert len(article.split()) >= 10
            assert article_key != key(summary)


def test_no_article_shared_between_splits(columns, article_keys):
    seen = {}
    for split in SPLITS:
        for article, k in zip(columns[split]["article"], article_keys[split]):
            assert seen.setdefault(k, split) == split, f"article in {seen[k]} and {split}: {article[:80]!r}"
    assert len(seen) == sum(len(columns[s]["article"]) for s in SPLITS), "duplicate article inside a split"


def test_no_family_source_or_sibling_shared_between_splits(columns, split_of_package):
    for column in ("family", "source"):
        splits_of = defaultdict(set)
        for split in SPLITS:
            for value in columns[split][column]:
                splits_of[value].add(split)
        crossing = {v: s for v, s in splits_of.items() if len(s) > 1}
        assert not crossing, f"{column}s in several splits: {list(crossing.items())[:5]}"
    # -dev / -doc / -dbg siblings and python3- bindings of a package sit in its split (checked on names directly).
    for package, split in split_of_package.items():
        for sibling in (package + "-dev", package + "-doc", package + "-dbg", "python3-" + package):
            assert split_of_package.get(sibling, split) == split, (package, sibling)


def test_near_identical_openings_stay_in_one_split(columns):
    """Articles whose whole first paragraph (>= 12 words) is identical are near-duplicates: one split only."""
    splits_of = defaultdict(set)
    for split in SPLITS:
        for article in columns[split]["article"]:
            opening = key(article.split("\n")[0])
            if len(opening.split()) >= 12:
                splits_of[opening].add(split)
    crossing = [o for o, s in splits_of.items() if len(s) > 1]
    assert not crossing, crossing[:3]


def test_text_is_cleaned(columns):
    for split in SPLITS:
        for text in columns[split]["article"]:
            lines = text.split("\n")
            assert all(line == line.strip() and line and line != "." for line in lines), repr(text[:200])
            assert "  " not in text and "\t" not in text and not any(line.endswith(" .") for line in lines)
        for summary in columns[split]["summary"]:
            assert "\n" not in summary and summary == summary.strip() and "  " not in summary


def test_cleaning_of_a_debian_description():
    build = load_build_script()
    raw = """Real-time strategy game
 0 A.D. is a free, open-source
 real-time   strategy game .
 .
 Supported operations include:
  * generating and unpacking
    FIASCO images
  - editing packages
   o and (o-bullet) firmware
 .
 Supported are the N800 and N9."""
    lines = raw.split("\n")
    assert build.squash(lines[0]) == "Real-time strategy game"
    assert build.clean_long_description(lines[1:]) == (
        "0 A.D. is a free, open-source real-time strategy game.\n"
        "Supported operations include:\n"
        "- generating and unpacking FIASCO images\n"
        "- editing packages\n"
        "- and (o-bullet) firmware\n"
        "Supported are the N800 and N9."
    )


def test_family_helpers():
    build = load_build_script()
    assert build.name_stem("libfoo2.4-dev") == build.name_stem("python3-foo") == build.name_stem("foo-doc") == "foo"
    assert build.name_stem("libghc-aeson-prof") == "aeson"
    assert build.direct_siblings("python3-foo-doc") >= {"python3-foo", "foo"}
    assert {build.split_of(f"family{i}") for i in range(200)} == set(SPLITS)
    assert build.split_of("big", family_size=build.MAX_HELD_OUT_FAMILY + 1) == "train"
    assert build.split_of("family7") == build.split_of("family7")


def test_stats_file_numbers_are_measured(columns, stats):
    for split in SPLITS:
        article_words = [len(a.split()) for a in columns[split]["article"]]
        summary_words = [len(s.split()) for s in columns[split]["summary"]]
        assert stats["article_words"][split]["mean"] == pytest.approx(statistics.fmean(article_words), abs=0.05)
        assert stats["article_words"][split]["median"] == statistics.median(article_words)
        assert stats["summary_words"][split]["mean"] == pytest.approx(statistics.fmean(summary_words), abs=0.05)
        assert stats["article_words"][split]["max"] == max(article_words)
    readme = README.read_text(encoding="utf-8")
    lead10 = stats["lead_rouge_test"]["lead_10"]
    assert f"{lead10['rouge1']} / {lead10['rouge2']} / {lead10['rougeL']}" in readme


def test_max_examples_and_fast_mode(corpus, columns, monkeypatch):
    small = load_corpus(max_examples={"train": 50, "validation": 7})
    assert (len(small["train"]), len(small["validation"]), len(small["test"])) == (50, 7, len(corpus["test"]))
    picked = small["train"][:]["package"]
    assert picked == load_corpus(max_examples={"train": 50, "validation": 7})["train"][:]["package"]
    assert set(picked) <= set(columns["train"]["package"])
    assert picked != columns["train"]["package"][:50], "the subset should be random, not the head of the file"
    assert load_corpus(max_examples=5, seed=1)["train"][:]["package"] != picked[:5]
    monkeypatch.setenv("HW8_FAST", "1")
    fast = load_corpus()
    assert [len(fast[s]) for s in SPLITS] == [2000, 200, 200]
    with pytest.raises(ValueError, match="unknown splits"):
        load_corpus(max_examples={"dev": 3})


def test_missing_file_error_names_file_and_fix(tmp_path):
    copied = copy_corpus(tmp_path)
    copied["validation"].unlink()
    with pytest.raises(FileNotFoundError, match=r"debian_descriptions\.validation\.jsonl\.gz.*build_corpus\.py"):
        load_corpus(data_dir=tmp_path)
    copied["stats"].unlink()
    with pytest.raises(FileNotFoundError, match=r"debian_descriptions\.stats\.json.*build_corpus\.py"):
        load_corpus(data_dir=tmp_path)


def test_corrupt_file_error_names_file_and_fix(tmp_path):
    copied = copy_corpus(tmp_path)
    data = bytearray(copied["test"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    copied["test"].write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"debian_descriptions\.test\.jsonl\.gz.*corrupt.*build_corpus\.py"):
        load_corpus(data_dir=tmp_path)
    copied["stats"].write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"debian_descriptions\.stats\.json.*corrupt.*build_corpus\.py"):
        load_corpus(data_dir=tmp_path)


def test_copied_corpus_loads_from_data_dir_without_progress_bars(tmp_path, capfd):
    """A folder loaded for the first time is converted into datasets' cache; its progress bars (of unknown length)
    would make a notebook's output differ between a fresh machine and later runs: none is shown."""
    copy_corpus(tmp_path)
    small = load_corpus(data_dir=tmp_path, max_examples=3)
    assert [len(small[s]) for s in SPLITS] == [3, 3, 3]
    assert "split" not in capfd.readouterr().err
