"""The frame strip: a few sequences, a handful of frames each, drawn black on white (PNG via Pillow).

Pillow, not matplotlib: the generate stages draw one on every run, and matplotlib alone takes
most of a second to load, longer than generating thousands of sequences. Curves (training,
ROC, confusion matrix) are drawn by DVC's plot templates from the data the stages write.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from movingline.data.labels import LABEL_NAMES


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
