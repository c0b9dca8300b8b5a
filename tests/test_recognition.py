"""The full Recognizer on samples of every kind with known truth (MNIST test digits, committed model).

The accuracy floors here are loose sanity checks on a few dozen samples; the targets themselves are
measured by `phonereader evaluate-pipeline` on thousands. Tests that need no model use a stub that
explodes when called, which also proves cutting never touches the model.
"""

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from phonereader.config import Settings
from phonereader.imageio import load_page
from training import synth
from worker.recognition import Field, Recognizer
from worker.recognition import line as linemod

SETTINGS = Settings()
HAVE_MODEL = SETTINGS.model_path.exists()
HAVE_MNIST = (SETTINGS.mnist_dir / "t10k-images-idx3-ubyte.gz").exists()
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason=f"no committed model at {SETTINGS.model_path}")
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"MNIST IDX files not in {SETTINGS.mnist_dir}")


class Exploding:
    version = "none"

    def predict_proba(self, x):
        raise AssertionError("the model must not be called here")


@pytest.fixture(scope="module")
def rec():
    return Recognizer(settings=SETTINGS)


@pytest.fixture(scope="module")
def cutter():
    return Recognizer(model=Exploding(), settings=SETTINGS)


@pytest.fixture(scope="module")
def pool():
    if not HAVE_MNIST:
        pytest.skip("MNIST not available")
    return synth.DigitPool("test")


def _ink(data: bytes) -> np.ndarray:
    return load_page(data, "sample", 0, SETTINGS)


# --- known truth through the whole pipeline ----------------------------------------------------------


@needs_model
@needs_mnist
def test_boxes_with_known_truth(rec, pool):
    score = synth.Score()
    for s in synth.make_boxes(pool, 20, seed=101):
        r = rec.recognize([_ink(b) for b in s.images], "boxes", s.region)[0]
        score.add(s.truth, r.digits)
        assert [d.empty for d in r.digits_detail] == s.empty, "empty boxes are reported empty, others are read"
        assert all(d.digit is None for d in r.digits_detail if d.empty)
    assert score.digit_accuracy >= 0.97, score


@needs_model
@needs_mnist
def test_lines_with_known_truth(rec, pool):
    samples = synth.make_lines(pool, 40, seed=102)
    fields = [rec.cut(_ink(s.image), "line")[0] for s in samples]
    score = synth.Score()
    for s, f, p in zip(samples, fields, rec.predict(fields)):
        score.add(s.truth, rec.read(f, p, s.region).digits)
    assert score.digit_accuracy >= 0.93, score


@needs_model
@needs_mnist
@pytest.mark.parametrize("threshold, flagged", [(0.0, 0.0), (1.0, 1.0)])
def test_evaluate_pipeline_counts_the_readings_flagged_for_review(tmp_path, monkeypatch, threshold, flagged):
    """At threshold 0 no reading needs review; at 1 every one of these does (none is sure to the last bit)."""
    from typer.testing import CliRunner

    from phonereader.cli import app
    from phonereader.config import get_settings

    monkeypatch.setenv("PHONEREADER_REVIEW_THRESHOLD", str(threshold))
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, ["evaluate-pipeline", "--kind", "line", "--n", "30", "--split", "test",
                                       "--seed", "5", "--out", str(tmp_path / "e.json")])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    line = json.loads((tmp_path / "e.json").read_text())["kinds"]["line"]
    assert line["numbers"] == 30 and line["review_flagged"] == flagged
    assert line["review_caught"] == (flagged if line["exact_match"] < 1 else 0.0)
    assert "review" in out.output and f"threshold {threshold}" in out.output


@needs_model
@needs_mnist
def test_forms_with_known_truth_in_reading_order(rec, pool):
    score = synth.Score()
    for s in synth.make_forms(pool, 4, seed=103):
        fields = rec.cut(_ink(s.image), "auto")
        assert [f.kind for f in fields] == ["form"] * len(s.fields)
        assert synth.match_fields(s.fields, [f.box for f in fields]) == list(range(len(s.fields))), "reading order"
        for truth, f, p in zip(s.fields, fields, rec.predict(fields)):
            score.add(truth.truth, rec.read(f, p, truth.region).digits)
    assert score.digit_accuracy >= 0.95, score


