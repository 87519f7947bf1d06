"""Save and load a trained summarizer: weights + config + tokenizer (+ training history) in one .pt file."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tokenizers import Tokenizer

from summarizer.model import Summarizer, SummarizerConfig

FORMAT = "hw8-summarizer"  # payload["format"]
VERSION = 1  # payload["version"]
REQUIRED_KEYS = ("config", "state_dict", "tokenizer")  # SummarizerConfig.to_dict(), model.state_dict(), tok.to_str()


def save_checkpoint(path: str | Path, model: Summarizer, tok: Tokenizer, history: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write the checkpoint atomically (temporary file then rename) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "tokenizer": tok.to_str(), "history": history or {}, "extra": extra or {},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[Summarizer, Tokenizer, dict]:
    """Rebuild (model in eval mode, tokenizer, payload) from a checkpoint; any problem raises a ValueError naming it.

    FileNotFoundError when the file is missing (train the model in Summarization.ipynb to create it).
    """
    path = Path(path)
    payload = read_checkpoint(path, device)
    cfg = SummarizerConfig.from_dict(payload["config"])
    try:
        tok = Tokenizer.from_str(payload["tokenizer"])
    except Exception as e:
        raise ValueError(f"{path}: stored tokenizer cannot be read ({e})") from e
    if tok.get_vocab_size() != cfg.vocab_size:
        raise ValueError(f"{path}: tokenizer has {tok.get_vocab_size()} tokens but the model expects {cfg.vocab_size}")
    model = Summarizer(cfg)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match the config {cfg} ({e})") from e
    return model.to(device).eval(), tok, payload


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """The checkpoint's payload (tensors and plain values only: weights_only), with its format, version and keys
    checked; FileNotFoundError when missing, ValueError naming any other problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no summarizer checkpoint at {path}: run the training cells of Summarization.ipynb")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated file, not a torch file, pickled objects
        raise ValueError(f"{path} is not a readable summarizer checkpoint ({type(e).__name__}: {e}); "
                         "delete it and retrain") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint (it was saved by something else)")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} has checkpoint version {payload.get('version')}, this code reads version {VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise ValueError(f"{path} lacks {missing}")
    return payload
