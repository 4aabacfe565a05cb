"""The predict stage's picture: each sequence coloured by drawing time, captioned (via matplotlib)."""

from pathlib import Path

import numpy as np


def save_prediction_grid(
    times: np.ndarray,
    probabilities: np.ndarray,
    captions: list[str],
    correct: list[bool | None],
    path: Path,
    n_columns: int = 4,
) -> None:
    """Each sequence as one picture coloured by drawing time (``sequences.drawing_times``), captioned;
    the caption is green where ``correct``, red where not, black where unknown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(captions)
    n_rows = max(1, -(-n // n_columns))
    figure, axes = plt.subplots(n_rows, n_columns, figsize=(2.6 * n_columns, 3.3 * n_rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if index >= n:
            axis.set_visible(False)
            continue
        size = times.shape[-1]
        axis.imshow(times[index], cmap="viridis", vmin=0, vmax=size - 1, interpolation="nearest")
        color = {None: "black", True: "green", False: "red"}[correct[index]]
        axis.set_title(f"#{index}  P(right) = {probabilities[index]:.3f}\n{captions[index]}", fontsize=8, color=color)
    figure.suptitle("Colour shows when each pixel was drawn: purple first, yellow last", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
