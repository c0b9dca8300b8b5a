"""Turn any crop of one digit into the 28x28 tensor the model was trained on.

Training and serving both call :func:`normalize_digit`, so what the model learned and what it is shown
cannot drift apart. The recipe is MNIST's own (bounding box scaled into 20x20 keeping the aspect ratio,
centre of mass at the centre of 28x28) plus one step MNIST lacks: stroke width is brought to MNIST's
typical width. A thin canvas brush or a fat marker would otherwise look like a different digit; the
tutorials' "a high 7 reads as 5" came from skipping the bounding-box and centring steps.
"""

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

VERSION = "1"  # stored in every model card; bump when the recipe changes (the model must be retrained)

SIZE = 28  # model input side
BOX = 20  # the digit's longer side inside the frame, as in MNIST
WORK = 60  # side of the working canvas where stroke width is adjusted (3x the box, for sub-pixel control)
TARGET_WIDTH = 2.7  # MNIST's median stroke width, in pixels of the 20-pixel box (see test_normalize)
MIN_INK = 0.2  # pixels fainter than this (of the crop's peak) do not count as ink


def stroke_width(binary: np.ndarray) -> float:
    """Mean stroke width of a binary glyph: area over half the boundary length (exact for long strokes)."""
    area = int(binary.sum())
    if area == 0:
        return 0.0
    inner = binary.copy()  # pixels whose four neighbours are all ink
    inner[1:, :] &= binary[:-1, :]
    inner[:-1, :] &= binary[1:, :]
    inner[:, 1:] &= binary[:, :-1]
    inner[:, :-1] &= binary[:, 1:]
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    return 2.0 * area / max(area - int(inner.sum()), 1)


@lru_cache(maxsize=None)
def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius + radius  # a little rounder than the strict disk


def _fit(crop: np.ndarray, side: int) -> np.ndarray:
    """Scale ``crop`` so its longer side is ``side`` pixels, keeping the aspect ratio."""
    h, w = crop.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(crop).resize(size, Image.BILINEAR if scale > 1 else Image.BOX))


def _set_width(glyph: np.ndarray) -> np.ndarray:
    """Dilate or erode a glyph on the working canvas so its strokes have the target width."""
    width = stroke_width(glyph > 0.5)
    target = TARGET_WIDTH * WORK / BOX
    radius = int(round(abs(target - width) / 2))
    if radius == 0 or width == 0:
        return glyph
    if width < target:
        return ndimage.grey_dilation(glyph, footprint=_disk(radius))
    radius = min(radius, max(int(width / 2) - 1, 0))  # never erode a stroke away
    return ndimage.grey_erosion(glyph, footprint=_disk(radius)) if radius else glyph


def _centre(box: np.ndarray) -> np.ndarray:
    """Place the scaled glyph in 28x28 with its centre of mass at the centre, as MNIST did."""
    out = np.zeros((SIZE, SIZE), np.float32)
    h, w = box.shape
    mass = float(box.sum())
    cy = float(box.sum(axis=1) @ np.arange(h)) / mass
    cx = float(box.sum(axis=0) @ np.arange(w)) / mass
    top = int(np.clip(round(SIZE / 2 - cy), 0, SIZE - h))
    left = int(np.clip(round(SIZE / 2 - cx), 0, SIZE - w))
    out[top : top + h, left : left + w] = box
    return out


def normalize_digit(ink: np.ndarray) -> np.ndarray:
    """Map an ink crop ((H, W) floats, 1 = ink, 0 = paper, any size) to a (28, 28) float32 in [0, 1].

    A crop with no ink gives all zeros; callers decide what an empty crop means.
    """
    ink = np.asarray(ink, dtype=np.float32)
    peak = float(ink.max()) if ink.size else 0.0
    if peak <= 0.0:
        return np.zeros((SIZE, SIZE), np.float32)
    ink = ink / peak
    rows = np.flatnonzero((ink > MIN_INK).any(axis=1))
    cols = np.flatnonzero((ink > MIN_INK).any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    glyph = _set_width(_fit(crop, WORK))
    box = _fit(glyph, BOX)
    return _centre(np.clip(box / max(float(box.max()), 1e-6), 0.0, 1.0))


def normalize_batch(inks: Sequence[np.ndarray]) -> np.ndarray:
    """Normalise many crops into one (N, 28, 28) float32 array, ready to batch."""
    out = np.zeros((len(inks), SIZE, SIZE), np.float32)
    for i, ink in enumerate(inks):
        out[i] = normalize_digit(ink)
    return out
