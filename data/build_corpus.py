"""Rebuild the Debian package-description summarization corpus shipped in data/.

Each example is a real, human-written (article, summary) pair from Debian's package metadata:
the summary is a package's one-line synopsis, the article its cleaned long description.

    python data/build_corpus.py --update   # as root: apt-get update into a private lists dir, then build
    python data/build_corpus.py            # reuse lists already there (--lists-dir, default build/apt-lists
                                           # if it exists, else /var/lib/apt/lists)
writes data/debian_descriptions.{train,validation,test}.jsonl.gz and data/debian_descriptions.stats.json.

Steps (deterministic: same input lists give byte-identical output files):
1. read `Translation-en` (Package, Description-md5, Description-en) and `Packages` (Package -> Source) of one suite
   from apt's lists directory, and check both against the sha256 sums in the suite's InRelease file;
2. clean the long description (` .` paragraph markers, bullet lists, whitespace), drop degenerate pairs
   (article < MIN_ARTICLE_WORDS words, empty summary, article == summary);
3. deduplicate by normalised article text (first package in sorted order wins);
4. group packages into families (same source package, same name stem such as libfoo1/libfoo-dev/python3-foo,
   or the same opening paragraph) and assign each family to train / validation / test (90 / 5 / 5) by a hash of its
   key, so that no article and no near-identical sibling description crosses splits (families of more than
   MAX_HELD_OUT_FAMILY pairs always go to train);
5. write one gzip-compressed JSON-lines file per split and a small stats JSON (counts, lengths, overlap, Lead-k).

Standard library only (ROUGE of the Lead-k baselines uses `rouge-score` when it is installed).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections import Counter, defaultdict

DATA_DIR = os.path.dirname(os.path.abspath(__file__))
PRIVATE_LISTS_DIR = os.path.join(os.path.dirname(DATA_DIR), "build", "apt-lists")  # git-ignored build/
SYSTEM_LISTS_DIR = "/var/lib/apt/lists"
PREFIX = "debian_descriptions"
SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)
MIN_ARTICLE_WORDS = 10
MIN_SHARED_PARAGRAPH_WORDS = 12  # identical opening paragraphs at least this long put two packages in one family
MAX_SOURCES_PER_STEM = 3  # a name stem shared by more source packages is a generic word ("xml", "qt"), not a family
MAX_HELD_OUT_FAMILY = 50  # larger families always go to train (see split_of)
LEAD_K = (8, 10, 15, 20)
HASH_SALT = "hw8-debian-split-v1"

# --------------------------------------------------------------------------------------------------------------
# Reading apt's lists


def find_list_file(lists_dir: str, suite: str, tail: str) -> str:
    """Path of apt's list file `<mirror>_dists_<suite>_<tail>[.lz4|.xz|.gz|...]` in lists_dir (error if absent)."""
    pattern = os.path.join(lists_dir, f"*_dists_{suite}_{tail}*")
    found = sorted(p for p in glob.glob(pattern) if not p.endswith((".diff_Index", ".gpg")))
    if not found:
        raise FileNotFoundError(
            f"no apt list matching {pattern}. Run (as root) `python data/build_corpus.py --update`, which runs "
            f"`apt-get -o Dir::State::Lists={PRIVATE_LISTS_DIR} -o Acquire::Languages=en update`, or pass --lists-dir."
        )
    return found[0]


def read_list_file(path: str) -> bytes:
    """Decompressed bytes of an apt list file (plain, .gz, .xz, or .lz4 via apt-helper)."""
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read()
    if path.endswith(".xz"):
        with lzma.open(path, "rb") as f:
            return f.read()
    if path.endswith((".lz4", ".zst", ".bz2")):
        helper = shutil.which("apt-helper") or "/usr/lib/apt/apt-helper"
        if not os.path.exists(helper):
            raise FileNotFoundError(f"{path} needs /usr/lib/apt/apt-helper (package apt) to decompress")
        return subprocess.run([helper, "cat-file", path], check=True, capture_output=True).stdout
    with open(path, "rb") as f:
        return f.read()


