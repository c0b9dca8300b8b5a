"""MNIST loaders on tiny generated IDX and PNG-folder fixtures, and their errors (which name the file)."""

import gzip

import numpy as np
import pytest
from PIL import Image

from phonereader.config import Settings
from training import data
from training.data import DataError, load_mnist, md5, read_idx
from training.toydata import write_idx, write_idx_set, write_png_set


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory):
    return write_idx_set(tmp_path_factory.mktemp("idx"), n_train=120, n_test=40)


def sums(root):
    return {name: md5(root / name) for name in data.FILES}


def test_idx_splits(idx_root):
    x, y = load_mnist("train", idx_root, val_size=20, md5s=sums(idx_root))
    xv, yv = load_mnist("val", idx_root, val_size=20, md5s=sums(idx_root))
    xt, yt = load_mnist("test", idx_root, val_size=20, md5s=sums(idx_root))
    assert (x.shape, xv.shape, xt.shape) == ((100, 28, 28), (20, 28, 28), (40, 28, 28))
    assert x.dtype == np.uint8 and y.dtype == np.int64 and set(yt) == set(range(10))
    full = read_idx(idx_root / "train-images-idx3-ubyte.gz")
    assert np.array_equal(xv, full[-20:]) and np.array_equal(x, full[:-20])  # val = the last images


def test_wrong_checksum_names_the_file(idx_root):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*md5"):
        load_mnist("train", idx_root, val_size=20)  # the real MNIST md5s: the fixture cannot match


def test_corrupt_and_malformed_files(tmp_path):
    x = np.zeros((3, 28, 28), np.uint8)
    write_idx(tmp_path / "good.gz", x)
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes((tmp_path / "good.gz").read_bytes()[:20])
    with pytest.raises(DataError, match="truncated.gz"):
        read_idx(truncated)
    bad_magic = tmp_path / "magic.gz"
    with gzip.open(bad_magic, "wb") as f:
        f.write(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(DataError, match="magic.gz.*magic"):
        read_idx(bad_magic)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + (3).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(100))
    with pytest.raises(DataError, match="short.gz.*header says"):
        read_idx(short)
    with pytest.raises(DataError, match="missing.gz.*not found"):
        read_idx(tmp_path / "missing.gz")
    assert read_idx(tmp_path / "good.gz").shape == (3, 28, 28)


def test_png_folders(tmp_path):
    root = write_png_set(tmp_path, n_train=60, n_test=20)
    x, y = load_mnist("train", root, val_size=10)
    xv, yv = load_mnist("val", root, val_size=10)
    xt, yt = load_mnist("test", root)
    assert x.shape == (50, 28, 28) and xv.shape == (10, 28, 28) and xt.shape == (20, 28, 28)
    assert len(set(yv)) > 3  # shuffled before the split: val is not all nines
    assert np.bincount(np.concatenate([y, yv]), minlength=10).tolist() == [6] * 10
    Image.new("L", (30, 30)).save(root / "testing" / "3" / "wrong_size.png")
    with pytest.raises(DataError, match="wrong_size.png.*28x28"):
        load_mnist("test", root)
    (root / "testing" / "3" / "wrong_size.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="wrong_size.png"):
        load_mnist("test", root)


def test_offline_download_says_where_to_put_files(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=f"Put the four MNIST IDX .gz files.*{tmp_path}"):
        data.download(tmp_path)


def test_download_rejects_a_mirror_with_wrong_bytes(tmp_path, monkeypatch):
    import io

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"evil"))
    with pytest.raises(DataError, match="wrong md5"):
        data.download(tmp_path)
    assert not any(tmp_path.iterdir())  # nothing unverified is left behind


def test_real_mnist_checksums_and_split():
    root = Settings().mnist_dir
    if not all((root / name).is_file() for name in data.FILES):
        pytest.skip(f"MNIST IDX files not in {root}")
    xv, yv = load_mnist("val", root)
    assert xv.shape == (5000, 28, 28) and np.bincount(yv).min() > 400


def test_a_broken_corrections_zip_is_a_clear_error(tmp_path):
    """A corrections export whose entry fails its CRC, or that needs a zip version Python cannot read,
    stops `train --extra` with an ExtraDataError naming the file, not a traceback."""
    import zipfile

    from tests.fixtures.images import needing_zip_version
    from training.extra import ExtraDataError, load_extra

    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("training/3/a.png", b"\x89PNG not really, but stored" * 4)
    bad_crc, new = tmp_path / "crc.zip", tmp_path / "new.zip"
    bad_crc.write_bytes(good.read_bytes().replace(b"stored", b"STORED", 1))  # stored, not deflated: the CRC fails
    new.write_bytes(needing_zip_version(good.read_bytes()))
    for path in (bad_crc, new):
        with pytest.raises(ExtraDataError, match=path.name):
            load_extra(path)
