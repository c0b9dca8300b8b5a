"""MNIST from the four original IDX .gz files (md5-checked) or the tutorials' PNG-folder layout.

numpy only, on purpose: the synthetic evaluation sets and the recognition tests import these readers
without torch. Every error names the file, because "wrong shape" from deep inside numpy helps nobody.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import urllib.request
from pathlib import Path
from typing import Literal

import numpy as np

FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
VAL_SIZE = 5_000  # the last 5,000 training images: checkpoints and temperature are picked on them
Split = Literal["train", "val", "test"]


class DataError(RuntimeError):
    """A data file is missing, corrupt or not the one we expect; the message names it."""


def md5(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def read_idx(path: Path, expected_md5: str | None = None) -> np.ndarray:
    """Read one IDX file (gzip or raw). The header says dtype and shape; we only accept uint8 data."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if expected_md5 is not None and (got := md5(path)) != expected_md5:
        raise DataError(f"{path}: md5 {got} does not match the expected {expected_md5}; re-download it")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim < 1 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise DataError(f"{path}: header says {shape} ({size} bytes) but the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def download(root: Path) -> None:
    """Fetch the IDX files from the public mirrors, keeping only copies whose md5 matches."""
    root.mkdir(parents=True, exist_ok=True)
    for name, digest in FILES.items():
        target = root / name
        if target.is_file() and md5(target) == digest:
            continue
        errors = []
        for mirror in MIRRORS:
            tmp = target.with_suffix(".part")
            try:
                with urllib.request.urlopen(mirror + name, timeout=30) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
            except OSError as e:
                errors.append(f"{mirror}: {e}")
                continue
            if md5(tmp) == digest:
                tmp.replace(target)
                break
            tmp.unlink(missing_ok=True)
            errors.append(f"{mirror}: wrong md5")
        else:
            raise DataError(
                f"{target}: missing and could not be downloaded ({'; '.join(errors)}). "
                f"Put the four MNIST IDX .gz files ({', '.join(FILES)}) in {root} "
                "or pass --data PATH (PHONEREADER_MNIST_DIR)."
            )


def read_png_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The tutorials' layout: folder/0..9/*.png, 28x28 grayscale, white digit on black."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    images, labels = [], []
    for digit in range(10):
        for png in sorted((folder / str(digit)).glob("*.png")):
            try:
                with Image.open(png) as im:
                    a = np.asarray(im.convert("L"), dtype=np.uint8)
            except (OSError, UnidentifiedImageError) as e:
                raise DataError(f"{png}: cannot read image ({e})") from None
            if a.shape != (28, 28):
                raise DataError(f"{png}: expected a 28x28 image, got {a.shape[1]}x{a.shape[0]}")
            images.append(a)
            labels.append(digit)
    if not images:
        raise DataError(f"{folder}: no PNG files under {folder}/0..9/")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _read_split(root: Path, prefix: str, md5s: dict[str, str] | None) -> tuple[np.ndarray, np.ndarray]:
    folder = root / ("training" if prefix == "train" else "testing")
    if folder.is_dir():
        x, y = read_png_folder(folder)
        if prefix == "train":  # the folders are sorted by class: shuffle (fixed seed) so val holds every class
            order = np.random.default_rng(0).permutation(len(y))
            x, y = x[order], y[order]
        return x, y
    names = f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"
    x, y = (read_idx(root / n, None if md5s is None else md5s.get(n)) for n in names)
    if x.ndim != 3 or x.shape[1:] != (28, 28) or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{root / f'{prefix}-images-idx3-ubyte.gz'}: images {x.shape} do not match labels {y.shape}")
    return x, y.astype(np.int64)


def load_mnist(
    split: Split, root: Path | str | None = None, *, val_size: int = VAL_SIZE, md5s: dict[str, str] | None = FILES
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N,28,28) and labels int64 (N,). val is the last 5,000 training images, train the rest.

    ``root`` holds either the IDX .gz files or training/ and testing/ PNG folders. With no root we use
    Settings().mnist_dir and try to download into it when the files are missing. ``md5s`` maps IDX file
    names to their expected md5 (None skips the check, for test fixtures).
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, not {split!r}")
    if root is None:
        from phonereader.config import get_settings

        root = Path(get_settings().mnist_dir)
        has_png = (root / "training").is_dir() and (root / "testing").is_dir()
        if not has_png and not all((root / name).is_file() for name in FILES):
            download(root)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found; put the four MNIST IDX .gz files there")
    x, y = _read_split(root, "t10k" if split == "test" else "train", md5s)
    if split == "test":
        return x, y
    if not 0 < val_size < len(x):
        raise DataError(f"{root}: {len(x)} training images cannot hold out {val_size} for val")
    return (x[:-val_size], y[:-val_size]) if split == "train" else (x[-val_size:], y[-val_size:])


def checksums(root: Path | str | None = None) -> dict[str, str]:
    """md5 of each data file, recorded in the model card so a model names the exact data it saw."""
    if root is None:
        from phonereader.config import get_settings

        root = get_settings().mnist_dir
    root = Path(root)
    return {name: md5(root / name) for name in FILES if (root / name).is_file()}
