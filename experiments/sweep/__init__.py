"""Parameter sweeps as DVC experiments, on DVC's local queue or as a Slurm job array; run it with `python -m experiments.sweep`."""
