"""The untrusted side of the grading harness: imports the student's code and answers call requests.

Started by grading/harness.py as `python -I -c <this file> REPLY_FD WORKDIR` (sandboxed, see grading/sandbox.py).
Requests arrive on stdin and replies leave on REPLY_FD, each framed as an 8-byte length + `torch.save` bytes; the
student's own prints go to stderr, never into the protocol. Nothing this process says is trusted: the parent only
deserializes replies with `torch.load(weights_only=True)` and compares the values itself.

Request: {"target": "module:attr" | "Notebook.ipynb[cells]:attr", "args": [...], "kwargs": {...}, "seed": int,
          "init": None | {"args": [...], "kwargs": {...}, "state": state_dict | None}, "method": str | None,
          "attrs": [names to read off the constructed object], "call": bool (False: return the attribute itself)}
          or {"load": "module" | "Notebook.ipynb[cells]"}: import it now (the parent times imports once, apart)
Reply:   {"ok": True, "value": output, "attrs": {...}}  or  {"ok": False, "error": "traceback tail"}
The parent uses `invoke` from this file too, to compute references with the instructor's code.
"""

import contextlib
import importlib
import io
import json
import os
import struct
import sys
import traceback
import types

MAX_MESSAGE = 256 * 2**20
NOTEBOOK_SUFFIX = ".ipynb"


def encode(obj) -> bytes:
    """Frame an object: 8-byte big-endian length + torch.save bytes."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    return struct.pack(">Q", len(data)) + data


def decode(data: bytes):
    """Inverse of encode's payload; weights_only=True never runs code from the bytes, and `check_archive` first
    makes sure that they cannot inflate past their own size."""
    import torch

    check_archive(io.BytesIO(data), len(data))
    return torch.load(io.BytesIO(data), weights_only=True)


def check_archive(file, limit: int, members: int = 100_000) -> None:
    """Raise ValueError unless `file` (a path or a binary file object) is a torch.save zip archive whose members are
    stored uncompressed (as torch.save writes them) and add up to at most `limit` bytes: a crafted archive could
    otherwise declare compressed records that inflate to gigabytes inside torch.load."""
    import zipfile

    try:
        with zipfile.ZipFile(file) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise ValueError(f"not a torch.save archive ({type(err).__name__})") from None
    if len(infos) > members:
        raise ValueError(f"a torch.save archive of {len(infos)} members (at most {members})")
    if any(i.compress_type != zipfile.ZIP_STORED for i in infos):
        raise ValueError("a compressed torch.save archive (torch.save stores its records uncompressed)")
    if sum(i.file_size for i in infos) > limit:
        raise ValueError(f"a torch.save archive whose records add up to more than {limit} bytes")


def read_exact(stream, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            raise EOFError(f"stream ended after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class _Discard(io.TextIOBase):
    """A text stream that keeps nothing."""

    def write(self, text: str) -> int:
        return len(text)


def load_notebook_module(path: str, name: str) -> types.ModuleType:
    """Execute the code cells listed in a JSON file (see reference.notebook_cells) as one module, like a notebook run
    top to bottom: an error in one cell is printed to stderr and the next cell still runs. What the cells print is
    discarded: it is not graded, and a print must not fail a cell (e.g. once the process's output limit is reached)."""
    module = types.ModuleType(name)
    module.__file__ = path
    with open(path) as f:
        cells = json.load(f)
    for i, source in enumerate(cells):
        try:
            with contextlib.redirect_stdout(_Discard()):
                exec(compile(source, f"{name} cell {i}", "exec"), module.__dict__)
        except Exception:  # noqa: BLE001 - a failing cell must not stop the others
            try:
                traceback.print_exc()
            except OSError:                                  # stderr past the output limit: nothing to report to
                pass
    return module


def load_target(spec: str, workdir: str, cache: dict):
    """The module named by the part of `spec` before ':' (a notebook's cells if it names an .ipynb; the parent wrote
    them to <name>.cells.json)."""
    name = spec.split(":", 1)[0]
    if name not in cache:
        if NOTEBOOK_SUFFIX in name:
            stem = name.split(NOTEBOOK_SUFFIX, 1)[0]
            cache[name] = load_notebook_module(os.path.join(workdir, name + ".cells.json"), stem)
        else:
            cache[name] = importlib.import_module(name)
    return cache[name]


def plain(value):
    """Detach tensors and turn containers into lists/dicts so that torch.save(weights_only) can carry them."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if type(value).__module__ == "numpy":
        return torch.as_tensor(value)
    raise TypeError(f"the output is a {type(value).__name__}; expected tensors, numbers, lists, tuples or dicts")


def invoke(module, request: dict):
    """Call what the request names on `module`; returns (plain output, {attr: plain value})."""
    import torch

    attr = request["target"].split(":", 1)[1]
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not request.get("call", True):
        return plain(obj), {}
    torch.manual_seed(request.get("seed", 0))
    init = request.get("init")
    attrs = {}
    if init is not None:
        obj = obj(*init.get("args", []), **init.get("kwargs", {}))
        if init.get("state") is not None:
            obj.load_state_dict(init["state"])
        if hasattr(obj, "eval"):
            obj.eval()
        attrs = {name: plain(getattr(obj, name)) for name in request.get("attrs", [])}
        method = request.get("method") or "__call__"
        obj = getattr(obj, method)
    with torch.no_grad():
        out = obj(*request.get("args", []), **request.get("kwargs", {}))
    return plain(out), attrs


def send(fd: int, obj) -> None:
    view = memoryview(encode(obj))
    while view:
        view = view[os.write(fd, view):]


def student_traceback(exc: BaseException) -> str:
    """The traceback without this file's frames (they mean nothing to the student), at most 3000 characters."""
    tb = traceback.TracebackException.from_exception(exc)
    own = ("<string>", globals().get("__file__"))
    tb.stack = traceback.StackSummary.from_list([f for f in tb.stack if f.filename not in own])
    return "".join(tb.format())[-3000:]


def serve(reply_fd: int, workdir: str) -> None:
    """Answer requests until stdin closes."""
    requests = os.fdopen(os.dup(0), "rb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)       # the student's code reads nothing from the parent
    os.dup2(2, 1)                                      # and its prints go to the log, not to the replies
    sys.stdout = sys.stderr
    os.chdir(workdir)
    sys.path.insert(0, workdir)
    import torch

    torch.set_num_threads(1)
    send(reply_fd, {"ok": True, "ready": True})         # torch is imported: per-check timeouts start now
    cache: dict = {}
    while True:
        try:
            (size,) = struct.unpack(">Q", read_exact(requests, 8))
            request = decode(read_exact(requests, size))
        except EOFError:
            return
        try:
            if "load" in request:
                load_target(request["load"], workdir, cache)
                reply = {"ok": True, "value": None, "attrs": {}}
            else:
                value, attrs = invoke(load_target(request["target"], workdir, cache), request)
                reply = {"ok": True, "value": value, "attrs": attrs}
        except BaseException as exc:  # noqa: BLE001 - SystemExit from student code is a failure, not an exit
            if isinstance(exc, KeyboardInterrupt):
                raise
            reply = {"ok": False, "error": student_traceback(exc)}
        try:
            send(reply_fd, reply)
        except Exception as exc:  # noqa: BLE001 - e.g. a tensor subclass the student returned
            send(reply_fd, {"ok": False, "error": f"could not send the output back: {exc!r}"[:3000]})


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2])
