"""The summarizer's time-to-quality: training time and test ROUGE of each run, softmax vs Performer, against Lead,
for every mode the notebook was run in (float32 and bf16 autocast side by side).

    python -m bench.time_to_quality [--results FILE ...] [--out build/bench]
    python -m bench.time_to_quality --train [--steps 300] [--precision fp32]   # measure softmax and Performer here

By default it does not train: it reads the numbers the Summarization notebook measured in its own runs (question
1(f), the main model, and 1(g), softmax vs Performer with equal step counts). Each execution of the notebook writes
build/summarizer/results.<full|fast>-<fp32|bf16>.json (`summarizer.settings.results_path`); all full-mode files are
read (the fast-mode ones only when there is no full one):

    {"fast": false, "precision": "fp32", "threads": 2, "notebook_minutes": 17.5, "n_test": 1000,
     "lead": {"rouge1": 32.7, "rouge2": 15.1, "rougeL": 28.7},
     "runs": [{"name": "main", "attention": "softmax", "n_random": null, "steps": 1800, "train_seconds": 840.0,
               "decoding": "beam", "rouge": {"rouge1": ..., "rouge2": ..., "rougeL": ...}}, ...]}

--train instead trains the notebook's model with softmax and with Performer attention (same steps, data order and
seed, sizes from summarizer.settings, so HW8_FAST=1 shrinks them) through the summarizer package, scores greedy
summaries of the test subset, and writes the same schema to <out>/time_to_quality_runs.json before tabulating it.
Outputs: time_to_quality.md (table), time_to_quality.json (rows), time_to_quality.png (ROUGE-L vs training time).
"""


from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

RESULTS_DIR = Path("build/summarizer")
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")
LEAD = "Lead-10"  # name of the baseline row
RUN_KEYS = ("name", "attention", "steps", "train_seconds", "rouge")


def load_results(path: Path) -> dict:
    """The notebook's results JSON, checked: a `lead` ROUGE dict and a list of `runs` with RUN_KEYS."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: it is written by Summarization.ipynb when it trains the summarizer. Run the notebook "
            f"first (`make run`, or `HW8_FAST=1 make run` for the quick version), pass --results PATH, or measure "
            f"here with `python -m bench.time_to_quality --train`.")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); rerun Summarization.ipynb to rewrite it") from None
    check_rouge(results.get("lead"), f"{path}: 'lead'")
    runs = results.get("runs")
    if not isinstance(runs, list) or not runs:
        raise ValueError(f"{path}: 'runs' must be a non-empty list of training runs")
    for i, run in enumerate(runs):
        missing = [key for key in RUN_KEYS if key not in run]
        if missing:
            raise ValueError(f"{path}: run {i} ({run.get('name', '?')}) lacks {missing}; each run needs {RUN_KEYS}")
        check_rouge(run["rouge"], f"{path}: run {run['name']!r} 'rouge'")
    return results


def check_rouge(scores, where: str) -> None:
    if not isinstance(scores, dict) or any(not isinstance(scores.get(k), (int, float)) for k in ROUGE_KEYS):
        raise ValueError(f"{where} must map {ROUGE_KEYS} to numbers (F1 x 100), got {scores!r}")


def default_results(folder: Path = RESULTS_DIR) -> list[Path]:
    """The notebook's results files in `folder`: every full-mode one, else every fast-mode one."""
    return sorted(folder.glob("results.full-*.json")) or sorted(folder.glob("results.fast-*.json"))


def table_rows(results: dict) -> list[dict]:
    """One row per run plus the Lead baseline: precision, time, time per step, ROUGE and ROUGE-1 minus Lead."""
    lead = results["lead"]
    precision = results.get("precision", "not recorded")
    rows = []
    for run in results["runs"]:
        rows.append({
            "name": run["name"], "precision": precision, "attention": run["attention"], "n_random": run.get("n_random"),
            "steps": run["steps"], "train_seconds": run["train_seconds"],
            "seconds_per_step": run["train_seconds"] / run["steps"] if run["steps"] else None,
            "decoding": run.get("decoding", ""), **{k: run["rouge"][k] for k in ROUGE_KEYS},
            "rouge1_minus_lead": run["rouge"]["rouge1"] - lead["rouge1"],
        })
    rows.append({"name": LEAD, "precision": "–", "attention": "–", "n_random": None, "steps": 0,
                 "train_seconds": 0.0,
                 "seconds_per_step": None, "decoding": "first 10 words", **{k: lead[k] for k in ROUGE_KEYS},
                 "rouge1_minus_lead": 0.0})
    return rows


