"""Question 1's summarizer: corpus loading (`summarizer.data`), tokenizer, encoder-decoder model, training, decoding.

Import the submodules directly (e.g. `from summarizer.data import load_corpus`); nothing heavy is imported here.
"""
