"""The synthetic evaluation sets: deterministic, truthful, and scored by edit distance.

A tiny fake digit pool (drawn shapes, not MNIST) keeps these tests independent of the data files.
"""

import io

import numpy as np
import phonenumbers
import pytest
from PIL import Image

from training import synth


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    images = np.zeros((50, 28, 28), np.uint8)
    for i in range(50):  # blobs of varying size: enough to exercise layout and rendering
        h, w = rng.integers(14, 21), rng.integers(6, 20)
        y, x = (28 - h) // 2, (28 - w) // 2
        images[i, y : y + h, x : x + w] = 255
        images[i, y + 3 : y + h - 3, x + 3 : x + w - 3] = 0
    return synth.DigitPool(images=images, labels=np.arange(50) % 10)


def test_numbers_are_valid_and_10_or_11_digits():
    rng = np.random.default_rng(1)
    for _ in range(50):
        digits, region = synth.phone_number(rng)
        assert len(digits) in (10, 11) and digits.isdigit()
        assert phonenumbers.is_valid_number(phonenumbers.parse(digits, region))
        written = synth.written_form(digits, region, rng)
        assert "".join(c for c in written if c.isdigit()) == digits


def test_same_seed_same_set_other_seed_other_set(pool):
    a, b, c = (synth.make_lines(pool, 3, seed=s) for s in (4, 4, 5))
    assert [x.image for x in a] == [x.image for x in b]
    assert [x.image for x in a] != [x.image for x in c]
    assert [x.images for x in synth.make_boxes(pool, 2, 7)] == [x.images for x in synth.make_boxes(pool, 2, 7)]


def test_boxes_truth_matches_the_boxes(pool):
    for s in synth.make_boxes(pool, 10, seed=2):
        assert len(s.images) == len(s.empty) == len(s.truth) + sum(s.empty)
        for data, empty in zip(s.images, s.empty):
            im = Image.open(io.BytesIO(data))
            alpha_or_dark = np.asarray(im.convert("RGBA"))[..., 3] if im.mode == "RGBA" else 255 - np.asarray(im.convert("L"))
            assert (alpha_or_dark.max() < 30) == empty


def test_line_digit_boxes_lie_in_the_image(pool):
    for s in synth.make_lines(pool, 10, seed=3):
        w, h = Image.open(io.BytesIO(s.image)).size
        assert len(s.boxes) == len(s.truth)
        for x0, y0, x1, y1 in s.boxes:
            assert -2 <= x0 < x1 <= w + 2 and -2 <= y0 < y1 <= h + 2


def test_forms_have_fields_inside_the_page(pool):
    for s in synth.make_forms(pool, 2, seed=4):
        im = Image.open(io.BytesIO(s.image))
        assert s.fmt in ("png", "jpeg", "tiff") and s.dpi in (150, 200, 300)
        assert 1 <= len(s.fields) <= 3
        for f in s.fields:
            assert 0 <= f.box[0] < f.box[2] <= im.width and 0 <= f.box[1] < f.box[3] <= im.height


def test_score_counts_edits():
    s = synth.Score()
    s.add("2125550142", "2125550142")
    s.add("2125550142", "212555014")  # one digit missed
    s.add("2125550142", "2725550142")  # one digit wrong
    s.add("2125550142", "")  # nothing read: every digit lost, never more
    assert s.exact == 1 and s.edits == 1 + 1 + 10 and s.digits == 40
    assert s.digit_accuracy == pytest.approx(1 - 12 / 40)


def test_match_fields_by_overlap():
    truth = [synth.FormField("1", (0, 0, 100, 20), "US"), synth.FormField("2", (0, 50, 100, 70), "US")]
    assert synth.match_fields(truth, [(0, 48, 90, 72), (5, 0, 95, 22)]) == [1, 0]
    assert synth.match_fields(truth, []) == [None, None]
