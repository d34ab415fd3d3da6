"""Helpers for the extract-stage tests: PIL-drawn scenes and tiny item tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "features"


def scene(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A natural-ish picture: a sky-to-ground gradient, a sun, a few shapes, slight blur.

    Different seeds give different layouts and palettes; nothing is left-right symmetric.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, h)[:, None, None]
    arr = (top * (1 - ramp) + bottom * ramp).repeat(w, axis=1).astype(np.uint8)  # [h, w, 3]
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    cx, cy, r = int(rng.integers(15, w // 3)), int(rng.integers(10, h // 3)), int(rng.integers(8, 20))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(v) for v in rng.integers(150, 256, 3)))
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w - 30)), int(rng.integers(h // 2, h - 20))
        x1, y1 = x0 + int(rng.integers(10, 50)), y0 + int(rng.integers(8, 30))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=color)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=color)
    for i in range(6):  # a wavy line, like a horizon
        xs = [(t * w / 20) for t in range(21)]
        ys = [h / 2 + 6 * math.sin(t / 3 + seed + i) + i * 3 for t in range(21)]
        draw.line(list(zip(xs, ys)), fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=2)
    return img.filter(ImageFilter.GaussianBlur(0.8))


TEXTS = [
    "A man is playing a guitar on stage.",
    "Red cotton summer dress with short sleeves",
    None,  # missing text
    "Stainless steel kitchen knife, 8 inch",
    "",  # empty text counts as missing
    "Garden hose with brass fittings, 50 ft",
    "Set of 12 coloured pencils for artists",
    "Wooden desk lamp with warm LED bulb",
    "Men's leather wallet, brown",
    "Ceramic coffee mug, 350 ml",
    "Yoga mat, non-slip, purple",
]


def make_params(**extract):
    from mmrec.config import parse_params

    # the fixture's corrupt and missing images are 2 of 10: above the default failure threshold
    ex = {"batch_size": 2, "chunk_size": 4, "num_workers": 0, "max_failed_fraction": 0.5}
    ex.update(extract)
    return parse_params({"device": "cpu", "data": {"name": "t"}, "extract": ex})


