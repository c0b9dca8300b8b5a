"""Narrow touching pairs ("17", a 1 tucked into a 2) and the line-wide choice of cuts (choose.py).

The search and read() are tested on synthetic probability tables (no model); the cutter and the pair
model on MNIST *test* digits drawn by the synthesiser.
"""

import numpy as np
import pytest

from phonereader.config import Settings
from training import synth
from worker.recognition import Choice, Field, Option, Recognizer, choose
from worker.recognition import line as linemod

SETTINGS = Settings()
HAVE_MNIST = (SETTINGS.mnist_dir / "t10k-images-idx3-ubyte.gz").exists()
PAIRS_CARD = SETTINGS.model_path.parent / "pairs.json"
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"MNIST IDX files not in {SETTINGS.mnist_dir}")


# --- the search ----------------------------------------------------------------------------------


def test_choose_takes_the_best_combination_when_it_is_acceptable():
    scores = [np.array([0.0, -1.0]), np.array([-0.5, 0.0])]
    assert choose.choose(scores, lambda pick: True) == (0, 1)


def test_choose_walks_combinations_best_first():
    scores = [np.array([0.0, -1.0]), np.array([0.0, -2.0]), np.array([0.0, -3.0])]
    tried = []

    def only_last(pick):
        tried.append(pick)
        return pick == (0, 0, 1)

    assert choose.choose(scores, only_last) == (0, 0, 1)
    assert tried == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)], "in decreasing total score"


def test_choose_gives_up_when_nothing_acceptable_is_close_enough():
    scores = [np.array([0.0, -20.0]), np.array([0.0, -np.inf])]
    assert choose.choose(scores, lambda pick: pick != (0, 0), max_loss=9.0) is None
    assert choose.choose(scores, lambda pick: pick != (0, 0), max_loss=30.0) == (1, 0), "-inf options are never taken"
    assert choose.choose([], lambda pick: False) == ()


# --- read(): the phone rules pick the narrow blob to split -----------------------------------------


def _probs(rows: list[tuple[int, float]]) -> np.ndarray:
    """One row per (digit, probability), the rest spread evenly."""
    p = np.full((len(rows), 10), 0.0, np.float32)
    for i, (d, q) in enumerate(rows):
        p[i] = (1 - q) / 9
        p[i, d] = q
    return p


class Stub:
    """The digit model for the pieces read() cuts on demand: fixed rows, in the order they are asked for."""

    version = "stub"

    def __init__(self, rows: np.ndarray):
        self.rows, self.calls = rows, 0

    def predict_proba(self, x):
        self.calls += 1
        assert len(x) == len(self.rows) and x.shape[1:] == (28, 28)
        return self.rows


def _piece(x0: int, x1: int) -> linemod.Piece:
    return linemod.Piece((x0, 0, x1, 20), np.ones((20, x1 - x0), np.float32))


def _pair_field(whole_p: float, extra_digit: bool = False) -> tuple[Field, np.ndarray, Stub]:
    """A US number written 212 555 0142 whose "14" touches: 9 glyphs, the 8th (the "14", read as a 4)
    narrow enough to be a pair; the 5th (a 5) just as narrow. Their splits are cut on demand: "14" splits
    into a confident 1 and 4, the 5 into junk. With ``extra_digit`` a 10th digit makes it 212 555 0423."""
    digits = "21255504" + "2" + ("3" if extra_digit else "")
    n = len(digits)
    boxes = [(20 * i, 0, 20 * i + 15, 20) for i in range(n)]
    probs = _probs([(int(d), 0.99) for d in digits])
    probs[7] = _probs([(4, whole_p)])[0]
    splits = [
        (4, lambda: [linemod.Option([_piece(80, 86), _piece(86, 95)], 0.0, pair=(0.9, 0.2, 0.45))]),
        (7, lambda: [linemod.Option([_piece(140, 146), _piece(146, 155)], 0.0, pair=(0.9, 0.05, 0.3))]),
    ]
    field = Field("line", np.zeros((n, 28, 28), np.float32), boxes, [False] * n, pair_splits=splits)
    return field, probs, Stub(_probs([(5, 0.6), (3, 0.6), (1, 0.97), (4, 0.97)]))


def _rec(stub: Stub, max_loss: float = choose.MAX_LOSS, pair_model=None) -> Recognizer:
    rec = Recognizer(model=stub, settings=SETTINGS, pair_model=pair_model)  # no pair model: the digit model's doubt alone
    rec.max_choice_loss = max_loss
    return rec