def markdown(rows: list[dict], results: dict) -> str:
    """The time-to-quality table of one results file as markdown."""
    mode = "HW8_FAST=1 smoke run" if results.get("fast") else "default (full) run"
    minutes = results.get("notebook_minutes")
    head = (f"Summarizer time-to-quality ({mode}, {results.get('precision', 'precision not recorded')}, "
            f"{results.get('threads', '?')} torch threads; ROUGE F1 x100 on {results.get('n_test', '?')} test pairs"
            + (f"; whole notebook {minutes:.1f} min" if minutes is not None else "")
            + (f"; machine: {results['machine']}" if results.get("machine") else "") + ")\n\n"
            + (f"Source: {results['source']}\n\n" if results.get("source") else "")
            + "| run | attention | n_random | steps | train time (s) | s/step | decoding | ROUGE-1 | ROUGE-2 | ROUGE-L "
            "| ROUGE-1 − Lead |\n|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|\n")
    lines = []
    for r in rows:
        per_step = "–" if r["seconds_per_step"] is None else f"{r['seconds_per_step']:.3f}"
        lines.append(f"| {r['name']} | {r['attention']} | {r['n_random'] or '–'} | {r['steps']} | "
                     f"{r['train_seconds']:.1f} | {per_step} | {r['decoding']} | {r['rouge1']:.1f} | "
                     f"{r['rouge2']:.1f} | {r['rougeL']:.1f} | {r['rouge1_minus_lead']:+.1f} |")
    return head + "\n".join(lines) + "\n"


