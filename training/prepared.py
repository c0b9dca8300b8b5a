"""MNIST splits passed through the serving normalisation, computed once and cached on disk.

The model must see exactly what the service will show it, so every split (train, val and test) goes
through phonereader.normalize.normalize_digit. That is numpy per image (~20 s for all 70,000), so the
result is cached under runs/cache/ keyed by the data files' md5 and the normalize source hash.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import numpy as np
from tqdm import tqdm

from phonereader import ROOT, normalize
from training.data import VAL_SIZE, checksums, load_mnist

CACHE = ROOT / "runs" / "cache"


def normalize_version() -> str:
    """VERSION plus a hash of the recipe's source, so an unbumped edit still invalidates caches."""
    src = inspect.getsource(normalize).encode()
    return f"{normalize.VERSION}+{hashlib.sha256(src).hexdigest()[:8]}"


def normalize_images(images: np.ndarray, desc: str = "normalize") -> np.ndarray:
    """uint8 or float (N,H,W) ink images (white on black) -> (N,28,28) float32 serving tensors."""
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    out = np.zeros((len(images), 28, 28), np.float32)
    for i in tqdm(range(len(images)), desc=desc, leave=False, disable=len(images) < 2000):
        out[i] = normalize.normalize_digit(images[i].astype(np.float32) / scale)
    return out


def prepared_split(
    split: str, root: Path | str | None = None, val_size: int = VAL_SIZE, cache: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(N,28,28) float32 normalised digits and int64 labels for train, val or test.

    Only the md5-checked IDX files are cached: a PNG folder has no checksum to key the cache on.
    """
    images, labels = load_mnist(split, root, val_size=val_size)
    sums = checksums(root)
    cache = cache and len(sums) == 4
    key = hashlib.sha256(
        (repr(sorted(sums.items())) + normalize_version() + f"{split}/{len(images)}/{val_size}").encode()
    ).hexdigest()[:16]
    path = CACHE / f"mnist-{split}-{key}.npz"
    if cache and path.is_file():
        with np.load(path, allow_pickle=False) as f:
            if f["x"].shape == (len(images), 28, 28) and np.array_equal(f["y"], labels):
                return f["x"], labels
    x = normalize_images(images, desc=f"normalize {split}")
    if cache:
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, y=labels)
        tmp.replace(path)
    return x, labels
