"""Did this machine compute what the project committed? The two user commands that answer it.

- verify (`bash run.sh verify`, `python -m reproduction.verify`): a workspace after `dvc
  repro` against what git's HEAD records (dvc.lock, metrics.json, training.json), in one
  verdict: bit-identical, reproduced within tolerance, or not reproduced.
- fingerprint (`bash run.sh fingerprint`, `python -m reproduction.fingerprint`): one line
  naming the CPU, the kernel path and the md5 of a small model trained here, to tell which
  bits a machine computes before training the real one.

Users run them (run.sh's repro, verify and fingerprint jobs; .ci/run); docs/reproducibility.md
explains both. No stage imports this package: it only reads what the pipeline wrote.
"""