# --- behaviour that needs no model ----------------------------------------------------------------------


def _line_of_separators(chars: str, height: float = 40.0) -> np.ndarray:
    pieces = [synth.separator_ink(c, height, 4.0) for c in chars]
    hmax = max(p.shape[0] for p in pieces)
    canvas = np.zeros((hmax + 40, sum(p.shape[1] + 25 for p in pieces) + 40), np.float32)
    x = 20
    for p in pieces:
        y = 20 + (hmax - p.shape[0]) // 2 + (int(height * 0.6) if p.shape[0] < height * 0.5 else 0)
        canvas[y : y + p.shape[0], x : x + p.shape[1]] = np.maximum(canvas[y : y + p.shape[0], x : x + p.shape[1]], p)
        x += p.shape[1] + 25
    return canvas


def _digit_glyphs(field) -> int:
    """Glyphs that are digits by their shape: bracket-shaped ones wait for the model (see _brackets)."""
    return len(field.boxes) - len(field.brackets)


@needs_mnist
def test_separators_are_not_read_as_digits(cutter, pool):
    rng = np.random.default_rng(5)
    for written in ["(212) 555-0142", "212.555.0142", "+1 212 555 0142", "07911-123-456"]:
        ink, *_ = synth._compose_line(written, pool, rng, 40.0, touch_p=0.0, break_p=0.0)
        field = cutter.cut(ink, "line")[0]
        digits = sum(ch.isdigit() for ch in written)
        assert _digit_glyphs(field) == digits, written
        seps = "".join(ch for ch, _ in field.separators)
        assert sorted(seps.replace(".", "")) == sorted(ch for ch in written if ch in "()-+"), (written, seps)
        assert "".join(ch for _, ch in field.brackets) == "".join(ch for ch in written if ch in "()"), written


@needs_model
@needs_mnist
def test_brackets_read_as_brackets_and_digits_shaped_like_one_as_digits(rec, pool):
    """Real brackets are read as 1s by the digit model, so they stay brackets; a glyph the shape test took
    for a bracket but the model reads surely as another digit is that digit, and so is its partner
    unless it reads as a 1 (val line "9346243781" lost a narrow 3 and a 2 as "(" and ")")."""
    from worker.recognition.pipeline import Field, _brackets

    rng = np.random.default_rng(5)
    ink, *_ = synth._compose_line("(212) 555-0142", pool, rng, 40.0, touch_p=0.0, break_p=0.0)
    field = rec.cut(ink, "line")[0]
    reading = rec.read(field, rec.predict([field])[0], "US")
    assert reading.digits == "2125550142" and len(reading.digits_detail) == 10

    def probs(*rows: tuple[int, float]) -> np.ndarray:
        out = np.full((len(rows), 10), 0.0, np.float32)
        for i, (d, p) in enumerate(rows):
            out[i] = (1 - p) / 9
            out[i, d] = p
        return out

    f = Field("line", np.zeros((5, 28, 28), np.float32), [(0, 0, 1, 1)] * 5, [False] * 5, brackets=[(0, "("), (3, ")")])
    assert _brackets(f, probs((1, 0.9), (2, 1), (3, 1), (1, 0.99), (4, 1))) == {0, 3}  # brackets read as 1s
    assert _brackets(f, probs((3, 0.999), (2, 1), (3, 1), (2, 0.6), (4, 1))) == set()  # a sure 3, and its partner
    assert _brackets(f, probs((3, 0.999), (2, 1), (3, 1), (1, 0.6), (4, 1))) == {3}  # ... unless it reads as a 1
    assert _brackets(f, probs((3, 0.9), (2, 1), (3, 1), (7, 0.9), (4, 1))) == {0, 3}  # not sure enough: brackets


