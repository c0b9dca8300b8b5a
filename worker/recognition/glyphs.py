"""Shared pieces of cutting: connected components with their boxes, and the coordinate frame that maps a
working image (downscaled, deskewed) back to the source image the user sent.

Boxes are half-open ``(x0, y0, x1, y1)`` everywhere, as numpy slices are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

EIGHT = np.ones((3, 3), bool)


@dataclass
class Components:
    """Connected components of a binary image, as parallel arrays (vectorised geometry beats per-blob loops)."""

    labels: np.ndarray  # int32 (H, W), 0 = background, component k has label k + 1
    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    area: np.ndarray

    @property
    def n(self) -> int:
        return len(self.x0)

    @property
    def w(self) -> np.ndarray:
        return self.x1 - self.x0

    @property
    def h(self) -> np.ndarray:
        return self.y1 - self.y0

    @property
    def cx(self) -> np.ndarray:
        return (self.x0 + self.x1) / 2.0

    @property
    def cy(self) -> np.ndarray:
        return (self.y0 + self.y1) / 2.0


def components(mask: np.ndarray) -> Components:
    labels, n = ndimage.label(mask, structure=EIGHT)
    return from_labels(labels, n)


def from_labels(labels: np.ndarray, n: int) -> Components:
    objs = ndimage.find_objects(labels, max_label=n)
    box = np.array([(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in objs], dtype=np.int64).reshape(-1, 4)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:] if n else np.zeros(0, np.int64)
    return Components(labels, box[:, 0], box[:, 1], box[:, 2], box[:, 3], area)


@dataclass
class Frame:
    """Maps working-image coordinates back to the source: undo a rotation, then a scale, then an offset.

    ``angle`` is the counter-clockwise rotation (degrees) that was applied to the scaled image of
    size ``scaled_shape``, giving a working image of size ``work_shape``.
    """

    scale: float = 1.0
    offset: tuple[int, int] = (0, 0)  # (x, y) of the scaled image's origin in the source
    angle: float = 0.0
    scaled_shape: tuple[int, int] = (0, 0)
    work_shape: tuple[int, int] = (0, 0)
    source_shape: tuple[int, int] = (0, 0)

    def to_source(self, box) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = (float(v) for v in box)
        if self.angle:
            pts = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64)
            hw, ww = self.work_shape
            hs, ws = self.scaled_shape
            d = pts - [ww / 2.0, hw / 2.0]
            c, s = np.cos(np.radians(self.angle)), np.sin(np.radians(self.angle))
            # inverse of x' = c dx + s dy, y' = -s dx + c dy (PIL's counter-clockwise rotation, y down)
            orig = np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], 1) + [ws / 2.0, hs / 2.0]
            x0, y0 = orig.min(0)
            x1, y1 = orig.max(0)
        ox, oy = self.offset
        H, W = self.source_shape
        s = self.scale
        bx0 = min(max(math.floor(x0 * s) + ox, 0), W)
        by0 = min(max(math.floor(y0 * s) + oy, 0), H)
        bx1 = min(max(math.ceil(x1 * s) + ox, bx0), W)
        by1 = min(max(math.ceil(y1 * s) + oy, by0), H)
        return bx0, by0, bx1, by1
