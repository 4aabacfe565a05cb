"""Pictures of sequences: frame strips and captioned predictions (PNG, via matplotlib).

Curves (training, ROC, confusion matrix) are not drawn here: the stages write their data
and DVC's plot templates draw them.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DIRECTION_NAMES = {0: "Left", 1: "Right"}


def caption(expected: int | None, predicted: int) -> str:
    """The reference's prediction line, e.g. "Expected: Right, Predicted: Right"."""
    expected_name = "?" if expected is None else DIRECTION_NAMES[int(expected)]
    return f"Expected: {expected_name}, Predicted: {DIRECTION_NAMES[int(predicted)]}"


def save_frame_strip(frames: np.ndarray, labels: np.ndarray, path: Path, n_steps: int = 8) -> None:
    """One row per sequence showing ``n_steps`` frames evenly spread over time."""
    n_sequences, size = frames.shape[0], frames.shape[1]
    steps = np.unique(np.linspace(0, size - 1, min(n_steps, size)).round().astype(int))
    figure, axes = plt.subplots(
        n_sequences, len(steps), figsize=(1.3 * len(steps), 1.45 * n_sequences), squeeze=False
    )
    for row, (sequence, label) in enumerate(zip(frames, labels)):
        for column, step in enumerate(steps):
            axis = axes[row, column]
            axis.imshow(sequence[step, :, :, 0], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(f"frame {step}", fontsize=8)
        axes[row, 0].set_ylabel(DIRECTION_NAMES[int(label)], fontsize=9)
    figure.suptitle(f"Moving-line sequences ({size}x{size}, {size} frames)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def drawing_times(frames: np.ndarray) -> np.ndarray:
    """For sequences (n, t, s, s, 1): the frame in which each pixel first appears, NaN where none does."""
    n_frames = frames.shape[1]
    appearances = frames[..., 0].sum(axis=1, dtype=np.int32)
    return np.where(appearances > 0, n_frames - appearances, np.nan)


def save_prediction_grid(
    times: np.ndarray,
    expected: np.ndarray | None,
    predicted: np.ndarray,
    probabilities: np.ndarray,
    path: Path,
    n_columns: int = 4,
) -> None:
    """Each sequence as one picture coloured by drawing time (``drawing_times``), captioned."""
    n = len(predicted)
    n_rows = -(-n // n_columns)
    figure, axes = plt.subplots(n_rows, n_columns, figsize=(2.6 * n_columns, 3.3 * n_rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if index >= n:
            axis.set_visible(False)
            continue
        truth = None if expected is None else int(expected[index])
        size = times.shape[-1]
        axis.imshow(times[index], cmap="viridis", vmin=0, vmax=size - 1, interpolation="nearest")
        color = "black" if truth is None else ("green" if truth == predicted[index] else "red")
        axis.set_title(
            f"#{index}  P(right) = {probabilities[index]:.3f}\n{caption(truth, predicted[index])}",
            fontsize=8,
            color=color,
        )
    figure.suptitle("Colour shows when each pixel was drawn: purple first, yellow last", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
