"""Fixtures every test file may use. Area-specific helpers live beside their tests."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from phonereader.config import Settings

MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST folder, or a skip that says where it was looked for."""
    path = Settings().mnist_dir
    if not all((path / name).exists() for name in MNIST_FILES):
        pytest.skip(f"MNIST IDX files not found in {path} (set PHONEREADER_MNIST_DIR)")
    return path


@pytest.fixture(scope="session")
def mnist_test_sample(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first 2,000 MNIST test digits (uint8, 28x28) and labels, read without torch."""
    with gzip.open(mnist_dir / MNIST_FILES[0]) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:2000]
    with gzip.open(mnist_dir / MNIST_FILES[1]) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:2000].astype(np.int64)
    return images, labels
