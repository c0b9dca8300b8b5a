"""Cut the canvas page's row of boxes: one image per digit, so cutting is only "is anything here?".

The whole box's ink is the digit (a broken 5 is still one 5), except specks and a drawn frame.
A box with no real ink is reported empty: guessing a digit from a stray tap is worse than asking.
"""

from __future__ import annotations

import numpy as np

from worker.recognition import ink as inkmod
from worker.recognition.glyphs import components

MIN_EXTENT = 0.1  # a mark smaller than this fraction of the box side is a tap, not a digit
SPECK = 0.04


def cut_box(ink: np.ndarray) -> tuple[np.ndarray | None, tuple[int, int, int, int]]:
    """(ink crop of the digit or None when the box is empty, its box in this image)."""
    ink = np.asarray(ink, np.float32)
    h, w = ink.shape
    whole = (0, 0, w, h)
    if h == 0 or w == 0:
        return None, whole
    flat = inkmod.flatten(ink)
    c = components(inkmod.binarize(flat))
    if c.n == 0:
        return None, whole
    side = min(h, w)
    frame = ((c.w >= 0.9 * w) & (c.h <= 0.08 * h)) | ((c.h >= 0.9 * h) & (c.w <= 0.08 * w))  # a border line
    keep = (np.maximum(c.w, c.h) >= SPECK * side) & ~frame
    if keep.any():
        big = c.area[keep].max()
        keep &= c.area >= 0.03 * big  # crumbs far smaller than the digit's strokes
    if not keep.any():
        return None, whole
    x0, y0 = int(c.x0[keep].min()), int(c.y0[keep].min())
    x1, y1 = int(c.x1[keep].max()), int(c.y1[keep].max())
    if max(x1 - x0, y1 - y0) < MIN_EXTENT * side:
        return None, whole
    if (y1 - y0) < 0.12 * side and (x1 - x0) > 2 * (y1 - y0):  # a dash drawn as a separator
        return None, whole
    ids = np.flatnonzero(keep) + 1
    lab = c.labels[y0:y1, x0:x1]
    crop = np.where(np.isin(lab, ids), flat[y0:y1, x0:x1], 0.0).astype(np.float32)
    return crop, (x0, y0, x1, y1)
