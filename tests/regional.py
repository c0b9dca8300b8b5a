"""A synthetic "regional" handwriting style for the corrections loop: the European 1 (a long flag from the
upper left, reaching halfway down) and the crossed 7 (a bar through the stem), drawn on 50x50 canvas boxes the way
the canvas page sends them (black strokes on white, PNG). MNIST's American 1 is a bare stroke, so a
model trained on it reads many of these 1s as 7s; that is the misreading the loop must fix.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

SIZE = 50


def _strokes(digit: str, rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """Polylines in unit coordinates (0..1, y down), jittered per sample."""
    j = lambda s=0.04: float(rng.normal(0, s))  # noqa: E731
    if digit == "1":
        top = (0.55 + j(), 0.12 + j(0.02))
        flag = (0.2 + j(0.05), 0.5 + j(0.06))  # long flag, reaching far down-left
        return [[flag, top, (0.52 + j(0.03), 0.86 + j(0.02))]]
    if digit == "7":
        a, b = (0.2 + j(), 0.16 + j(0.02)), (0.8 + j(), 0.14 + j(0.02))
        bottom = (0.42 + j(0.05), 0.88 + j(0.02))
        mid = ((b[0] + bottom[0]) / 2, (b[1] + bottom[1]) / 2 + j(0.03))
        bar = [(mid[0] - 0.2 + j(0.03), mid[1] + j(0.02)), (mid[0] + 0.2 + j(0.03), mid[1] + j(0.02))]
        return [[(a[0] - 0.02, a[1] + 0.06), a, b, bottom], bar]
    raise ValueError("the regional style has only 1 and 7")


def draw(digit: str, rng: np.random.Generator) -> np.ndarray:
    """uint8 (50, 50) ink: 255 = ink, 0 = paper."""
    scale = 4
    im = Image.new("L", (SIZE * scale, SIZE * scale), 0)
    d = ImageDraw.Draw(im)
    width = int(rng.uniform(3.0, 5.0) * scale)
    slant = rng.normal(0, 0.08)
    for line in _strokes(digit, rng):
        pts = [((x + slant * (0.5 - y)) * SIZE * scale, y * SIZE * scale) for x, y in line]
        d.line(pts, fill=255, width=width, joint="curve")
        for x, y in pts:
            r = width / 2
            d.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(im.resize((SIZE, SIZE), Image.LANCZOS))


def box_png(ink: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(255 - ink, "L").save(buf, "PNG")
    return buf.getvalue()


def samples(n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """n (label, ink) pairs, half 1s and half 7s, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    return [(("1", "7")[i % 2], draw(("1", "7")[i % 2], rng)) for i in range(n)]