@needs_model
def test_a_line_of_only_separators_has_no_digits(rec):
    # with no digits to set the height, brackets and dashes still must not become digits of a number
    ink = _line_of_separators("(-)")
    field = rec.cut(ink, "line")[0]
    assert _digit_glyphs(field) == 0 and "".join(ch for ch, _ in field.separators) == "(-)"
    assert rec.read(field, rec.predict([field])[0], "US").digits == ""


@pytest.mark.parametrize("kind", ["line", "form", "auto"])
def test_blank_and_noisy_paper_give_no_digits(cutter, kind):
    rng = np.random.default_rng(0)
    blank = np.zeros((120, 500), np.float32)
    paper = np.clip(0.25 + 0.1 * np.linspace(0, 1, 500)[None, :] + rng.normal(0, 0.03, (120, 500)), 0, 1).astype(np.float32)
    for ink in (blank, paper):
        fields = cutter.cut(ink, kind)
        assert len(fields) == 1 and len(fields[0].crops) == 0 and fields[0].boxes == []
        r = cutter.read(fields[0], np.zeros((0, 10), np.float32), "US")
        assert r.digits == "" and r.digits_detail == [] and not r.valid


def test_transparent_canvas_boxes_and_empty_boxes(cutter):
    def box(draw: bool) -> bytes:
        rgba = np.zeros((50, 50, 4), np.uint8)  # transparent black: naive grayscale would make it all ink
        if draw:
            rgba[10:40, 23:27, 3] = 255  # a "1"
        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, "PNG")
        return buf.getvalue()

    field = cutter.cut_boxes([_ink(box(True)), _ink(box(False)), _ink(box(True))])
    assert field.empty == [False, True, False]
    assert field.crops.shape == (2, 28, 28)
    x0, y0, x1, y1 = field.boxes[0]
    assert 20 <= x0 < x1 <= 30 and 8 <= y0 < y1 <= 42, "the digit's box within its own image"
    probs = np.full((2, 10), 0.01, np.float32)
    probs[:, 1] = 0.91
    r = cutter.read(field, probs, "US")
    assert r.digits == "11" and [d.empty for d in r.digits_detail] == [False, True, False]
    assert r.digits_detail[1].digit is None and r.digits_detail[1].confidence == 0.0


def test_a_stray_tap_is_an_empty_box_not_a_digit(cutter):
    ink = np.zeros((64, 64), np.float32)
    ink[30:33, 30:33] = 1.0
    field = cutter.cut_boxes([ink])
    assert field.empty == [True] and len(field.crops) == 0


@needs_mnist
def test_broken_five_is_one_digit(cutter, pool):
    """A 5 whose top bar floats apart, alone and between other digits, is still one glyph."""
    rng = np.random.default_rng(3)
    for _ in range(10):
        five = synth.break_strokes(synth.pen_digit(pool.draw(5, rng), 40, rng, 0.1), rng, 5)
        two, three = (synth.pen_digit(pool.draw(d, rng), 40, rng, 0.1) for d in (2, 3))
        ink = np.zeros((90, 220), np.float32)
        for x, g in ((20, two), (90, five), (160, three)):
            ink[25 : 25 + g.shape[0], x : x + g.shape[1]] = g
        assert len(cutter.cut(ink, "line")[0].boxes) == 3
        alone = np.zeros((90, 90), np.float32)
        alone[25 : 25 + five.shape[0], 20 : 20 + five.shape[1]] = five
        assert len(cutter.cut(alone, "line")[0].boxes) == 1