def release_info(inrelease_path: str) -> tuple[dict, dict]:
    """(header fields such as Date/Version/Codename, {relative path: sha256}) from an InRelease file."""
    text = read_list_file(inrelease_path).decode("utf-8")
    header, sums, in_sha256 = {}, {}, False
    for line in text.splitlines():
        if line.startswith("-----BEGIN PGP SIGNATURE"):
            break
        if line.startswith(" ") and in_sha256:
            digest, _size, rel = line.split()
            sums[rel] = digest
        elif ":" in line and not line.startswith(" "):
            key, _, value = line.partition(":")
            in_sha256 = key == "SHA256"
            if key in ("Origin", "Suite", "Version", "Codename", "Date"):
                header[key] = value.strip()
    return header, sums


def apt_update(lists_dir: str) -> None:
    """Fetch the configured suites' InRelease, Packages and Translation-en into lists_dir (a private copy, so a plain
    `apt-get update` elsewhere, which drops Translation-en, cannot remove what the build reads)."""
    os.makedirs(os.path.join(lists_dir, "partial"), exist_ok=True)
    subprocess.run(["apt-get", "-o", f"Dir::State::Lists={lists_dir}", "-o", "Acquire::Languages=en", "update"],
                   check=True)


def parse_deb822(text: str) -> list[dict]:
    """Parse Debian control-style paragraphs; continuation lines keep their leading space (joined by newlines)."""
    records, current, key = [], {}, None
    for line in text.split("\n"):
        if not line.strip():
            if current:
                records.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key is not None:
            current[key] += "\n" + line
        else:
            key, _, value = line.partition(":")
            current[key] = value.strip()
    if current:
        records.append(current)
    return records


# --------------------------------------------------------------------------------------------------------------
# Cleaning

_BULLET = re.compile(r"^(?P<indent>\s*)(?P<mark>[*+\-\u2022\u00b7]|o(?=\s)|\d{1,2}[.)])\s+(?P<text>\S.*)$")
_SPACES = re.compile(r"\s+")


def squash(text: str) -> str:
    """Collapse every run of whitespace (tabs, non-breaking spaces, newlines) to one space and strip."""
    return _SPACES.sub(" ", text).strip()


def clean_long_description(lines: list[str]) -> str:
    """Debian long description (lines after the synopsis, each with its leading field space) -> plain text.

    ` .` lines become paragraph breaks, wrapped lines are joined with one space, bullet items (`*`, `-`, `+`,
    `o`, `1.` ... at any indentation, continued by deeper-indented lines) become lines of their own starting
    with "- ". Paragraphs and bullet items are separated by a single newline; no other whitespace remains.
    """
    blocks: list[str] = []
    current: list[str] = []
    in_item = False

    def flush():
        nonlocal current, in_item
        text = squash(" ".join(current))
        if text.endswith(" ."):  # "... and iWARP ." : a stray space before a block's final full stop
            text = text[:-2].rstrip() + "."
        if text:
            blocks.append(("- " + text) if in_item else text)
        current, in_item = [], False

    for raw in lines:
        line = raw[1:] if raw.startswith(" ") else raw  # the single space that marks a continuation line
        if line.strip() == ".":
            flush()
            continue
        bullet = _BULLET.match(line)
        numbered_unindented = bullet and bullet["mark"][0].isdigit() and not bullet["indent"]
        word_o_unindented = bullet and bullet["mark"] == "o" and not bullet["indent"]
        if bullet and not numbered_unindented and not word_o_unindented:
            flush()
            in_item = True
            current = [bullet["text"]]
        elif in_item and not line.startswith(" "):
            flush()  # an unindented line after a list starts a new paragraph
            current = [line]
        else:
            current.append(line)
    flush()
    return "\n".join(blocks)


