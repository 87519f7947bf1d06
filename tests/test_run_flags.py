"""run_flags: one true/false rule for every flag, and each accessor's values and errors."""

import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1]))   # repo root, if pytest did not put it on the path

import run_flags  # noqa: E402

FLAGS = ["HW8_FAST", "HW8_THREADS", "HW8_REUSE_CHECKPOINT", "HW8_PRECISION", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Every test starts with none of the flags set (the suite itself may run with HF_HUB_OFFLINE=1)."""
    for name in FLAGS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " 1 ", "true\n"])
def test_true_values(monkeypatch, value):
    monkeypatch.setenv("HW8_SOME_FLAG", value)
    assert run_flags.flag("HW8_SOME_FLAG") is True


@pytest.mark.parametrize("value", ["", "  ", "0", "false", "FALSE", "False", "no", "NO", "off", "OFF", " 0 "])
def test_false_values(monkeypatch, value):
    monkeypatch.setenv("HW8_SOME_FLAG", value)
    assert run_flags.flag("HW8_SOME_FLAG") is False


def test_unset_is_false():
    assert run_flags.flag("HW8_FLAG_THAT_IS_NEVER_SET") is False


@pytest.mark.parametrize("value", ["2", "-1", "y", "n", "enabled", "fast", "tru", "1.0"])
def test_other_values_raise_naming_the_variable_and_value(monkeypatch, value):
    monkeypatch.setenv("HW8_SOME_FLAG", value)
    with pytest.raises(ValueError, match=f"HW8_SOME_FLAG={value!r}"):
        run_flags.flag("HW8_SOME_FLAG")


@pytest.mark.parametrize("accessor, name", [(run_flags.fast, "HW8_FAST"),
                                            (run_flags.reuse_checkpoint, "HW8_REUSE_CHECKPOINT")])
def test_boolean_accessors_follow_the_rule(monkeypatch, accessor, name):
    assert accessor() is False
    for value, expected in [("1", True), ("yes", True), ("0", False), ("FALSE", False), ("no", False), ("", False)]:
        monkeypatch.setenv(name, value)
        assert accessor() is expected, (name, value)
    monkeypatch.setenv(name, "maybe")
    with pytest.raises(ValueError, match=name):
        accessor()


def test_hub_offline_reads_either_variable(monkeypatch):
    assert run_flags.hub_offline() is False
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run_flags.hub_offline() is True
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "true")
    assert run_flags.hub_offline() is True
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "off")
    assert run_flags.hub_offline() is False
    monkeypatch.setenv("HF_HUB_OFFLINE", "sometimes")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE"):
        run_flags.hub_offline()


# accessor, variable, {value (None = unset): expected}, values that raise ValueError
VALUED_FLAGS = [
    (run_flags.threads, "HW8_THREADS", {None: None, "": None, " 2 ": 2, "16": 16}, ["0", "-1", "two", "1.5"]),
    (run_flags.precision, "HW8_PRECISION",
     {None: "auto", "": "auto", "auto": "auto", "FP32": "fp32", " bf16 ": "bf16"}, ["fp16", "float32"]),
]


@pytest.mark.parametrize("accessor, name, expected, bad", VALUED_FLAGS, ids=[row[1] for row in VALUED_FLAGS])
def test_valued_accessors(monkeypatch, accessor, name, expected, bad):
    for value, result in expected.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
        assert accessor() == result, (name, value)
    for value in bad:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=f"{name}={value!r}"):
            accessor()


def test_summarizer_settings_read_the_flags(monkeypatch):
    """summarizer.settings picks its run sizes and graded checkpoint through run_flags (and its rule)."""
    from summarizer.settings import FAST, FULL, graded_checkpoint, settings

    assert settings() is FULL and graded_checkpoint() == (FULL.checkpoint, FULL.val_loss_threshold)
    monkeypatch.setenv("HW8_FAST", "on")
    assert settings() is FAST and graded_checkpoint() == (FAST.checkpoint, FAST.val_loss_threshold)
    monkeypatch.setenv("HW8_FAST", "no")
    assert settings() is FULL
    monkeypatch.setenv("HW8_FAST", "nope")
    with pytest.raises(ValueError, match="HW8_FAST"):
        settings()


def test_imports_nothing_from_the_repository():
    """The bottom floor: run_flags imports only the standard library, so every module may import it."""
    import ast

    tree = ast.parse(Path(run_flags.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "os"}


def test_configure_threads_reads_hw8_threads(monkeypatch):
    torch = pytest.importorskip("torch")
    from summarizer.settings import configure_threads

    current = torch.get_num_threads()
    assert configure_threads().startswith(f"{current}, re-chosen")  # unset: torch's own count, then training's choice
    assert torch.get_num_threads() == current
    monkeypatch.setenv("HW8_THREADS", "1")
    try:
        assert configure_threads() == "1 (HW8_THREADS)" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(current)
    monkeypatch.setenv("HW8_THREADS", "many")
    with pytest.raises(ValueError, match="HW8_THREADS"):
        configure_threads()
