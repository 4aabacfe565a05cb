"""Learning curves: a sweep on experiments.runner plus its report; run it with `python -m experiments.learning_curve`."""