@needs_mnist
def test_touching_pair_offers_a_split(cutter, pool):
    """Two digits drawn overlapping form one blob; the cut must offer the two-digit reading."""
    rng = np.random.default_rng(9)
    a, b = synth.pen_digit(pool.draw(0, rng), 40, rng, 0.1), synth.pen_digit(pool.draw(8, rng), 40, rng, 0.1)
    ink = np.zeros((80, a.shape[1] + b.shape[1] + 40), np.float32)
    ink[20 : 20 + a.shape[0], 20 : 20 + a.shape[1]] = a
    x = 20 + a.shape[1] - 4
    ink[20 : 20 + b.shape[0], x : x + b.shape[1]] = np.maximum(ink[20 : 20 + b.shape[0], x : x + b.shape[1]], b)
    field = cutter.cut(ink, "line")[0]
    counts = {len(o.rows) for c in field.choices for o in c.options} | {len(field.boxes)}
    assert 2 in counts


# --- the worker's batching contract -----------------------------------------------------------------------


@needs_model
@needs_mnist
def test_cross_item_batching_gives_the_same_readings(rec, pool):
    lines = synth.make_lines(pool, 3, seed=7)
    form = synth.make_forms(pool, 1, seed=8)[0]
    boxes = synth.make_boxes(pool, 1, seed=9)[0]
    inks = [_ink(s.image) for s in lines] + [_ink(form.image)]
    fields = [f for ink in inks for f in rec.cut(ink, "auto")] + [rec.cut_boxes([_ink(b) for b in boxes.images])]
    batch = np.concatenate([f.crops for f in fields])
    probs = rec.model.predict_proba(batch)  # what the worker does: ONE forward pass for everything
    offsets = np.cumsum([0] + [len(f.crops) for f in fields])
    batched = [rec.read(f, probs[a:b], "US") for f, a, b in zip(fields, offsets, offsets[1:])]
    alone = [r for ink in inks for r in rec.recognize([ink], "auto", "US")] + rec.recognize([_ink(b) for b in boxes.images], "boxes", "US")
    assert [r.digits for r in batched] == [r.digits for r in alone]
    assert [f.kind for f in fields] == ["line"] * 3 + ["form"] * len(form.fields) + ["boxes"]


def test_field_shapes_are_consistent(cutter):
    ink = np.zeros((60, 200), np.float32)
    ink[15:45, 30:34] = 1
    ink[15:45, 80:84] = 1
    field = cutter.cut(ink, "line")[0]
    assert isinstance(field, Field) and field.kind == "line"
    assert field.crops.dtype == np.float32 and field.crops.shape[1:] == (28, 28)
    assert len(field.boxes) == len(field.empty) == 2
    assert len(field.crops) >= sum(not e for e in field.empty)


def test_bad_kind_is_refused(cutter):
    with pytest.raises(ValueError):
        cutter.cut(np.zeros((10, 10), np.float32), "boxes")
    with pytest.raises(ValueError):
        cutter.recognize([np.zeros((10, 10), np.float32)], "scribble")


@pytest.mark.parametrize("k", [2, 3, 8])
def test_block_means_match_numpy_on_ragged_shapes(k):
    from worker.recognition.ink import block_means

    a = np.random.default_rng(k).random((37, 101), dtype=np.float32)
    hb, wb = 37 // k, 101 // k
    expected = a[: hb * k, : wb * k].reshape(hb, k, wb, k).mean(axis=(1, 3))
    np.testing.assert_allclose(block_means(a, k), expected, rtol=1e-5, atol=1e-6)


@needs_model
@needs_mnist
def test_a_stray_stroke_is_dropped_when_only_that_makes_a_valid_number(pool):
    """A bar before a French number reads as a 1, one digit too many; the phone rules drop it again.
    With dropping turned off, the same line reads 11 digits: so it is the drop that mends it."""
    import phonenumbers

    from worker.recognition.line import LineParams

    number = "0687452390"
    assert phonenumbers.is_valid_number(phonenumbers.parse(number, "FR"))
    rng = np.random.default_rng(5)
    glyphs = [synth.pen_digit(pool.draw(int(d), rng), 40, rng, 0.1) for d in number]
    ink = np.zeros((90, 60 + sum(g.shape[1] + 12 for g in glyphs)), np.float32)
    ink[25:66, 20:24] = 1.0  # a straight stroke, 1 H tall: a stray mark, or a bracket without its partner
    x = 40
    for g in glyphs:
        ink[25 : 25 + g.shape[0], x : x + g.shape[1]] = g
        x += g.shape[1] + 12
    strict = Recognizer(settings=SETTINGS, line_params=LineParams(drop_below=0.0))
    assert len(strict.recognize([ink], "line", "FR")[0].digits) == 11
    reading = Recognizer(settings=SETTINGS).recognize([ink], "line", "FR")[0]
    assert reading.digits == number and reading.valid