def test_a_digit_short_line_splits_the_doubtful_narrow_blob():
    field, probs, stub = _pair_field(whole_p=0.55)
    r = _rec(stub).read(field, probs, "US")
    assert r.digits == "2125550142" and r.valid and stub.calls == 1
    assert len(r.digits_detail) == 10 and r.digits_detail[7].box == (140, 0, 146, 20)
    assert r.digits_detail[8].alternatives[0].digit == "4" and r.digits_detail[8].confidence == pytest.approx(0.97)


def test_the_search_is_off_when_disabled_and_narrow_blobs_stay_whole():
    field, probs, stub = _pair_field(whole_p=0.55)
    assert _rec(stub, max_loss=0.0).read(field, probs, "US").raw_digits == "212555042"
    assert stub.calls == 0


def test_a_valid_reading_is_not_second_guessed():
    field, probs, stub = _pair_field(whole_p=0.55, extra_digit=True)
    r = _rec(stub).read(field, probs, "US")
    assert r.digits == "2125550423" and len(r.digits_detail) == 10
    assert stub.calls == 0, "no extra cutting or model call for a valid reading"


def test_a_british_number_read_without_its_trunk_0_looks_for_the_0_in_a_touching_pair():
    """07911 123456 whose "07" touches reads 7911123456: valid, but not as a British number is written."""
    digits = "7911123456"
    boxes = [(20 * i, 0, 20 * i + 15, 20) for i in range(len(digits))]
    probs = _probs([(int(d), 0.99) for d in digits])
    probs[0] = _probs([(7, 0.8)])[0]
    splits = [(0, lambda: [linemod.Option([_piece(0, 6), _piece(6, 15)], 0.0, pair=(0.95, 0.1, 0.4))])]
    field = Field("line", np.zeros((len(digits), 28, 28), np.float32), boxes, [False] * len(digits), pair_splits=splits)
    stub = Stub(_probs([(0, 0.97), (7, 0.97)]))
    r = _rec(stub).read(field, probs, "GB")
    assert r.digits == "07911123456" and r.valid and stub.calls == 1
    assert _rec(stub, max_loss=0.0).read(field, probs, "GB").digits == "7911123456", "no split near enough: the reading stands"


class StubPairModel:
    """The touching-pair model with one verdict for every blob: log-odds ``z`` that it is a pair, read as "1" then "2"."""

    def __init__(self, z: float):
        self.z, self.calls = z, 0

    def predict(self, crops):
        self.calls += 1
        n = len(crops)
        return np.full(n, self.z, np.float32), np.repeat(_probs([(1, 0.97)]), n, 0), np.repeat(_probs([(2, 0.97)]), n, 0)


def _leading_pair_field(digits: str) -> tuple[Field, np.ndarray]:
    """A line read as ``digits``, its first glyph a narrow blob that may be a touching pair."""
    boxes = [(20 * i, 0, 20 * i + 15, 20) for i in range(len(digits))]
    probs = _probs([(int(d), 0.99) for d in digits])
    probs[0] = _probs([(int(digits[0]), 0.9)])[0]
    splits = [(0, lambda: [linemod.Option([_piece(0, 6), _piece(6, 15)], 0.0, pair=(0.95, 0.1, 0.4))])]
    return Field("line", np.zeros((len(digits), 28, 28), np.float32), boxes, [False] * len(digits), pair_splits=splits), probs


def test_a_valid_reading_without_its_leading_1_asks_the_pair_model_about_its_first_blob():
    """1 212 555 0142 written with its 1 touching the 2 reads 212 555 0142: valid, one digit short. A pair
    model sure that the first blob is two digits gets the 1 back; one in doubt leaves the reading. A
    reading that starts with the 1 does not ask at all."""
    field, probs = _leading_pair_field("2125550142")
    for z, read in ((choose.SURE_PAIR + 10, "12125550142"), (choose.SURE_PAIR - 5, "2125550142")):
        pairs = StubPairModel(z)
        r = _rec(Stub(np.zeros((0, 10), np.float32)), pair_model=pairs).read(field, probs, "US")
        assert r.digits == read and r.valid and len(r.digits_detail) == len(read), z
        assert pairs.calls >= 1
    field, probs = _leading_pair_field("12125550142")
    pairs = StubPairModel(choose.SURE_PAIR + 10)
    assert _rec(Stub(np.zeros((0, 10), np.float32)), pair_model=pairs).read(field, probs, "US").digits == "12125550142"
    assert pairs.calls == 0


