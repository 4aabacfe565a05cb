"""Where a training run stands: its steps, curve, best weights, patience and time.

Plain data and its own rules, with no TensorFlow and no file format: the session
(session.py) changes it, the checkpoint (checkpoint.py) stores it.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CurveRow:
    """One step of the training curve; the validation columns are None where not measured."""

    step: int
    epoch: int
    loss: float
    accuracy: float
    val_loss: float | None = None
    val_accuracy: float | None = None


@dataclass
class TrainingState:
    """Where training stands after ``step`` steps: what a checkpoint holds."""

    step: int
    weights: list[np.ndarray]
    optimizer: list[np.ndarray]
    curve: list[CurveRow] = field(default_factory=list)
    best_weights: list[np.ndarray] | None = None
    best_loss: float | None = None
    best_step: int | None = None
    since_best: int = 0  # validations since the best one, for early stopping
    seconds: float = 0.0  # training time so far, over every run that continued it

    def add(self, row: CurveRow) -> None:
        """Records a step taken."""
        self.curve.append(row)
        self.step = row.step

    def is_new_best(self, row: CurveRow) -> bool:
        """Counts a validation without improvement, or records ``row`` as the new best; True for a new best."""
        if self.best_loss is None or row.val_loss < self.best_loss:
            self.best_loss, self.best_step, self.since_best = row.val_loss, row.step, 0
            return True
        self.since_best += 1
        return False

    def out_of_patience(self, patience: int) -> bool:
        """Whether ``patience`` validations in a row brought no lower loss (never with patience 0)."""
        return bool(patience) and self.since_best >= patience
