"""Google Colab: the set-up that the first code cell of each notebook runs there (elsewhere that cell does nothing).

`SETUP_CELL` is that cell's text (tests/test_colab.py checks that every notebook carries it unchanged). It cannot
import from this folder before it is in it, so the cell itself finds the folder: HW8_DIR when set, else one folder
that holds homework/colab.py among /content (a release zip uploaded there is unpacked once, beside itself) and, only
if none is there, Google Drive (mounted, then MyDrive and two levels below it). It changes into that folder and calls
`set_up()`, which installs what Colab lacks, pinned as in requirements.txt, without touching Colab's torch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SETUP_CELL = '''\
# Google Colab set-up (elsewhere this cell does nothing): finds this homework's folder, changes into it and installs
# what Colab lacks (README.md, "On Google Colab"). The folder: HW8_DIR if set, else the one found in /content (a
# release zip uploaded there is unpacked once) or, if none, on your Google Drive (MyDrive and two levels below).
try:
    from google.colab import drive
except ImportError:
    drive = None
if drive is not None:
    import glob
    import os
    import sys
    import zipfile

    def homework_folders(*roots):
        return sorted({p[:-len("/homework/colab.py")] for root in roots
                       for p in glob.glob(root + "/homework/colab.py") + glob.glob(root + "/*/homework/colab.py")})

    if not os.path.isfile("homework/colab.py"):
        for archive in glob.glob("/content/*.zip"):  # an uploaded release, unpacked once: never over your edits
            with zipfile.ZipFile(archive) as zf:
                if any(n.endswith("homework/colab.py") for n in zf.namelist()) and not os.path.exists(archive[:-4]):
                    zf.extractall(archive[:-4])
        homes = [os.environ["HW8_DIR"]] if os.environ.get("HW8_DIR") else homework_folders("/content/*")
        if not homes:
            drive.mount("/content/drive")
            homes = homework_folders("/content/drive/MyDrive", "/content/drive/MyDrive/*")
        if len(homes) != 1:
            raise RuntimeError(f"found {len(homes)} homework folders ({homes}): set HW8_DIR to the one to use, "
                               "e.g. os.environ['HW8_DIR'] = '/content/drive/MyDrive/hw8', and run this cell again")
        os.chdir(homes[0])
    sys.path.insert(0, os.getcwd())
    from homework.colab import set_up

    set_up()
'''

# What the notebooks import that Colab may lack: module name -> distribution name in requirements.txt
NEEDED = {"bertviz": "bertviz", "rouge_score": "rouge-score", "datasets": "datasets", "transformers": "transformers",
          "tokenizers": "tokenizers", "safetensors": "safetensors", "tqdm": "tqdm", "pandas": "pandas",
          "matplotlib": "matplotlib", "nbformat": "nbformat", "nbclient": "nbclient"}
PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)")


def dist_name(name: str) -> str:
    """A distribution name normalized as pip compares them: "Rouge_Score" -> "rouge-score"."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: Path) -> dict[str, str]:
    """{normalized distribution name: "name==version"} from a requirements file's exact pins."""
    found = {}
    for line in requirements.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[dist_name(match.group(1))] = f"{match.group(1)}=={match.group(2)}"
    return found


def missing_requirements(folder: Path) -> list[str]:
    """The pinned requirement of every module in NEEDED that this Python cannot import."""
    pinned = pins(folder / "requirements.txt")
    return [pinned.get(dist, dist) for module, dist in NEEDED.items() if importlib.util.find_spec(module) is None]


def install(requirements: list[str]) -> None:
    """pip install `requirements` into this Python, with the installed torch pinned as a constraint (never replaced)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        try:
            constraints.write(f"torch=={importlib.metadata.version('torch')}\n")
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-c", constraints.name, *requirements],
                       check=True)
    finally:
        os.unlink(constraints.name)
    importlib.invalidate_caches()


def set_up(folder: str | Path = ".") -> list[str]:
    """Install what the notebooks need and this Python lacks; print the folder, what was installed and the device.
    Returns the requirements installed."""
    folder = Path(folder).resolve()
    missing = missing_requirements(folder)
    if missing:
        install(missing)
    import torch

    device = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
    place = "on Google Drive: your edits and outputs stay there" if str(folder).startswith("/content/drive/") \
        else "NOT on Google Drive: download build/submission/hw8_submission.zip before the runtime is recycled"
    print(f"homework folder: {folder} ({place})\n"
          f"installed: {', '.join(missing) or 'nothing (all present)'}; torch {torch.__version__} as it was; "
          f"device: {device}")
    return missing
