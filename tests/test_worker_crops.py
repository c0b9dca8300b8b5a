"""Crop records for corrections (worker.crops): workers store raw pixels, the gateway makes the PNG.

What matters to the corrections loop: the PNG written for a correction shows exactly the pixels the
worker cut (the same image the worker used to PNG-encode itself), big crops are still capped, records
written by older workers (PNG originals) still read, and a damaged record is refused, not misread.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from worker.crops import MODEL_BYTES, ORIGINAL_MAX_SIDE, original_crop, pack, png, unpack


def _ink(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((h, w)) * (rng.random((h, w)) > 0.6)).astype(np.float32)


def _legacy_png(ink: np.ndarray, box) -> bytes:
    """What workers stored before: the cut, thumbnailed and saved as a PNG at read time."""
    h, w = ink.shape
    x0, y0, x1, y1 = box
    x0, y0, x1, y1 = max(0, x0 - 2), max(0, y0 - 2), min(w, x1 + 2), min(h, y1 + 2)
    im = Image.fromarray((255 - np.clip(ink[y0:y1, x0:x1], 0, 1) * 255).astype(np.uint8), "L")
    im.thumbnail((ORIGINAL_MAX_SIDE, ORIGINAL_MAX_SIDE))
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _pixels(png_bytes: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(png_bytes))
    assert im.format == "PNG" and im.mode == "L"
    return np.asarray(im)


@pytest.mark.parametrize("shape, box", [((60, 200), (30, 10, 58, 50)),  # a digit of a line image
                                        ((900, 900), (100, 50, 700, 820)),  # a big scan: capped at 128
                                        ((40, 40), (0, 0, 40, 40))])  # box at the edges: margin clipped
def test_the_png_made_on_correction_shows_the_pixels_the_worker_cut(shape, box):
    ink = _ink(*shape)
    model = np.random.default_rng(1).random((28, 28)).astype(np.float32)
    record = pack(model, original_crop(ink, box))
    got_model, got_png = unpack(record)
    assert got_model.shape == (28, 28) and got_model.dtype == np.uint8
    np.testing.assert_array_equal(got_model, np.clip(np.rint(model * 255), 0, 255).astype(np.uint8))
    expected = _pixels(_legacy_png(ink, box))
    assert max(expected.shape) <= ORIGINAL_MAX_SIDE
    np.testing.assert_array_equal(_pixels(got_png), expected)


def test_records_are_raw_pixels_not_pngs():
    """The point of the format: no PNG encoding per digit at read time."""
    ink = _ink(60, 200)
    crop = original_crop(ink, (30, 10, 58, 50))
    record = pack(np.zeros((28, 28), np.float32), crop)
    assert record[MODEL_BYTES:MODEL_BYTES + 2] == b"RW"
    assert len(record) == MODEL_BYTES + 6 + crop.size


def test_no_original_and_old_png_records_still_read():
    model = np.full((28, 28), 0.5, np.float32)
    assert original_crop(None, (0, 0, 5, 5)) is None
    assert original_crop(_ink(10, 10), (20, 20, 30, 30)) is None  # a box outside the page
    _, none = unpack(pack(model, None))
    assert none == b""
    old = _legacy_png(_ink(50, 50), (10, 10, 30, 40))
    _, same = unpack(pack(model)[:MODEL_BYTES] + old)  # as a worker of the previous version wrote it
    assert same == old


@pytest.mark.parametrize("tail", [b"XX\x00\x02\x00\x02abcd", b"RW\x00\x02\x00\x03abcd", b"RW\x00", b"RW\x00\x00\x00\x05"])
def test_a_damaged_record_is_refused(tail):
    with pytest.raises(ValueError):
        unpack(bytes(MODEL_BYTES) + tail)
    with pytest.raises(ValueError):
        unpack(bytes(10))


def test_png_helper_roundtrips():
    gray = (np.arange(12, dtype=np.uint8) * 20).reshape(3, 4)
    np.testing.assert_array_equal(_pixels(png(gray)), gray)


def test_kept_crops_are_the_ones_each_digit_was_read_from(mnist_dir):
    """For lines where read() may change cuts after the batch (the second look at invalid numbers), every
    digit with a crop of its own has a record, and that record re-read by the model gives the digit the
    reading shows: a correction can never train on another digit's crop."""
    from phonereader import ROOT
    from phonereader.imageio import load_page
    from training.synth import DigitPool, make_lines
    from worker.crops import unit_crops
    from worker.engine import DigitModel
    from worker.recognition import Recognizer

    model = DigitModel.load(ROOT / "models" / "default.json", "cpu", "onnx", threads=1)
    recognizer = Recognizer(model)
    kept = total = 0
    for u, sample in enumerate(make_lines(DigitPool("val", mnist_dir), 40, seed=3, touch_p=0.3)):
        ink = load_page(sample.image, "line.png", 0, recognizer.settings)
        fields = recognizer.cut(ink, "line")
        readings, rows = [], []
        for f in fields:
            reading, r = recognizer.read_with_rows(f, model.predict_proba(f.crops))
            readings.append(reading.model_dump(mode="json"))
            rows.append(r)
        records = unit_crops(u, "line", [ink], fields, rows, readings)
        many = len(fields) > 1
        for f, (reading, r) in enumerate(zip(readings, rows)):
            total += len(reading["digits"])
            digits = [d for d in reading["digits_detail"] if not d.get("empty")]
            for pos, row in enumerate(r):
                name = f"{u}.{f if many else 0}.{pos}"
                assert (name in records) == (row is not None), name
                if row is None:
                    continue
                kept += 1
                model_input, _ = unpack(records[name])
                probs = model.predict_proba(model_input[None].astype(np.float32) / 255)[0]
                assert str(int(probs.argmax())) == digits[pos]["alternatives"][0]["digit"], name
    # the rest: digits the pair model read from a whole touching blob (no crop of their own); at touch_p 0.3,
    # five times the evaluation's rate, that is about one digit in six (70 of 405 with seed 3)
    assert total > 300 and kept >= 0.75 * total, (kept, total)