def _boxes_row(n: int, bw: int = 60, bh: int = 75) -> tuple[Image.Image, int, int]:
    page = Image.new("L", (n * bw + 120, bh + 100), 255)
    synth._comb(ImageDraw.Draw(page), 60, 50, n, bw, bh, 2, "boxes")
    return page, bw, bh


@needs_mnist
def test_digits_touching_across_a_box_wall_offer_the_seam_as_an_alternative(cutter, pool):
    """A 0 spilling over its wall into the 7 next door: cut straight down the wall, the 7's box gets a
    slice of the 0. The cut also offers the two boxes parted along the seam between the digits, and the
    blob whole for the pair model (one crop, never read as one digit); apart, the same digits give one
    plain reading."""
    rng = np.random.default_rng(4)
    zero, seven = (synth.pen_digit(pool.draw(d, rng), 55, rng, 0.12) for d in (0, 7))

    def page(overlap: bool) -> np.ndarray:
        img, bw, bh = _boxes_row(5)
        ink = np.zeros((img.height, img.width), np.float32)
        x0 = 60 + bw + (bw - zero.shape[1]) // 2 + (18 if overlap else 0)  # box 2, pushed into box 3
        x1 = 60 + 2 * bw + (bw - seven.shape[1]) // 2
        for g, x in ((zero, x0), (seven, x1)):
            ink[60 : 60 + g.shape[0], x : x + g.shape[1]] = np.maximum(ink[60 : 60 + g.shape[0], x : x + g.shape[1]], g)
        return np.maximum(1.0 - np.asarray(img, np.float32) / 255.0, ink)

    touching = cutter.cut(page(True), "form")[0]
    assert touching.kind == "form" and touching.empty == [True, False, False, True, True]
    assert [(c.first, len(c.options)) for c in touching.choices] == [(1, 3)]
    wall, seam, whole = touching.choices[0].options
    assert len(seam.rows) == 2 and not np.array_equal(touching.crops[seam.rows], touching.crops[wall.rows])
    assert len(whole.rows) == 1 and whole.prior == -np.inf
    ys, xs = np.nonzero(touching.crops[whole.rows[0]] > 0.5)
    assert xs.max() - xs.min() > 1.3 * (ys.max() - ys.min())  # both digits, side by side
    apart = cutter.cut(page(False), "form")[0]
    assert apart.empty == [True, False, False, True, True] and apart.choices == []


@needs_mnist
def test_a_straight_closing_bracket_is_found_by_its_partner(cutter, pool):
    """'(448)' with the ')' drawn as a plain stroke: alone it is a 1, but the '(' needs a partner, and
    the stroke closes the group. After a space the stroke is no partner, and a lone bracket is kept
    as a glyph (the phone rules may drop it later)."""
    rng = np.random.default_rng(2)
    height = 40
    paren = synth.separator_ink("(", height, 4.0)
    digits = [synth.pen_digit(pool.draw(d, rng), height, rng, 0.1) for d in (4, 4, 8)]
    bar = np.zeros((height, 5), np.float32)
    bar[:, 1:4] = 1.0

    def line(space: int) -> np.ndarray:
        ink = np.zeros((100, 400), np.float32)
        x = 20
        for g in [paren, *digits]:
            y = 30 + (height - g.shape[0]) // 2
            ink[y : y + g.shape[0], x : x + g.shape[1]] = g
            x += g.shape[1] + 8
        x += space
        ink[30 : 30 + height, x : x + 5] = bar
        return ink

    hugged = cutter.cut(line(0), "line")[0]
    assert [c for c, _ in hugged.separators] == ["(", ")"] and _digit_glyphs(hugged) == 3
    spaced = cutter.cut(line(40), "line")[0]  # "(448 1": no partner, so both stay glyphs
    assert spaced.separators == [] and len(spaced.boxes) == 5


