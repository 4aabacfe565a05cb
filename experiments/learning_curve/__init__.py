"""Learning curves through DVC's experiment queue; run it with `python -m experiments.learning_curve`."""