def plot(rows: list[dict]):
    """ROUGE-L vs training time (log scale), one colour per run in every precision (circle: softmax, square:
    Performer; filled: float32, hollow: bf16), Lead as a horizontal line. Returns the Figure."""
    fig, ax = plt.subplots(figsize=(8, 4))
    markers = {"softmax": "o", "performer": "s"}
    runs = [r for r in rows if r["name"] != LEAD]
    leads = [r for r in rows if r["name"] == LEAD]
    if leads:
        ax.axhline(leads[0]["rougeL"], color="grey", ls="--", label=LEAD)
    colours = {name: plt.cm.tab10(i % 10) for i, name in enumerate(dict.fromkeys(r["name"] for r in runs))}
    labelled = set()
    for r in runs:
        colour = colours[r["name"]]
        ax.scatter(r["train_seconds"], r["rougeL"], marker=markers.get(r["attention"], "^"), s=45, edgecolors=colour,
                   facecolors="none" if r["precision"] == "bf16" else colour,
                   label=None if r["name"] in labelled else r["name"])
        labelled.add(r["name"])
    for precision in dict.fromkeys(r["precision"] for r in runs):  # legend entries for the fill
        hollow = precision == "bf16"
        ax.scatter([], [], marker="o", edgecolors="black", facecolors="none" if hollow else "black",
                   label=f"{precision} ({'hollow' if hollow else 'filled'})")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("ROUGE-L F1 (test)")
    ax.set_title("summarizer: quality vs training time")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def train_runs(steps: int | None, n_random: int | None, n_eval: int | None, threads: int, seed: int = 0,
               precision: str | None = None) -> dict:
    """Train softmax and Performer summarizers for the same steps via the summarizer package; results-JSON schema.
    precision: "fp32", "bf16" or "auto" (None: HW8_PRECISION, see summarizer.train.train_model)."""
    import torch

    from bench.measure import cpu_model
    from kernel_attention import DEFAULT_N_RANDOM
    from summarizer.decode import summarize
    from summarizer.evaluate import lead_summary, rouge
    from summarizer.pipeline import build_model, prepare_corpus
    from summarizer.settings import settings
    from summarizer.train import train_model

    torch.set_num_threads(threads)
    n_random = n_random or DEFAULT_N_RANDOM
    run = settings()
    steps = steps or run.sweep_steps
    corpus = prepare_corpus(run, seed=seed)
    n_eval = min(n_eval or len(corpus.test_articles), len(corpus.test_articles))
    articles, references = corpus.test_articles[:n_eval], corpus.test_summaries[:n_eval]
    runs = []
    for attention in ("softmax", "performer"):
        torch.manual_seed(seed)
        model = build_model(run, corpus.tokenizer.get_vocab_size(), attention=attention, n_random=n_random)
        history = train_model(model, corpus.train, corpus.validation, steps=steps, batch_size=run.batch_size,
                              lr=run.lr, warmup=max(1, min(run.warmup, steps // 10)), eval_every=steps, seed=seed,
                              desc=attention, precision=precision)
        scores = rouge(summarize(model, corpus.tokenizer, articles, method="greedy"), references)
        runs.append({"name": f"{attention} {steps} steps", "attention": attention,
                     "n_random": n_random if attention == "performer" else None, "steps": steps,
                     "train_seconds": history.seconds, "decoding": "greedy", "rouge": scores,
                     "val_loss": history.val_loss[-1]})
    return {"fast": run.fast, "precision": history.precision, "threads": threads, "n_test": n_eval,
            "machine": cpu_model(),
            "lead": rouge([lead_summary(a) for a in articles], references), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, nargs="+", default=None,
                   help=f"the notebook's results JSON files (default: {RESULTS_DIR}/results.full-*.json)")
    p.add_argument("--out", type=Path, default=Path("build/bench"), help="output folder")
    p.add_argument("--train", action="store_true", help="train softmax and Performer here instead of reading")
    p.add_argument("--steps", type=int, default=None, help="--train: steps per model (default: the 1(g) sweep's)")
    p.add_argument("--n-random", type=int, default=None,
                   help="--train: Performer's n_random (default: kernel_attention.DEFAULT_N_RANDOM)")
    p.add_argument("--n-eval", type=int, default=None, help="--train: test articles scored (default: all)")
    p.add_argument("--threads", type=int, default=2, help="--train: torch threads")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default=None,
                   help="--train: float32 or bf16 autocast (default: HW8_PRECISION, else auto)")
    args = p.parse_args(argv)
    if args.train:
        args.out.mkdir(parents=True, exist_ok=True)
        trained = args.out / "time_to_quality_runs.json"
        trained.write_text(json.dumps(train_runs(args.steps, args.n_random, args.n_eval, args.threads,
                                                 precision=args.precision), indent=1))
        args.results = [trained]
    paths = args.results or default_results()
    if not paths:
        print(f"time_to_quality: no {RESULTS_DIR}/results.*.json: they are written by Summarization.ipynb when it "
              f"trains the summarizer. Run the notebook first (`make run`, or `HW8_FAST=1 make run` for the quick "
              f"version), pass --results FILE, or measure here with `python -m bench.time_to_quality --train`.",
              file=sys.stderr)
        return 1
    try:
        loaded = [(path, load_results(path)) for path in paths]
    except (FileNotFoundError, ValueError) as err:
        print(f"time_to_quality: {err}", file=sys.stderr)
        return 1
    per_file = [(path, results, table_rows(results)) for path, results in loaded]
    rows = [row | {"source": str(path)} for path, _, file_rows in per_file for row in file_rows]
    args.out.mkdir(parents=True, exist_ok=True)
    text = "\n".join(markdown(file_rows, results | {"source": str(path)}) for path, results, file_rows in per_file)
    (args.out / "time_to_quality.md").write_text(text)
    (args.out / "time_to_quality.json").write_text(json.dumps({"sources": [str(p) for p in paths], "rows": rows},
                                                              indent=1))
    plot(rows).savefig(args.out / "time_to_quality.png", dpi=110)
    print(text)
    print(f"wrote {args.out / 'time_to_quality.md'}, .json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
