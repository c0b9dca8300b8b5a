"""Tiny MNIST-format data sets of font-rendered digits, written as IDX .gz files or PNG folders.

Tests and smoke runs need data in exactly the formats the loaders read, without the real MNIST files
(CI machines may not have them) and in seconds. Rendered digits with random size, slant, position and
stroke width are easy but not trivial to learn: a short training run must beat chance by far.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def render_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 (28,28) white-on-black digits and their int64 labels, balanced over 0..9."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 10
    rng.shuffle(labels)
    images = np.zeros((n, 28, 28), np.uint8)
    for i, d in enumerate(labels):
        font = ImageFont.load_default(size=int(rng.integers(16, 24)))
        canvas = Image.new("L", (56, 56), 0)
        ImageDraw.Draw(canvas).text((28, 28), str(d), fill=255, font=font, anchor="mm",
                                    stroke_width=int(rng.integers(0, 2)), stroke_fill=255)  # fmt: skip
        canvas = canvas.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR)
        dx, dy = rng.integers(-3, 4, size=2)
        images[i] = np.asarray(canvas.crop((14 + dx, 14 + dy, 42 + dx, 42 + dy)))
    return images, labels


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format: magic 0x00000800+ndim, big-endian dims, then the uint8 data (gzip when path ends .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def write_idx_set(root: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """The four MNIST file names under root, holding rendered digits."""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        x, y = render_digits(n, s)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", y)
    return root


def write_png_set(root: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """The tutorials' layout: root/training/0..9/*.png and root/testing/0..9/*.png."""
    for folder, n, s in (("training", n_train, seed), ("testing", n_test, seed + 1)):
        x, y = render_digits(n, s)
        for i, (img, d) in enumerate(zip(x, y)):
            (root / folder / str(d)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / folder / str(d) / f"{i:05d}.png")
    return root