# --- the cutter ----------------------------------------------------------------------------------


def test_a_narrow_loop_is_not_a_bracket():
    p = linemod.LineParams()
    arc = np.zeros((40, 12), bool)
    for y in range(40):
        x = round(8 - 6 * np.sin(np.pi * y / 39))
        arc[y, max(0, x - 1) : x + 2] = True
    assert linemod.classify_separator(arc, 32.0, first=True, p=p) == "("
    six = arc.copy()
    six[22:38, 8:11] = True  # close the lower bowl: a narrow 6
    six[22:24, 2:11] = True
    assert linemod.classify_separator(six, 32.0, first=True, p=p) is None


@needs_mnist
def test_a_narrow_touching_pair_carries_a_pair_split():
    pool = synth.DigitPool("test")
    rng = np.random.default_rng(4)
    found = 0
    for _ in range(12):
        a, b = synth.pen_digit(pool.draw(1, rng), 40, rng, 0.1), synth.pen_digit(pool.draw(7, rng), 40, rng, 0.1)
        ink = np.zeros((90, a.shape[1] + b.shape[1] + 40), np.float32)
        ink[20 : 20 + a.shape[0], 20 : 20 + a.shape[1]] = a
        x = 20 + a.shape[1] - 3
        sub = ink[20 : 20 + b.shape[0], x : x + b.shape[1]]
        np.maximum(sub, b, out=sub)
        cut = linemod.cut_line(ink)
        if len(cut.slots) != 1:
            continue  # the strokes did not touch: two blobs, nothing to decide
        slot = cut.slots[0]
        if not linemod.LineParams().pair_from <= slot.ratio < linemod.LineParams().split_from:
            continue  # wide pairs get their splits up front, by width
        found += 1
        assert len(slot.options) == 1 and slot.pair_split is not None, slot.ratio
        splits = slot.pair_split()
        assert 1 <= len(splits) <= 3
        for split in splits:
            assert len(split.pieces) == 2 and split.pair[0] == pytest.approx(slot.ratio)
            x0, _, x1, _ = slot.options[0].pieces[0].box
            left, right = (pc.box for pc in split.pieces)
            assert x0 <= left[0] < right[2] <= x1 and left[0] < right[0], "both pieces inside the blob, in source coordinates"
    assert found >= 3