@needs_mnist
def test_of_two_like_brackets_side_by_side_the_outer_one_is_the_bracket(cutter, pool):
    """'(448))': a 7 or a 1 just inside a bracket can be shaped like one, but "))" is never written, so
    the inner one is a glyph and the outer one closes the group (val line "(07867) 677528" read its 7 as
    the bracket and the bracket as a 1)."""
    from worker.recognition.line import _pair_brackets

    rng = np.random.default_rng(2)
    height = 40
    glyphs = [synth.separator_ink("(", height, 4.0)] + [synth.pen_digit(pool.draw(d, rng), height, rng, 0.1) for d in (4, 4, 8)]
    glyphs += [synth.separator_ink(")", height, 4.0)] * 2
    ink = np.zeros((100, 400), np.float32)
    x, lefts = 20, []
    for g in glyphs:
        y = 30 + (height - g.shape[0]) // 2
        ink[y : y + g.shape[0], x : x + g.shape[1]] = g
        lefts.append(x)
        x += g.shape[1] + 8
    field = cutter.cut(ink, "line")[0]
    assert [c for c, _ in field.separators] == ["(", ")"] and _digit_glyphs(field) == 4
    inner = field.boxes[-2]  # the last glyph is the bracket-shaped one, waiting for the model
    assert field.brackets[-1] == (len(field.boxes) - 1, ")") and field.boxes[-1] == field.separators[1][1]
    assert lefts[-2] - 2 <= inner[0] < lefts[-1] - 2 <= field.separators[1][1][0]  # inner glyph, outer bracket
    assert _pair_brackets(["(", "(", None, None, ")", *[None] * 6], [False] * 11)[:5] == ["(", None, None, None, ")"]
    assert _pair_brackets(["(", "(", "(", None, ")", *[None] * 6], [False] * 11)[:5] == ["(", None, None, None, ")"]
    assert _pair_brackets(["(", None, None, ")", ")", ")", *[None] * 6], [False] * 12)[:6] == ["(", None, None, None, None, ")"]


def test_brackets_enclose_a_code_near_the_start_of_the_number():
    """An area or trunk code: at most 4 digits before the '(' and at least 4 after the ')'. A 1 and a 7
    shaped like brackets around the last digits of '07595144257' are digits (val line 902 lost both)."""
    from worker.recognition.line import _pair_brackets

    area = ["(", None, None, None, ")", *[None] * 7]  # (800) 555-1234
    assert _pair_brackets(area, [False] * 12) == area
    trunk = [None, None, "(", None, ")", *[None] * 9]  # 44 (0) 20 7946 0958
    assert _pair_brackets(trunk, [False] * 14) == trunk
    late = [None] * 6 + ["(", None, None, None, None, ")"]
    assert _pair_brackets(late, [False] * 12) == [None] * 12
    assert _pair_brackets(late, [False] * 6 + [True] + [False] * 5)[6] == "("  # unmistakable alone: kept
    assert _pair_brackets([None] * 5 + area, [False] * 17) == [None] * 17  # 5 digits before: no code
    assert _pair_brackets(["(", None, None, None, ")"], [False] * 5) == ["(", None, None, None, ")"]  # nothing else
    # one code per number: "(07123)" whose 7 and 1 were taken for ')' and '(' (val line 542 lost both)
    two = ["(", None, ")", "(", None, None, ")", *[None] * 6]
    assert _pair_brackets(two, [False] * 13) == ["(", *[None] * 5, ")", *[None] * 6]


