"""Benchmarks: softmax vs kernelized linear attention (bench_attention.py) and the summarizer's time-to-quality."""
