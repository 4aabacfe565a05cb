"""Pictures of sequences: frame strips (PNG via Pillow) and captioned predictions (via matplotlib).

Curves (training, ROC, confusion matrix) are not drawn here: the stages write their data
and DVC's plot templates draw them. The frame strip is drawn with Pillow because the
generate stages draw one on every run and matplotlib alone takes most of a second to
load, longer than generating thousands of sequences; matplotlib loads only for predictions.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from movingline.labels import LABEL_NAMES


def save_frame_strip(frames: np.ndarray, labels: np.ndarray, path: Path, n_steps: int = 8) -> None:
    """One row per sequence showing ``n_steps`` frames evenly spread over time, drawn black on white."""
    n_sequences, size = frames.shape[0], frames.shape[1]
    steps = np.unique(np.linspace(0, size - 1, min(n_steps, size)).round().astype(int))
    scale = max(1, 100 // size)
    side, gap, margin_left, margin_top = size * scale, 12, 50, 48
    width = margin_left + len(steps) * (side + gap)
    height = margin_top + n_sequences * (side + gap)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=11)

    def write(text: str, center_x: float, center_y: float) -> None:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        draw.text((center_x - (right + left) / 2, center_y - (bottom + top) / 2), text, fill=0, font=font)

    write(f"Moving-line sequences ({size}x{size}, {size} frames)", width / 2, 12)
    for row, (sequence, label) in enumerate(zip(frames, labels)):
        y = margin_top + row * (side + gap)
        write(LABEL_NAMES[int(label)].capitalize(), margin_left / 2, y + side / 2)
        for column, step in enumerate(steps):
            x = margin_left + column * (side + gap)
            if row == 0:
                write(f"frame {step}", x + side / 2, margin_top - 10)
            pixels = (255 - 255 * sequence[step, :, :, 0]).astype(np.uint8)
            image.paste(Image.fromarray(pixels.repeat(scale, axis=0).repeat(scale, axis=1)), (x, y))
            draw.rectangle((x - 1, y - 1, x + side, y + side), outline=0)
    image.save(path, format="PNG")


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
