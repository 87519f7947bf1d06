"""The online path, for real: gpt2 and bert-base-uncased downloaded through huggingface_hub and from_pretrained from
a Hugging Face endpoint on loopback (tests/local_hub.py: tiny random models with the real tokenizers, under the
names the notebook asks for), with its own cache; and the fallback when that endpoint serves nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from local_hub import LocalHub, make_tiny_models

REPO = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: huggingface_hub reads HF_ENDPOINT when it is imported.
LOAD = r"""
import json
import torch
import visualizing_bert as vb

bert, causal, tok = vb.load_bert(), vb.load_causal_lm(), vb.load_gpt2_tokenizer()
attention, tokens, _ = vb.attention_for(bert, "The cat sat on the mat.")
print("RESULT " + json.dumps({
    "bert": [bert.source, bert.n_layers, bert.reason, len(bert.tokenizer), bert.masked_lm is not None],
    "causal": [causal.source, causal.n_layers, causal.reason],
    "gpt2_tokenizer": len(tok), "attention_layers": len(attention), "tokens": tokens}))
"""


def hub_env(url: str, home: Path) -> dict[str, str]:
    """This process's environment, online (no HF_HUB_OFFLINE, which `make test` sets), pointed at `url`."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**env, "HF_ENDPOINT": url, "HF_HOME": str(home), "HF_HUB_DISABLE_XET": "1"}


def load_through(hub: LocalHub, home: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", LOAD], cwd=REPO, env=hub_env(hub.url, home), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    return make_tiny_models(tmp_path_factory.mktemp("hub-models"))


def test_the_notebooks_models_come_from_the_hub_when_it_answers(tiny_models, tmp_path):
    with LocalHub(tiny_models) as hub:
        got = load_through(hub, tmp_path / "hf-home")
    assert got["bert"] == ["hub", 2, "the Hugging Face hub is reachable", 30522, True]      # with its MLM head
    assert got["causal"] == ["hub", 2, "the Hugging Face hub is reachable"]
    assert got["gpt2_tokenizer"] == 50257 and got["attention_layers"] == 2
    assert got["tokens"][:3] == ["[CLS]", "the", "cat"]
    assert any(r.startswith("GET /bert-base-uncased/resolve/") and r.endswith("/model.safetensors")
               for r in hub.requests)
    assert list((tmp_path / "hf-home" / "hub").glob("models--gpt2/snapshots/*/config.json"))     # the real cache


def test_an_endpoint_that_serves_nothing_falls_back_and_says_why(tmp_path):
    with LocalHub({}) as hub:
        got = load_through(hub, tmp_path / "hf-home")
    assert got["bert"][0] == got["causal"][0] == "offline"
    for reason in (got["bert"][2], got["causal"][2]):
        assert hub.url in reason and "404" in reason, reason                  # the probe found no bert-base-uncased


def test_visualizing_bert_runs_its_hub_branch(tiny_models, tmp_path, monkeypatch):
    """The whole notebook (fast mode, strict: a failing cell fails the test) on the hub's models: BERT's masked-LM
    guesses, which only the hub's BERT has, are printed."""
    from homework.notebooks import run_notebook

    with LocalHub(tiny_models) as hub:
        for key, value in hub_env(hub.url, tmp_path / "hf-home").items():
            monkeypatch.setenv(key, value)
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(key, raising=False)
        notebook, _ = run_notebook(REPO / "Visualizing_BERT.ipynb", tmp_path / "Visualizing_BERT.ipynb", fast=True,
                                   allow_errors=False, echo=False)
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "Using bert-base-uncased [hub; 2 layers x 2 heads]" in printed
    assert "Using gpt2 [hub; 2 layers x 2 heads]" in printed
    assert "BERT's top guesses for [MASK]:" in printed
    assert nbformat.validate(notebook) is None