def _between_2_and_7(middle) -> np.ndarray:
    """A plain 2, a glyph drawn by ``middle(draw, x)``, a plain 7: strokes 4 px wide, digits 44 px tall."""
    im = Image.new("L", (260, 90), 0)
    d = ImageDraw.Draw(im)
    d.line([(30, 32), (38, 24), (50, 24), (56, 32), (54, 42), (30, 64), (58, 64)], fill=255, width=4)
    middle(d, 100)
    d.line([(180, 24), (206, 24), (190, 66)], fill=255, width=4)
    return np.asarray(im, np.float32) / 255.0


@needs_model
def test_a_four_whose_arm_misses_its_stem_reads_as_one_four(rec):
    """The arm (a stroke and bar) stops short of the stem: two pieces side by side, each digit-high
    enough to stand alone. Both readings are offered and the model picks the whole 4, not '61'."""

    def open_four(d, x):
        d.line([(x + 10, 24), (x, 50), (x + 20, 50)], fill=255, width=4)
        d.line([(x + 25, 22), (x + 25, 66)], fill=255, width=4)

    ink = _between_2_and_7(open_four)
    field = rec.cut(ink, "line")[0]
    assert sorted(len(o.rows) for c in field.choices for o in c.options) == [1, 2]
    assert rec.recognize(ink, "line")[0].digits == "247"


def test_a_broken_digit_with_a_blot_beside_it_is_still_offered_whole():
    """A 3 broken across its middle, its bowl shifted right of its top: two pieces side by side, offered
    as one digit or two. A blot the pen left against the bowl joins the bowl's unit; it must not hide
    the pair (it did: the 3 read as "70")."""

    def broken_three(d, x):
        d.line([(x, 22), (x + 24, 22), (x + 10, 36)], fill=255, width=4)
        d.line([(x + 20, 44), (x + 36, 50), (x + 36, 60), (x + 18, 66)], fill=255, width=4)
        d.rectangle([x + 39, 40, x + 44, 44], fill=255)

    cut = linemod.cut_line(_between_2_and_7(broken_three))
    assert len(cut.slots) == 3
    assert sorted(len(o.pieces) for o in cut.slots[1].options) == [1, 2]
    assert cut.slots[1].options[0].pieces[0].box[2] >= 144  # whole, with the blot


@needs_model
def test_a_stroke_drawn_as_dots_stays_with_its_digit(rec):
    """A skipping pen draws a 6's rising stroke as dots too small to count as glyphs; kept with the loop
    they make a 6 (dropped as dust, the loop alone reads 0). Dust far from any digit stays dropped."""

    def dotted_six(d, x):
        d.ellipse([x + 2, 44, x + 24, 66], outline=255, width=4)
        for k in range(5):
            d.rectangle([x + 4 + 2 * k, 39 - 4 * k, x + 5 + 2 * k, 40 - 4 * k], fill=255)
        d.rectangle([x + 40, 5, x + 41, 6], fill=255)  # dust above the line

    ink = _between_2_and_7(dotted_six)
    field = rec.cut(ink, "line")[0]
    assert field.boxes[1][1] < 30  # the loop's box grew up the dots (it starts at y 42 without them)
    assert all(b[1] > 10 for b in field.boxes)
    assert rec.recognize(ink, "line")[0].digits == "267"


def test_a_floating_bar_joins_the_small_bowl_under_it_not_the_tall_neighbour():
    """A 5 drawn as a small bowl (under 0.6 digit heights) with its bar floating up and to the right,
    close to a 0: the bar belongs to the bowl it makes digit-high, not to the nearest tall glyph."""
    from worker.recognition.glyphs import components

    # 1, bowl, bar, 0; then a small 5 written high (bowl 0.4 and bar and bowl together 0.68 digit heights,
    # val line "5757589190" read its bar as a dash and the rest as 3)
    for bowl, bar in [((42, 27, 60, 45), (52, 7, 87, 13)), ((42, 14, 60, 30), (54, 3, 78, 6))]:
        mask = np.zeros((50, 130), bool)
        for x0, y0, x1, y1 in [(2, 5, 27, 45), bowl, bar, (92, 5, 117, 45)]:
            mask[y0:y1, x0:x1] = True
        c = components(mask)
        units, _ = linemod._groups(c, np.ones(c.n, bool), 40.0, linemod.LineParams())
        assert sorted(sorted(int(c.x0[i]) for i in u) for u in units) == [[2], sorted([bowl[0], bar[0]]), [92]]


