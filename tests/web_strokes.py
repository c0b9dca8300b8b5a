"""Pen strokes for the digits 0-9, for browser tests that write a number the way a person would.

Each digit is a few strokes of control points in a unit square (x right, y down). Curved strokes are
Catmull-Rom splines through their points, so the browser receives a dense stream of pointer samples
along a smooth path, like a real hand; corner strokes (the 7, the 4) stay straight. The shapes follow
common MNIST handwriting (an open-top 4, a 7 without a bar, a 1 as a single stem), because that is what
the model learned to read.
"""

from __future__ import annotations

import math

Point = tuple[float, float]

# (smooth, control points): a stroke is one pointer-down..pointer-up.
GLYPHS: dict[str, list[tuple[bool, list[Point]]]] = {
    "0": [(True, [(0.5, 0.08), (0.28, 0.2), (0.22, 0.5), (0.3, 0.82), (0.5, 0.92), (0.7, 0.8),
                  (0.77, 0.5), (0.7, 0.2), (0.5, 0.08), (0.4, 0.12)])],
    "1": [(False, [(0.55, 0.08), (0.47, 0.92)])],
    "2": [(True, [(0.24, 0.28), (0.32, 0.12), (0.5, 0.07), (0.68, 0.13), (0.74, 0.3), (0.64, 0.5),
                  (0.44, 0.7), (0.24, 0.9)]),
          (False, [(0.24, 0.9), (0.8, 0.88)])],
    "3": [(True, [(0.26, 0.16), (0.45, 0.07), (0.66, 0.1), (0.74, 0.25), (0.63, 0.41), (0.42, 0.48),
                  (0.63, 0.54), (0.77, 0.7), (0.68, 0.87), (0.47, 0.93), (0.24, 0.85)])],
    "4": [(False, [(0.3, 0.08), (0.22, 0.6), (0.8, 0.6)]),
          (False, [(0.66, 0.1), (0.64, 0.93)])],
    "5": [(True, [(0.32, 0.1), (0.28, 0.46), (0.45, 0.4), (0.65, 0.44), (0.76, 0.63), (0.7, 0.83),
                  (0.5, 0.93), (0.24, 0.86)]),
          (False, [(0.32, 0.1), (0.76, 0.09)])],
    "6": [(True, [(0.66, 0.07), (0.45, 0.25), (0.3, 0.5), (0.28, 0.76), (0.45, 0.93), (0.66, 0.88),
                  (0.74, 0.7), (0.62, 0.54), (0.42, 0.55), (0.3, 0.68)])],
    "7": [(False, [(0.22, 0.1), (0.78, 0.1), (0.42, 0.93)])],
    "8": [(True, [(0.68, 0.17), (0.5, 0.07), (0.31, 0.17), (0.36, 0.36), (0.5, 0.48), (0.69, 0.62),
                  (0.7, 0.82), (0.5, 0.93), (0.3, 0.82), (0.32, 0.62), (0.5, 0.48), (0.65, 0.36),
                  (0.68, 0.17)])],
    "9": [(True, [(0.7, 0.22), (0.52, 0.08), (0.32, 0.18), (0.3, 0.38), (0.5, 0.48), (0.68, 0.38),
                  (0.7, 0.22)]),
          (False, [(0.7, 0.22), (0.62, 0.93)])],
}


def _catmull_rom(points: list[Point], per_segment: int) -> list[Point]:
    """A smooth curve through every control point (uniform Catmull-Rom, ends repeated)."""
    padded = [points[0], *points, points[-1]]
    out: list[Point] = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1 : i + 3]
        for k in range(per_segment):
            t = k / per_segment
            t2, t3 = t * t, t * t * t
            out.append(tuple(  # type: ignore[arg-type]
                0.5 * (2 * p1[j] + (-p0[j] + p2[j]) * t + (2 * p0[j] - 5 * p1[j] + 4 * p2[j] - p3[j]) * t2
                       + (-p0[j] + 3 * p1[j] - 3 * p2[j] + p3[j]) * t3)
                for j in range(2)
            ))
    out.append(points[-1])
    return out


def _densify(points: list[Point], step: float) -> list[Point]:
    """Straight segments sampled every `step`, as a pointer moving along them would be."""
    out: list[Point] = [points[0]]
    for a, b in zip(points, points[1:]):
        n = max(1, math.ceil(math.dist(a, b) / step))
        out += [(a[0] + (b[0] - a[0]) * k / n, a[1] + (b[1] - a[1]) * k / n) for k in range(1, n + 1)]
    return out


def digit_strokes(digit: str) -> list[list[Point]]:
    """The strokes of one digit as dense polylines in the unit square."""
    strokes = []
    for smooth, points in GLYPHS[digit]:
        # About as many samples as a 60-120 Hz pointer gives for a quick stroke; the page smooths between them.
        strokes.append(_catmull_rom(points, 3) if smooth else _densify(points, 0.15))
    return strokes


def place(strokes: list[list[Point]], left: float, top: float, width: float, height: float,
          margin: float = 0.12) -> list[list[Point]]:
    """Map unit-square strokes into a box in page pixels, leaving `margin` of the box free all round."""
    x0, y0 = left + width * margin, top + height * margin
    w, h = width * (1 - 2 * margin), height * (1 - 2 * margin)
    return [[(x0 + x * w, y0 + y * h) for x, y in stroke] for stroke in strokes]


def number_strokes(number: str, left: float, top: float, width: float, height: float,
                   ) -> list[list[Point]]:
    """A whole number written left to right on one line (free-form canvas), digits a little apart."""
    cell = width / len(number)
    size = min(cell / 0.6, height)  # glyphs are ~0.6 of their square wide: keep their aspect, not the cell's
    top += (height - size) / 2
    strokes: list[list[Point]] = []
    for i, digit in enumerate(number):
        left_i = left + i * cell + (cell - size) / 2
        strokes += place(digit_strokes(digit), left_i, top, size, size, margin=0.1)
    return strokes