def test_two_ones_leaning_together_are_a_narrow_pair_too():
    """Two 1s whose feet touch make a V only 0.6 digit heights wide, narrower than a wide 0, and the
    1s were lost (before session 9, 0.7 was the narrowest blob that could be a pair). Narrow 0s beside
    it stay plain digits."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (200, 100), 0)
    draw = ImageDraw.Draw(img)
    draw.line([(60, 20), (73, 70)], fill=255, width=5)
    draw.line([(88, 20), (75, 70)], fill=255, width=5)
    for x in (20, 140):
        draw.ellipse([x, 20, x + 22, 70], outline=255, width=5)
    cut = linemod.cut_line(np.asarray(img, np.float32) / 255)
    assert [s.pair_split is not None for s in cut.slots] == [False, True, False]
    assert 0.55 <= cut.slots[1].ratio < 0.7
    x0, _, x1, _ = cut.slots[1].options[0].pieces[0].box
    for split in cut.slots[1].pair_split():  # the pair model reads the V whole; a seam gives the boxes
        left, right = (pc.box for pc in split.pieces)
        assert x0 <= left[0] < right[0] and left[2] < right[2] <= x1

# --- the pair model ------------------------------------------------------------------------------


@needs_mnist
@pytest.mark.skipif(not PAIRS_CARD.exists(), reason=f"no pair model at {PAIRS_CARD}")
def test_pair_model_tells_pairs_from_single_digits():
    from training.data import load_mnist
    from training.pairs import make_set
    from worker.recognition.pairmodel import PairModel

    images, labels = load_mnist("test")
    x, y = make_set(images[:2000], labels[:2000], 300, seed=11, progress=False)
    z, left, right = PairModel.load(PAIRS_CARD).predict(x)
    assert np.mean((z > 0) == (y[:, 0] == 1)) >= 0.97, "pair or one digit"
    pairs = y[:, 0] == 1
    both = (left[pairs].argmax(1) == y[pairs, 1]) & (right[pairs].argmax(1) == y[pairs, 2])
    assert both.mean() >= 0.85, "both digits of a pair"


@pytest.mark.skipif(not PAIRS_CARD.exists(), reason=f"no pair model at {PAIRS_CARD}")
def test_pair_model_files_are_checked(tmp_path):
    import json
    import shutil

    from phonereader.modelcard import ModelFileError
    from worker.recognition.pairmodel import PairModel

    card = json.loads(PAIRS_CARD.read_text())
    for name in ("pairs.json", card["files"]["onnx"]):
        shutil.copy(PAIRS_CARD.parent / name, tmp_path / name)
    z, left, right = PairModel.load(tmp_path / "pairs.json").predict(np.zeros((2, 28, 28), np.float32))
    assert z.shape == (2,) and left.shape == right.shape == (2, 10) and np.allclose(left.sum(1), 1, atol=1e-5)
    (tmp_path / card["files"]["onnx"]).write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        PairModel.load(tmp_path / "pairs.json")


class StubPairs:
    """The pair model: every blob asked about is a pair, read as ``digits``."""

    def __init__(self, digits: tuple[int, int], p: float = 0.95):
        self.digits, self.p, self.calls = digits, p, 0

    def predict(self, crops):
        self.calls += 1
        n = len(crops)
        left, right = _probs([(self.digits[0], self.p)] * n), _probs([(self.digits[1], self.p)] * n)
        return np.full(n, 6.0, np.float32), left, right


def test_a_wide_blob_is_read_whole_by_the_pair_model_when_its_seam_is_poor():
    """212 555 0142 with "14" one wide blob: whole (row 7), or a seam split whose pieces read as junk
    (rows 9, 10); the pair model reads the blob as "14" and that reading wins, with the seam's boxes
    (its probabilities pooled with the junk pieces' readings, which lowers them)."""
    digits = "21255504" + "2"
    boxes = [(20 * i, 0, 20 * i + 15, 20) for i in range(9)]
    probs = np.concatenate([_probs([(int(d), 0.99) for d in digits]), _probs([(7, 0.4), (9, 0.4)])])
    probs[7] = _probs([(4, 0.6)])[0]
    seam = Option([9, 10], [(140, 0, 147, 20), (147, 0, 158, 20)], 0.5)
    field = Field("line", np.zeros((11, 28, 28), np.float32), boxes, [False] * 9,
                  choices=[Choice(7, [Option([7], [boxes[7]], 0.0), seam])])
    pairs = StubPairs((1, 4))
    rec = Recognizer(model=object(), settings=SETTINGS, pair_model=pairs)
    r = rec.read(field, probs, "US")
    assert r.digits == "2125550142" and pairs.calls == 1
    assert [d.box for d in r.digits_detail[7:9]] == seam.boxes
    pooled = choose.pool(_probs([(1, 0.95)]), probs[[9]])[0, 1]  # the pair model's 1, with a say for the junk piece
    assert r.digits_detail[7].confidence == pytest.approx(float(pooled), abs=1e-3) and 0.7 < pooled < 0.95
    rec.pair_readings = False
    assert rec.read(field, probs, "US").raw_digits != "2125550142"


def test_a_blob_too_wide_for_one_digit_is_still_read_whole_by_the_pair_model():
    """The same number with "14" a blob too wide to be one digit: split by default (rows 7, 8 read as
    junk), its whole crop (row 10) kept only for the pair model, whose "14" wins."""
    digits = "21255504" + "2"
    boxes = [(20 * i, 0, 20 * i + 15, 20) for i in range(9)]
    probs = np.concatenate([_probs([(int(d), 0.99) for d in digits[:7]]), _probs([(7, 0.4), (9, 0.4), (2, 0.99), (1, 0.5)])])
    seam = Option([7, 8], [(140, 0, 147, 20), (147, 0, 158, 20)], 2.0)
    field = Field("line", np.zeros((11, 28, 28), np.float32), boxes[:7] + seam.boxes + [boxes[8]], [False] * 10,
                  choices=[Choice(7, [seam, Option([10], [(140, 0, 158, 20)], -np.inf)])])
    rec = Recognizer(model=object(), settings=SETTINGS, pair_model=StubPairs((1, 4)))
    assert rec.read(field, probs, "US").digits == "2125550142"
    rec.pair_readings = False
    assert rec.read(field, probs, "US").raw_digits == "2125550792"


def test_a_blob_too_wide_for_one_digit_keeps_its_whole_crop_for_the_pair_model():
    H = 30
    m = np.zeros((H, 51), bool)  # two 0s side by side, joined at mid-height: 1.7 H wide
    m[5:25, 2:22] = m[5:25, 29:49] = True
    m[8:22, 6:18] = m[8:22, 33:45] = False
    m[14:16, 22:29] = True
    u = linemod._Unit([0], 0, 0, m.shape[1], m.shape[0])
    opts = linemod._options(m.astype(np.float32), m, u, float(H), linemod.LineParams())
    assert len(opts[0].pieces) == 2 and np.isfinite(opts[0].prior)
    assert [len(o.pieces) for o in opts if o.prior == -np.inf] == [1]


def _touching_form_field() -> tuple[Field, np.ndarray]:
    """A form field of 4 boxes whose 2nd and 3rd hold digits touching across their wall: parted at the
    wall they read "68", along the seam "63", and the blob whole is never one digit."""
    boxes = [(30 * i, 0, 30 * i + 30, 40) for i in range(4)]
    probs = _probs([(0, 0.99), (6, 0.9), (8, 0.9), (5, 0.99), (6, 0.85), (3, 0.85), (1, 0.3)])
    wall = Option([1, 2], boxes[1:3], 0.0)
    seam = Option([4, 5], boxes[1:3], 0.0)
    whole = Option([6], [(30, 0, 90, 40)], -np.inf)
    field = Field("form", np.zeros((7, 28, 28), np.float32), boxes, [False] * 4, choices=[Choice(1, [wall, seam, whole])])
    return field, probs


def test_digits_touching_across_a_form_wall_are_also_read_whole_by_the_pair_model():
    """A pair model surer of both digits (0.97 x 0.97) than either parting (0.9 x 0.9, 0.85 x 0.85) gives
    the reading its digits; with none, the wall parting stands, and the whole blob is never one digit.
    Unlike a wide blob in a line, the pair reading gets no head start: a surer parting (0.99 x 0.99)
    keeps its digits."""
    field, probs = _touching_form_field()
    pair = StubPairModel(z=5.0)
    assert _rec(Stub(probs), max_loss=0, pair_model=pair).read(field, probs, "US").digits == "0125"
    assert pair.calls == 1
    assert _rec(Stub(probs), max_loss=0, pair_model=None).read(field, probs, "US").digits == "0685"
    probs[[1, 2]] = _probs([(6, 0.99), (8, 0.99)])
    assert _rec(Stub(probs), max_loss=0, pair_model=pair).read(field, probs, "US").digits == "0685"


def test_a_wide_blob_is_split_where_both_pieces_are_digit_shaped():
    """A 7 whose bar runs on into the 2 beside it: a cut through the bar alone crosses the least ink,
    left of the 7's stem too, but leaves a stub of bar as a "digit". The split offered is the dearer seam
    between the stem and the 2, and with it two digits are likelier than one blob 1.5 H wide."""
    H = 30
    m = np.zeros((H, 45), bool)
    m[2:5, 0:27] = True  # the 7's bar, running into the 2's top
    m[2:29, 18:21] = True  # its stem
    m[4:7, 24:44] = m[4:29, 41:44] = m[15:18, 24:44] = m[15:29, 24:27] = m[26:29, 24:44] = True  # a boxy 2
    u = linemod._Unit([0], 0, 0, m.shape[1], m.shape[0])
    shaped = [o for o in linemod._options(m.astype(np.float32), m, u, float(H), linemod.LineParams()) if len(o.pieces) == 2]
    assert all(min(pc.box[3] - pc.box[1] for pc in o.pieces) >= 0.55 * H for o in shaped[:1])
    assert shaped[0].prior > 0 and shaped[0].pieces[0].box[2] <= 24
    cheapest = linemod._options(m.astype(np.float32), m, u, float(H), linemod.LineParams(seam_candidates=2))
    assert all(o.prior < 0 for o in cheapest if len(o.pieces) == 2)  # what the two cheapest seams alone gave


def test_pooling_lets_the_surer_reader_of_a_touching_digit_decide():
    """A 7 tucked against a 4: the pair model wavers between 4 and 7, the digit model is sure of the 7
    cut out at the seam, and the pooled reading is 7. A piece that lost a corner to the seam and reads
    as a doubtful 1 does not overturn a sure pair-model 7."""
    heads = _probs([(4, 0.5)])
    heads[0, 7] = 0.45
    assert choose.pool(heads, _probs([(7, 0.99)])).argmax() == 7
    assert choose.pool(heads, _probs([(4, 0.99)])).argmax() == 4
    sure = choose.pool(_probs([(7, 0.98)]), _probs([(1, 0.6)]))
    assert sure.argmax() == 7 and sure.sum() == pytest.approx(1.0, abs=1e-5)
