"""Parameter sweeps as DVC experiments, on DVC's local queue or as one Slurm job array.

Run it with `python -m experiments.sweep`; see docs/scaling.md.
"""
