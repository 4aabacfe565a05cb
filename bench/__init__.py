"""Benchmarks: the pipeline's stages against the original example's approach (bench/baseline.py), the training
loop against `fit`, and CPU kernel settings. Each measurement is one child process (bench/process.py)."""