def normalise_for_dedup(text: str) -> str:
    """Lower-cased alphanumeric tokens joined by spaces: the key under which two articles count as the same."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def words(text: str) -> list[str]:
    """Whitespace-separated words (the unit of every length statistic in data/README.md)."""
    return text.split()


# --------------------------------------------------------------------------------------------------------------
# Families and splits

_NAME_PREFIXES = (
    "python3-", "python-", "pypy3-", "pypy-", "ruby-", "node-", "php-", "golang-github-", "golang-", "r-cran-",
    "r-bioc-", "libghc-", "haskell-", "elpa-", "lua-", "gir1.2-", "librust-", "libjs-", "libocaml-", "ocaml-",
    "texlive-", "fonts-", "lib",
)  # fmt: skip
_NAME_SUFFIXES = (
    "-dev", "-doc", "-docs", "-dbg", "-dbgsym", "-data", "-common", "-bin", "-utils", "-tools", "-perl", "-java",
    "-prof", "-examples", "-plugins", "-plugin", "-runtime", "-headers", "-static", "-cil", "-udeb", "-tests",
    "-test", "-l10n", "-i18n", "-locales", "-html", "-manual", "-demo", "-lib", "-libs", "-core", "-cli",
)  # fmt: skip
_TRAILING_VERSION = re.compile(r"[-.+_]?[0-9][0-9.+~a-z]*$")


def name_stem(package: str) -> str:
    """Family stem of a binary package name: strip lib/python3-/... prefixes, -dev/-doc/... suffixes, soname digits.

    libfoo2.4-dev -> foo, python3-foo -> foo, foo-doc -> foo, libghc-aeson-prof -> aeson, 2048 -> 2048.
    """
    stem = package.lower()
    for _ in range(3):
        before = stem
        for suffix in _NAME_SUFFIXES:
            if stem.endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
        stripped = _TRAILING_VERSION.sub("", stem)
        if len(stripped) >= 2:
            stem = stripped
        if stem == before:
            break
    for prefix in _NAME_PREFIXES:
        if stem.startswith(prefix) and len(stem) - len(prefix) >= 2:
            stem = stem[len(prefix):]
            break
    stem = _TRAILING_VERSION.sub("", stem) or stem
    return stem if len(stem) >= 2 else package.lower()


SIBLING_SUFFIXES = ("-dev", "-doc", "-dbg", "-data", "-common", "-bin", "-utils", "-tools", "-examples")
SIBLING_PREFIXES = ("python3-", "python-")


def direct_siblings(package: str) -> set[str]:
    """Names a package is an obvious sibling of: foo-dev/foo-doc/... -> foo, python3-foo-doc -> python3-foo, foo."""
    names = set()
    for suffix in SIBLING_SUFFIXES:
        if package.endswith(suffix):
            names.add(package[: -len(suffix)])
    for prefix in SIBLING_PREFIXES:
        if package.startswith(prefix):
            names.update({package[len(prefix):]} | {p[len(prefix):] for p in names if p.startswith(prefix)})
    names.discard("")
    names.discard(package)
    return names


class UnionFind:
    """Disjoint sets over hashable keys; `find` returns the smallest key of a set, so results are order-free."""

    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = min(ra, rb), max(ra, rb)
            self.parent[hi] = lo


def split_of(family: str, family_size: int = 1) -> str:
    """train / validation / test for a family, from a salted sha256 of its key (reproducible, order-independent).

    Families of more than MAX_HELD_OUT_FAMILY examples (templated packs: Qt modules, dictionaries, OCR languages,
    cross compilers) always go to train, so that one template cannot fill a large share of a 5% held-out split.
    """
    if family_size > MAX_HELD_OUT_FAMILY:
        return "train"
    bucket = int(hashlib.sha256(f"{HASH_SALT}:{family}".encode()).hexdigest()[:8], 16) / 16**8
    edge = 0.0
    for split, fraction in zip(SPLITS, SPLIT_FRACTIONS):
        edge += fraction
        if bucket < edge:
            return split
    return SPLITS[-1]


def assign_families(examples: list[dict]) -> None:
    """Set example["family"]: connected component of packages sharing a source, a name stem or an opening paragraph.

    A name stem found under more than MAX_SOURCES_PER_STEM source packages is a generic word ("xml", "json", "qt")
    rather than a sibling and links nothing (otherwise unrelated packages chain into one giant family). An identical
    opening paragraph of at least MIN_SHARED_PARAGRAPH_WORDS words always links: such articles are near-identical.
    """
    links = defaultdict(set)  # link node -> source packages that carry it
    link_of = {}
    for ex in examples:
        nodes = {"stem:" + name_stem(ex["package"]), "stem:" + name_stem(ex["source"])}
        opening = normalise_for_dedup(ex["article"].split("\n", 1)[0])
        if len(opening.split()) >= MIN_SHARED_PARAGRAPH_WORDS:
            nodes.add("para:" + hashlib.sha1(opening.encode()).hexdigest())
        link_of[ex["package"]] = nodes
        for node in nodes:
            links[node].add(ex["source"])
    uf = UnionFind()
    present = {ex["package"] for ex in examples}
    for ex in examples:
        node = "pkg:" + ex["package"]
        uf.union(node, "src:" + ex["source"])
        for sibling in direct_siblings(ex["package"]) & present:
            uf.union(node, "pkg:" + sibling)
        for link in sorted(link_of[ex["package"]]):
            if link.startswith("para:") or len(links[link]) <= MAX_SOURCES_PER_STEM:
                uf.union(node, link)
    members = defaultdict(list)
    for ex in examples:
        members[uf.find("pkg:" + ex["package"])].append(ex["package"])
    family_name = {root: min(pkgs) for root, pkgs in members.items()}
    for ex in examples:
        ex["family"] = family_name[uf.find("pkg:" + ex["package"])]


# --------------------------------------------------------------------------------------------------------------
# Building


def build_examples(translation_text: str, packages_text: str) -> tuple[list[dict], Counter]:
    """Cleaned, filtered, deduplicated examples (sorted by package) and a Counter of what was dropped and why."""
    source_of = {}
    for rec in parse_deb822(packages_text):
        if "Package" in rec:
            source_of.setdefault(rec["Package"], rec.get("Source", rec["Package"]).split()[0])
    dropped = Counter()
    candidates = []
    for rec in parse_deb822(translation_text):
        lines = rec.get("Description-en", "").split("\n")
        summary = squash(lines[0])
        article = clean_long_description(lines[1:])
        package = rec["Package"]
        if not summary:
            dropped["empty summary"] += 1
        elif len(words(article)) < MIN_ARTICLE_WORDS:
            dropped[f"article under {MIN_ARTICLE_WORDS} words"] += 1
        elif normalise_for_dedup(article) == normalise_for_dedup(summary):
            dropped["article equals summary"] += 1
        else:
            candidates.append({"package": package, "source": source_of.get(package, package), "summary": summary,
                               "article": article, "md5": rec.get("Description-md5", "")})
    candidates.sort(key=lambda ex: (ex["package"], ex["md5"]))
    seen, examples = set(), []
    for ex in candidates:
        key = normalise_for_dedup(ex["article"])
        if key in seen:
            dropped["duplicate article"] += 1
            continue
        seen.add(key)
        del ex["md5"]
        examples.append(ex)
    return examples, dropped


def length_stats(values: list[int]) -> dict:
    """mean / median / p90 / max of a list of lengths (p90 = nearest rank) and the shares above 64 and 128."""
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {"mean": round(statistics.fmean(ordered), 1), "median": float(statistics.median(ordered)), "p90": p90,
            "max": ordered[-1], "share_over_64": round(sum(v > 64 for v in ordered) / len(ordered), 3),
            "share_over_128": round(sum(v > 128 for v in ordered) / len(ordered), 3)}


def overlap_stats(examples: list[dict]) -> dict:
    """Fraction of summary words (lower-cased alphanumeric tokens) that also occur in the article, and in its lead."""
    token = re.compile(r"[a-z0-9]+")
    total = in_article = in_lead = novel_summaries = 0
    for ex in examples:
        article_tokens = token.findall(ex["article"].lower())
        article_vocab, lead_vocab = set(article_tokens), set(token.findall(" ".join(words(ex["article"])[:20]).lower()))
        summary_tokens = token.findall(ex["summary"].lower())
        total += len(summary_tokens)
        in_article += sum(t in article_vocab for t in summary_tokens)
        in_lead += sum(t in lead_vocab for t in summary_tokens)
        novel_summaries += all(t not in article_vocab for t in summary_tokens)
    return {"summary_tokens_in_article": round(in_article / total, 3),
            "summary_tokens_in_article_first_20_words": round(in_lead / total, 3),
            "summaries_with_no_article_token": round(novel_summaries / len(examples), 3)}


def lead_rouge(examples: list[dict], ks=LEAD_K) -> dict | None:
    """ROUGE-1/2/L F1 (x100, stemmed) of the Lead-k-words baseline on examples, or None without rouge-score."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        return None
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    result = {}
    for k in ks:
        sums = Counter()
        for ex in examples:
            scores = scorer.score(ex["summary"], " ".join(words(ex["article"])[:k]))
            for name, score in scores.items():
                sums[name] += score.fmeasure
        result[f"lead_{k}"] = {name: round(100 * sums[name] / len(examples), 1)
                               for name in ("rouge1", "rouge2", "rougeL")}
    return result


