"""The shared crop -> 28x28 recipe: MNIST's convention plus stroke-width normalisation."""

import numpy as np
from PIL import Image, ImageDraw

from phonereader.normalize import BOX, SIZE, TARGET_WIDTH, normalize_batch, normalize_digit, stroke_width


def draw_seven(canvas: int, width: int, top: int = 0, left: int = 0, scale: float = 1.0) -> np.ndarray:
    """A seven as a canvas user draws it: ink = 1 on paper = 0."""
    img = Image.new("L", (canvas, canvas), 0)
    pts = [(10, 8), (38, 8), (20, 42)]
    pts = [(left + x * scale, top + y * scale) for x, y in pts]
    ImageDraw.Draw(img).line(pts, fill=255, width=width, joint="curve")
    return np.asarray(img, np.float32) / 255


def test_empty_crop_gives_zeros():
    assert not normalize_digit(np.zeros((50, 50), np.float32)).any()
    assert not normalize_digit(np.zeros((0, 0), np.float32)).any()


def test_output_follows_mnist_convention():
    out = normalize_digit(draw_seven(50, 4))
    assert out.shape == (SIZE, SIZE) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() == 1.0
    rows = np.flatnonzero(out.any(axis=1))
    cols = np.flatnonzero(out.any(axis=0))
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) <= BOX + 1
    ys, xs = np.indices(out.shape)
    assert abs((ys * out).sum() / out.sum() - SIZE / 2) <= 1.0
    assert abs((xs * out).sum() / out.sum() - SIZE / 2) <= 1.0


def test_a_high_seven_looks_like_a_centred_one():
    """The tutorials' bug: a 7 drawn near the top of its box read as 5 after a naive resize."""
    centred = normalize_digit(draw_seven(100, 6, top=25, left=25))
    high = normalize_digit(draw_seven(100, 6, top=0, left=40))
    assert np.abs(centred - high).mean() < 0.02


def test_thin_and_thick_strokes_converge():
    thin, thick = draw_seven(200, 3, scale=3.5), draw_seven(200, 28, scale=3.5)
    assert stroke_width(thick > 0.5) > 5 * stroke_width(thin > 0.5)
    a, b = normalize_digit(thin), normalize_digit(thick)
    wa, wb = stroke_width(a > 0.5), stroke_width(b > 0.5)
    assert abs(wa - wb) < 1.0, (wa, wb)
    naive = [np.asarray(Image.fromarray(x).resize((28, 28), Image.BOX)) for x in (thin, thick)]
    assert stroke_width(naive[1] > 0.5) - stroke_width(naive[0] > 0.25) > 2.0  # what a plain resize leaves


def test_mnist_digits_come_out_at_the_target_width(mnist_test_sample):
    images, _ = mnist_test_sample
    out = normalize_batch(images[:300].astype(np.float32) / 255)
    widths = [stroke_width(x > 0.5) for x in out]  # output pixels are box pixels
    assert abs(np.median(widths) - TARGET_WIDTH) < 0.6
    assert np.abs(out - images[:300] / 255).mean() < 0.08  # MNIST digits barely change
