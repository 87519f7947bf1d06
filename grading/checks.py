"""The vocabulary of trusted checks (cases files such as grading/cases_hw8.py are lists of these).

A `Case` calls one function (or constructs one class and calls a method) of the student's code in the sandboxed
child, with inputs drawn in the parent from a seeded generator, and compares the returned value in the parent with
the instructor's code run on the same inputs. A `FileCase` inspects a submitted file (e.g. the checkpoint) in the
parent without running student code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import torch

Compare = Callable[[Any, Any, dict], "str | None"]


class Constructor(TypedDict, total=False):
    """How the child builds the student's object before calling it (a class target)."""
    args: list
    kwargs: dict


class CheckInputs(TypedDict, total=False):
    """What a check's `inputs(generator)` returns (every key optional; drawn in the trusted parent)."""
    args: list                  # positional arguments of the call
    kwargs: dict                # keyword arguments of the call
    init: Constructor           # a class target: construct it with these first (its weights may come from the
                                # reference: Case.state_from_reference)
    method: str                 # call this method of the object instead of calling it
    attrs: list[str]            # also read these attributes off the constructed object and compare them


INPUT_KEYS = frozenset(CheckInputs.__annotations__)


def check_inputs(case_name: str, inputs: dict) -> CheckInputs:
    """`inputs` if every key is one CheckInputs knows; a ValueError naming the check and the key otherwise."""
    unknown = sorted(set(inputs) - INPUT_KEYS)
    if unknown:
        raise ValueError(f"check {case_name!r}: unknown input key(s) {unknown} (known: {sorted(INPUT_KEYS)})")
    return inputs


@dataclass
class Case:
    """One trusted check of a student function/class; `points` if the outputs match the reference, else 0."""

    name: str
    points: float
    target: str                                   # "module:attr" (attr may be dotted) or "Notebook.ipynb:attr"
    inputs: Callable[[torch.Generator], CheckInputs] | None   # seeded inputs (CheckInputs); None: no inputs
    compare: Compare | None = None                # (got, expected, request) -> None if right, else a message
    reference: Callable[[dict], Any] | None = None  # expected output from the request; default: instructor's target
    atol: float = 1e-5
    rtol: float = 1e-4
    seed: int = 0
    state_from_reference: bool = False            # send the instructor object's state_dict to the student's object
    nbgrader_cell: str | None = None              # grade cell whose verdict this check confirms (autograde)
    timeout: float | None = None                  # seconds; default: the course's case_timeout
    hint: str = ""                                # shown with a failure, e.g. what the check exercises
    cells: tuple[str, ...] = ()                   # notebook targets: run only these solution cells (grade ids)...
    preamble: str = ""                            # ...after this trusted set-up code (default: every locked cell)
    call: bool = True                             # False: the target is a value (e.g. a constant), not called
    part: str = ""                                # the homework part whose points this is (homework/parts.py)

    @property
    def module(self) -> str:
        return self.target.split(":", 1)[0]

    @property
    def attr(self) -> str:
        return self.target.split(":", 1)[1]

    @property
    def module_key(self) -> str:
        """What the sandboxed child loads: the module name, or the notebook plus the cells it runs."""
        return f"{self.module}[{','.join(self.cells)}]" if self.cells else self.module


@dataclass
class FileCase:
    """A check of a submitted file, run in the parent (the file is only read, never executed)."""

    name: str
    points: float
    path: str                                     # relative to the submission
    check: Callable[[Path, Callable[[str], Any]], "str | None"]  # (file, reference_loader) -> None or message
    nbgrader_cell: str | None = None
    hint: str = ""
    extra: dict = field(default_factory=dict)
    timeout: float | None = None                  # seconds for `check`; default: the course's case_timeout
    part: str = ""


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return type(x).__name__


def compare_values(got: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-4, where: str = "output"
                   ) -> str | None:
    """None if `got` matches `expected` (same structure, shapes, no NaN where the reference has none, allclose);
    otherwise a message that names the first difference."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{where}: expected a {_describe(expected)}, got a {_describe(got)}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"{where}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
        if expected.dtype == torch.bool or got.dtype == torch.bool:
            if got.dtype != expected.dtype:
                return f"{where}: expected dtype {expected.dtype}, got {got.dtype}"
            differ = got != expected
            if not differ.any():
                return None
            first = tuple(int(i) for i in differ.nonzero()[0].tolist())
            return f"{where}: {int(differ.sum())} of {got.numel()} entries differ (first at index {first})"
        if got.is_complex() or not (got.is_floating_point() or got.dtype in (torch.int32, torch.int64)):
            return f"{where}: unexpected dtype {got.dtype}"
        g, e = got.double(), expected.double()
        bad = torch.isnan(g) & ~torch.isnan(e)
        if bad.any():
            return f"{where}: contains NaN ({int(bad.sum())} of {g.numel()} entries)"
        close = torch.isclose(g, e, atol=atol, rtol=rtol, equal_nan=True)
        if not close.all():
            err = (g - e).abs().nan_to_num(nan=math.inf).max().item()
            first = tuple(int(i) for i in (~close).nonzero()[0].tolist())
            return (f"{where}: values differ from the reference at {int((~close).sum())} of {g.numel()} entries "
                    f"(first at index {first}; max abs error {err:.3g}, tolerance {atol:g})")
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return f"{where}: expected a sequence of {len(expected)} items, got {_describe(got)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            message = compare_values(g, e, atol, rtol, f"{where}[{i}]")
            if message:
                return message
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            return f"{where}: expected a dict with keys {sorted(expected)}, got {_describe(got)}"
        for key in expected:
            message = compare_values(got[key], expected[key], atol, rtol, f"{where}[{key!r}]")
            if message:
                return message
        return None
    # scalars: the message names what was returned, never the expected value (it may be the answer itself)
    if isinstance(expected, float) or isinstance(got, float):
        if not isinstance(got, (int, float)) or isinstance(got, bool) or not math.isclose(got, expected,
                                                                                       rel_tol=rtol, abs_tol=atol):
            return f"{where}: got {_short(got)}, which is not the right value"
        return None
    return None if got == expected and type(got) is type(expected) else \
        f"{where}: got {_short(got)}, which is not the right value"


def _short(x: Any) -> str:
    text = repr(x) if isinstance(x, (bool, int, float, str, type(None))) else _describe(x)
    return text if len(text) <= 80 else text[:77] + "..."


def randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    """Standard normal tensor of `shape` from generator g (float32)."""
    return torch.randn(*shape, generator=g)
