"""Run flags: the environment variables that switch how the notebooks, tests and tools run, read in one place.

Every true/false flag follows one rule (`flag`): true is 1 / true / yes / on, false is unset / "" / 0 / false / no /
off (case-insensitive, surrounding spaces ignored); any other value raises ValueError naming the variable, so a typo
never silently picks a mode. This module imports nothing from the repository (everything else may import it).

    HW8_FAST              fast(): shrink data and steps so every notebook cell runs in minutes (tests, CI)
    HW8_THREADS           threads(): torch CPU threads (a positive integer), or None to keep torch's default
    HW8_REUSE_CHECKPOINT  reuse_checkpoint(): the summarization notebook loads its saved model instead of training
    HW8_PRECISION         precision(): training precision, "auto" (default) | "fp32" | "bf16"
    HF_HUB_OFFLINE, HF_DATASETS_OFFLINE   hub_offline(): never contact the Hugging Face hub (either one set)
    HW8_SIGN              sign_notebooks(): executed notebooks are signed as trusted (default); 0 leaves them unsigned
"""

from __future__ import annotations

import os

TRUE_VALUES = ("1", "true", "yes", "on")
FALSE_VALUES = ("", "0", "false", "no", "off")
PRECISIONS = ("auto", "bf16", "fp32")


def flag(name: str) -> bool:
    """The true/false environment variable `name` (unset = False); ValueError for a value outside the rule above."""
    raw = os.environ.get(name, "")
    value = raw.strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise ValueError(f"{name}={raw!r} is not a true/false value: use one of {TRUE_VALUES} "
                     f"or one of {FALSE_VALUES[1:]} (or leave it unset)")


def fast() -> bool:
    """True when HW8_FAST is set: tests and CI shrink data and steps (same code path as the full run)."""
    return flag("HW8_FAST")


def threads() -> int | None:
    """HW8_THREADS as a positive int (e.g. 1 on a machine shared with other jobs), None when unset or empty."""
    raw = os.environ.get("HW8_THREADS", "")
    value = raw.strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"HW8_THREADS={raw!r} is not a positive integer (or leave it unset)")
    return int(value)


def reuse_checkpoint() -> bool:
    """True when HW8_REUSE_CHECKPOINT is set: the notebook loads its saved checkpoint instead of training the main
    model again (re-running the notebook after the full run; the checkpoint must come from the same settings)."""
    return flag("HW8_REUSE_CHECKPOINT")


def precision() -> str:
    """Training precision from HW8_PRECISION: "auto" (default, also when unset or empty: bf16 autocast where the
    hardware has it natively), "fp32" (e.g. to time the run a laptop without AVX512-BF16 does) or "bf16"."""
    raw = os.environ.get("HW8_PRECISION", "")
    value = raw.strip().lower() or "auto"
    if value not in PRECISIONS:
        raise ValueError(f"HW8_PRECISION={raw!r} is not one of {PRECISIONS}")
    return value


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set: nothing may be downloaded from the Hugging Face hub."""
    return flag("HF_HUB_OFFLINE") or flag("HF_DATASETS_OFFLINE")


def sign_notebooks() -> bool:
    """True unless HW8_SIGN is set false: `make run` signs the notebooks it executes, so Jupyter front ends trust
    their outputs (HW8_SIGN=0 saves them unsigned, as a plain nbclient run would, e.g. to see what a front end does)."""
    return not os.environ.get("HW8_SIGN", "").strip() or flag("HW8_SIGN")