def write_jsonl_gz(path: str, rows: list[dict]) -> None:
    """Gzip JSON lines with a fixed header (mtime 0, no file name) so rebuilding gives identical bytes."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
        for row in rows:
            f.write((json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8"))


def sha256_file(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv=None) -> int:
    """Command line: read the apt lists, build the corpus, write the split files and the stats JSON; print the stats."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lists-dir", default=None,
                        help=f"apt lists directory (default {PRIVATE_LISTS_DIR} if present, else {SYSTEM_LISTS_DIR})")
    parser.add_argument("--suite", default="bookworm", help="suite whose main component is read (default bookworm)")
    parser.add_argument("--arch", default="amd64", help="architecture of the Packages file used for Source")
    parser.add_argument("--out-dir", default=DATA_DIR, help="where the split files and stats JSON go")
    parser.add_argument("--update", action="store_true",
                        help="first fetch the lists with apt-get (needs root) into --lists-dir or build/apt-lists")
    args = parser.parse_args(argv)

    if args.update:
        args.lists_dir = args.lists_dir or PRIVATE_LISTS_DIR
        apt_update(args.lists_dir)
    elif args.lists_dir is None:
        args.lists_dir = PRIVATE_LISTS_DIR if os.path.isdir(PRIVATE_LISTS_DIR) else SYSTEM_LISTS_DIR
    translation_path = find_list_file(args.lists_dir, args.suite, "main_i18n_Translation-en")
    packages_path = find_list_file(args.lists_dir, args.suite, f"main_binary-{args.arch}_Packages")
    inrelease_path = find_list_file(args.lists_dir, args.suite, "InRelease")
    header, sums = release_info(inrelease_path)
    inputs = {}
    for rel, path in (("main/i18n/Translation-en", translation_path),
                      (f"main/binary-{args.arch}/Packages", packages_path)):
        data = read_list_file(path)
        digest = hashlib.sha256(data).hexdigest()
        if sums.get(rel) != digest:
            raise ValueError(f"{path}: sha256 {digest} does not match {rel} in {inrelease_path}; "
                             "fetch the lists again with `python data/build_corpus.py --update`")
        inputs[rel] = (data.decode("utf-8"), digest)

    translation_text, translation_sha = inputs["main/i18n/Translation-en"]
    packages_text, packages_sha = inputs[f"main/binary-{args.arch}/Packages"]
    n_descriptions = len(parse_deb822(translation_text))
    examples, dropped = build_examples(translation_text, packages_text)
    assign_families(examples)

    family_sizes = Counter(ex["family"] for ex in examples)
    by_split = {split: [] for split in SPLITS}
    for ex in examples:
        by_split[split_of(ex["family"], family_sizes[ex["family"]])].append(ex)
    os.makedirs(args.out_dir, exist_ok=True)
    files = {}
    columns = ("article", "summary", "package", "source", "family")
    for split, rows in by_split.items():
        path = os.path.join(args.out_dir, f"{PREFIX}.{split}.jsonl.gz")
        write_jsonl_gz(path, [{c: ex[c] for c in columns} for ex in rows])
        files[split] = {"file": os.path.basename(path), "sha256": sha256_file(path), "bytes": os.path.getsize(path)}

    stats = {
        "source": {"release": header, "translation_sha256": translation_sha, "packages_sha256": packages_sha,
                   "suite": args.suite, "component": "main", "arch_for_source_field": args.arch},
        "columns": list(columns),
        "descriptions_read": n_descriptions,
        "dropped": dict(sorted(dropped.items())),
        "examples": len(examples),
        "families": len(family_sizes),
        "largest_families": dict(family_sizes.most_common(5)),
        f"families_over_{MAX_HELD_OUT_FAMILY}_examples_forced_to_train": {
            "families": sum(size > MAX_HELD_OUT_FAMILY for size in family_sizes.values()),
            "examples": sum(size for size in family_sizes.values() if size > MAX_HELD_OUT_FAMILY)},
        "splits": {split: {"examples": len(rows), "families": len({ex["family"] for ex in rows}),
                           **files[split]} for split, rows in by_split.items()},
        "article_words": {split: length_stats([len(words(ex["article"])) for ex in rows])
                          for split, rows in by_split.items()},
        "summary_words": {split: length_stats([len(words(ex["summary"])) for ex in rows])
                          for split, rows in by_split.items()},
        "overlap": {split: overlap_stats(rows) for split, rows in by_split.items()},
        "lead_rouge_test": lead_rouge(by_split["test"]),
    }
    stats_path = os.path.join(args.out_dir, f"{PREFIX}.stats.json")
    with open(stats_path, "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1, ensure_ascii=False)
        f.write("\n")
    json.dump(stats, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