def test_digits_joined_across_box_walls_are_parted_however_bold(cutter):
    """Boxes 0-1: a bold 0 joined to a thin one (the bold one holds 3/4 of the ink, so an ink-share
    rule kept the two as one digit); boxes 2-5: four 0s joined in one stroke, where no wall but the
    middle one sees an even share. Each box that holds a digit-sized part of a blob gets its own digit."""
    img, bw, bh = _boxes_row(6)
    draw = ImageDraw.Draw(img)
    for i, width in enumerate((9, 3, 4, 4, 4, 4)):  # 0s 44 px wide in 60 px boxes, centred
        x = 60 + i * bw + bw // 2
        draw.ellipse([x - 22, 62, x + 22, 112], outline=0, width=width)
    for a in (0, 2, 3, 4):  # a pen stroke from one 0's right side to the next one's left side, over the wall
        x = 60 + a * bw + bw // 2
        draw.line([(x + 18, 87), (x + bw - 18, 87)], fill=0, width=4)
    field = cutter.cut(1.0 - np.asarray(img, np.float32) / 255.0, "form")[0]
    assert field.kind == "form" and field.empty == [False] * 6


@needs_model
def test_a_zero_whose_side_runs_down_its_box_wall_keeps_that_side(rec, cutter):
    """Box 1 holds a 0 whose left side lies on the box's left wall, box 3 one whose right side lies on
    its right wall. The stroke widens the wall by only a pixel or two, so wiping the wall used to wipe
    the side too, and the open 0s read as "30". The side holds a stroke's worth of ink more than the
    wall does alone, so it stays: each crop is a closed loop, and the field reads "00"."""
    img, bw, bh = _boxes_row(5)
    draw = ImageDraw.Draw(img)
    for left in (60 + bw - 1, 60 + 4 * bw - 41):
        draw.ellipse([left, 60, left + 42, 112], outline=0, width=3)
    ink = 1.0 - np.asarray(img, np.float32) / 255.0
    field = cutter.cut(ink, "form")[0]
    assert field.kind == "form" and field.empty == [True, False, True, False, True]
    for crop in field.crops:
        stroke = crop > 0.5
        assert ndimage.binary_fill_holes(stroke).sum() > stroke.sum() + 50  # a loop around a hole
    assert rec.recognize([ink], "form")[0].digits == "00"


def test_a_form_digit_keeps_the_faint_rim_of_its_strokes():
    """A scan's strokes have an anti-aliased rim fainter than the ink threshold, as MNIST's digits do.
    Cropping at the threshold thinned a thin stroke at 150 dpi and broke it where it was thinnest; the
    crop keeps the rim next to the digit's own ink (and nothing else faint)."""
    from worker.recognition import form as formmod
    from worker.recognition.ink import LOW

    img, bw, bh = _boxes_row(5)
    big = img.resize((img.width * 4, img.height * 4))
    ImageDraw.Draw(big).ellipse([4 * (60 + bw + 14), 4 * 62, 4 * (60 + 2 * bw - 14), 4 * 112], outline=0, width=5)
    ink = 1.0 - np.asarray(big.resize(img.size, Image.BOX), np.float32) / 255.0  # a thin 0, anti-aliased
    field = formmod.cut_form(ink)[0]
    assert [c is None for c in field.crops] == [True, False, True, True, True]
    crop = field.crops[1]
    assert ((crop > 0.02) & (crop <= LOW)).sum() > 20, "the rim is kept"
    rim = (crop > 0) & (crop <= LOW)
    assert not (rim & ~ndimage.binary_dilation(crop > LOW)).any(), "only next to the ink"
