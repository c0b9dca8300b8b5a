"""MNIST test digits under the shifts the service meets, each put through the serving normalisation.

A model that scores 99.5% on MNIST can still drop to 95-97% on other people's handwriting. These
shifts imitate what canvases and scans change (stroke width, rotation, size in the box, dark ink on
white paper, JPEG) so we see the drop here first. numpy/scipy/Pillow only: no model code in here.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from phonereader.normalize import normalize_digit, stroke_width

UP = 4  # thickness changes happen at 4x resolution, so "half as thick" is possible for 2-pixel strokes
BOX = 50  # the canvas page's box side


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def _upsample(ink: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(ink).resize((28 * UP, 28 * UP), Image.BILINEAR))


def thickness(factor: float) -> Callable[[np.ndarray], np.ndarray]:
    """Strokes ``factor`` times as wide: erode or dilate at 4x by the right radius."""

    def shift(ink: np.ndarray) -> np.ndarray:
        big = _upsample(ink)
        width = stroke_width(big > 0.5)
        radius = int(round(abs(factor - 1) * width / 2))
        if radius == 0:
            return big
        if factor > 1:
            return ndimage.grey_dilation(big, footprint=_disk(radius))
        return ndimage.grey_erosion(big, footprint=_disk(radius))

    return shift


def rotation(degrees: float) -> Callable[[np.ndarray], np.ndarray]:
    def shift(ink: np.ndarray) -> np.ndarray:
        return ndimage.rotate(ink, degrees, reshape=True, order=1, mode="constant", cval=0.0)

    return shift


def _in_box(ink: np.ndarray, side: int) -> np.ndarray:
    """Re-draw the digit with its longer side ``side`` pixels, centred in a 50x50 box (ink map)."""
    rows, cols = np.flatnonzero(ink.max(1) > 0.05), np.flatnonzero(ink.max(0) > 0.05)
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    glyph = np.clip(np.asarray(Image.fromarray(crop).resize(size, Image.BILINEAR)), 0, 1)
    box = np.zeros((BOX, BOX), np.float32)
    top, left = (BOX - size[1]) // 2, (BOX - size[0]) // 2
    box[top : top + size[1], left : left + size[0]] = glyph
    return box


def redrawn(side: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda ink: _in_box(ink, side)


def _as_canvas(ink: np.ndarray) -> Image.Image:
    """What the canvas page sends: dark strokes on white, 8-bit gray, 50x50."""
    gray = 1.0 - _in_box(ink, 36)
    return Image.fromarray(np.round(gray * 255).astype(np.uint8))


def _to_ink(img: Image.Image) -> np.ndarray:
    """What the pipeline does with a gray image of dark ink on light paper: ink = 1 - gray."""
    return 1.0 - np.asarray(img.convert("L"), np.float32) / 255.0


def dark_on_white(ink: np.ndarray) -> np.ndarray:
    return _to_ink(_as_canvas(ink))


def jpeg(quality: int) -> Callable[[np.ndarray], np.ndarray]:
    def shift(ink: np.ndarray) -> np.ndarray:
        buf = io.BytesIO()
        _as_canvas(ink).save(buf, format="JPEG", quality=quality)
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            return _to_ink(im)

    return shift


SHIFTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "clean": lambda ink: ink,
    "strokes x0.5": thickness(0.5),
    "strokes x2": thickness(2.0),
    "rotate +15": rotation(15),
    "rotate -15": rotation(-15),
    "small in 50x50 (14 px)": redrawn(14),
    "large in 50x50 (46 px)": redrawn(46),
    "dark ink on white": dark_on_white,
    "JPEG q50": jpeg(50),
}


def shifted(images: np.ndarray, name: str) -> np.ndarray:
    """uint8 (N,28,28) MNIST digits -> (N,28,28) normalised digits after shift ``name``."""
    fn = SHIFTS[name]
    out = np.zeros((len(images), 28, 28), np.float32)
    for i, img in enumerate(images):
        out[i] = normalize_digit(fn(img.astype(np.float32) / 255.0))
    return out
