"""Clean an ink map before cutting: flatten uneven paper, stretch faint ink, binarise, deskew.

A canvas drawing arrives clean (paper 0, strokes 1); a photo of paper does not (a gray gradient, blue
ink at 0.5, JPEG ringing). Everything downstream (components, separators, box lines) uses fixed
thresholds, so this module's job is to make every input look like the canvas case. It works on a
coarse grid where it can, because a line image has a budget of about 2 ms in total.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

BLOCK = 8  # pixels per cell of the coarse background grid
WINDOW = 7  # cells: the background is the faintest level within WINDOW*BLOCK pixels, wider than a stroke
MIN_CONTRAST = 0.15  # ink fainter than this over its paper is noise, however much we could stretch it
MAX_GAIN = 4.0
LOW, HIGH = 0.3, 0.55  # hysteresis: a stroke is pixels above LOW that touch at least one above HIGH


def flatten(ink: np.ndarray) -> np.ndarray:
    """Subtract the local paper level and stretch the strokes to about 1.

    The paper level is a min filter over a coarse grid (the strokes are thinner than the window, so
    the minimum is paper), smoothed and brought back to full size only when the paper is uneven.
    """
    ink = np.asarray(ink, dtype=np.float32)
    h, w = ink.shape
    if h == 0 or w == 0:
        return ink
    if h < BLOCK or w < BLOCK:
        cells = np.full((1, 1), float(np.median(ink)), np.float32)
    else:
        cells = block_means(ink, BLOCK)
    size = (min(WINDOW, cells.shape[0] * 2 - 1), min(WINDOW, cells.shape[1] * 2 - 1))
    paper = ndimage.minimum_filter(cells, size=size, mode="nearest")
    paper = ndimage.uniform_filter(paper, size=size, mode="nearest")
    lo, hi = float(paper.min()), float(paper.max())
    if hi - lo < 0.04:  # even paper (every canvas, most scans): one level for the whole image
        out = ink - float(np.median(paper))
    else:
        full = np.asarray(Image.fromarray(paper.astype(np.float32)).resize((w, h), Image.BILINEAR))
        out = ink - full
    level = _stroke_level(out)
    if level >= MIN_CONTRAST:
        out = out * min(MAX_GAIN, 1.0 / level)
    return np.clip(out, 0.0, 1.0, out=out)


def _stroke_level(ink: np.ndarray) -> float:
    """The typical value of stroke cores: the median of the pixels above half the (robust) peak.

    A strided subsample of about 4k pixels is plenty and keeps this O(1) in the image size.
    """
    flat = ink.ravel()
    sample = flat[:: max(1, flat.size // 4_000)]
    k = max(1, sample.size // 500)
    # the k-th largest, the 99.8th percentile (one hot pixel is not the peak); partitioned from the top,
    # since numpy's partition near the end of an array full of equal paper values is 6x slower
    peak = -float(np.partition(-sample, k - 1)[k - 1])
    strong = sample[sample > 0.5 * peak]
    return float(np.median(strong)) if strong.size and peak > 0 else 0.0


def binarize(ink: np.ndarray) -> np.ndarray:
    """Hysteresis threshold: faint anti-aliased edges stay attached to their stroke, faint specks go."""
    return strokes(ink)[0] > 0


def strokes(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels (8-connected, 1..n) of the hysteresis mask in one labelling pass: a component of the
    low mask is kept whole or dropped whole, so its label is already a stroke label."""
    labels, n = ndimage.label(ink > LOW, structure=np.ones((3, 3), bool))
    if n == 0:
        return labels, 0
    keep = np.bincount(labels[ink > HIGH], minlength=n + 1) > 0
    keep[0] = False
    if keep[1:].all():  # nothing faint to drop (every clean canvas): the labels stand as they are
        return labels, n
    new = np.zeros(n + 1, labels.dtype)
    new[keep] = np.arange(1, int(keep.sum()) + 1, dtype=labels.dtype)
    return new[labels], int(keep.sum())


def skew_angle(x: np.ndarray, y: np.ndarray) -> float:
    """Degrees of a text line's slope from the centres of its glyphs: the median of all pairwise slopes
    (Theil-Sen), which a bracket or a raised digit cannot drag."""
    if len(x) < 3:
        return 0.0
    i, j = np.triu_indices(len(x), 1)
    dx, dy = x[j] - x[i], y[j] - y[i]
    far = np.abs(dx) > 1e-6
    if not far.any():
        return 0.0
    s = np.sort(dy[far] / dx[far])  # a few dozen slopes: sorting beats np.median's overhead
    n = len(s)
    return float(np.degrees(np.arctan((s[n // 2] + s[(n - 1) // 2]) / 2.0)))


def rotate(ink: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate counter-clockwise by ``degrees`` about the centre, growing the canvas; paper stays 0."""
    return np.asarray(Image.fromarray(ink.astype(np.float32)).rotate(degrees, Image.BILINEAR, expand=True), np.float32)


def downscale(ink: np.ndarray, factor: int) -> np.ndarray:
    """Shrink by an integer ``factor`` with block means, so thin strokes fade rather than vanish.

    Integer blocks cost a fraction of a general resampling; the cutting rules are
    relative to the digit height, so landing on 40 rather than exactly 32 pixels does not matter.
    """
    k = int(factor)
    if k <= 1:
        return np.asarray(ink, np.float32)
    h, w = ink.shape
    hb, wb = max(1, h // k), max(1, w // k)
    if h < k or w < k:
        return np.asarray(Image.fromarray(np.asarray(ink, np.float32)).resize((wb, hb), Image.BOX), np.float32)
    return block_means(ink, k)


def block_means(ink: np.ndarray, k: int) -> np.ndarray:
    """Means of the whole k x k blocks (a partial last row or column of blocks is dropped).

    Pillow's ``reduce`` runs small factors 2-3x faster than numpy; for large blocks (the background
    grid's 8) numpy's sums, one axis at a time, win.
    """
    h, w = ink.shape
    hb, wb = h // k, w // k
    if k <= 4:
        a = np.ascontiguousarray(ink[: hb * k, : wb * k], np.float32)
        return np.asarray(Image.fromarray(a, "F").reduce(k), np.float32)
    a = np.asarray(ink[: hb * k, : wb * k], np.float32)
    return a.reshape(hb, k, wb * k).sum(1).reshape(hb, wb, k).sum(2) * np.float32(1.0 / (k * k))
