"""The recognition pipeline as a row of named steps: image -> fields of crops -> (batched model) -> readings.

Cutting never calls the model, so a worker can cut many items of many jobs, stack every crop into one
batch, run ``predict_proba`` once, split the rows back and ``read`` each field::

    fields = [f for ink in inks for f in rec.cut(ink, kind)]        # model-free, per item
    probs = model.predict_proba(np.concatenate([f.crops for f in fields]))
    offsets = np.cumsum([0] + [len(f.crops) for f in fields])
    readings = [rec.read(f, probs[a:b], region) for f, a, b in zip(fields, offsets, offsets[1:])]

Ambiguous blobs in a line (a wide 0 or two touching digits?), and digits touching across a form's box
wall (parted at the wall or along the seam, or read whole by the pair model?), carry their alternative
cuts as extra rows of ``Field.crops``; ``read`` lets the models' probabilities choose between them. So a
field's crops may outnumber its glyphs, and the worker must always pass ``len(field.crops)`` rows back.

Narrow blobs (0.55-1.1 digit heights) are one digit in the batch. A narrow touching pair ("17", a 1
tucked into a 2) is no wider than a wide 0, so width cannot flag it; what does is the phone rules: when
a line's reading is not a valid number, ``read`` takes a second look at that line alone. The touching-
pair model (models/pairs.json, trained by ``phonereader train-pairs``) reads each narrow or wide blob
as a possible pair, and choose.py searches the line's combinations of cuts, best first, for a valid
number. Valid readings (most lines) never pay for it; a line that does costs one small extra model call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field as dc_field
from pathlib import Path

import numpy as np

from phonereader.normalize import normalize_batch
from phonereader.schemas import Alternative, DigitDetail, Reading
from worker.recognition import choose
from worker.recognition import form as formmod
from worker.recognition import line as linemod
from phonereader import phone
from worker.recognition.boxes import cut_box

Box = tuple[int, int, int, int]
KINDS = ("boxes", "line", "form", "auto")


@dataclass
class Option:
    rows: list[int]  # rows of Field.crops
    boxes: list[Box]
    prior: float  # log prior from geometry
    pair: tuple[float, float, float] | None = None  # a narrow blob's split: scored by choose.pair_logit instead
    dropped: bool = False  # the glyph read as no digit (rows and boxes empty): scored as kept + prior


@dataclass
class Choice:
    """Alternative cuts of one ambiguous blob; options[0] is the default, whose glyphs are
    ``Field.boxes[first : first + len(options[0].rows)]``."""

    first: int
    options: list[Option]


@dataclass
class Field:
    """One number's glyphs, cut and normalised, waiting for the model.

    ``crops`` rows: first the non-empty default glyphs in order, then any alternative cuts (see Choice).
    Boxes are (x0, y0, x1, y1) in the source image; for ``boxes`` fields, in each box's own image.
    """

    kind: str  # "boxes" | "line" | "form"
    crops: np.ndarray  # (n, 28, 28) float32
    boxes: list[Box]  # one per glyph, empty boxes included
    empty: list[bool]
    separators: list[tuple[str, Box]] = dc_field(default_factory=list)  # '+', '(', ')', '-', '.' with boxes
    choices: list[Choice] = dc_field(default_factory=list)
    box: Box | None = None  # the whole field in the source image (a form's comb, a line's ink)
    plus: bool = False  # written with a leading '+': an international number
    # narrow blobs that may be touching pairs: (glyph index, the split, cut only when read() needs it)
    pair_splits: list[tuple[int, Callable[[], list[linemod.Option]]]] = dc_field(default_factory=list)
    # lone glyphs that may be no digit (an unpaired bracket, a loose bar): (glyph index, log prior)
    droppable: list[tuple[int, float]] = dc_field(default_factory=list)
    # glyphs shaped like a bracket, '(' or ')': brackets unless the model reads a digit (see _brackets)
    brackets: list[tuple[int, str]] = dc_field(default_factory=list)

    @property
    def glyph_rows(self) -> list[int | None]:
        rows, r = [], 0
        for e in self.empty:
            rows.append(None if e else r)
            r += not e
        return rows


def _empty_field(kind: str, box: Box | None = None) -> Field:
    return Field(kind, np.zeros((0, 28, 28), np.float32), [], [], box=box)


def _union(boxes: list[Box]) -> Box | None:
    if not boxes:
        return None
    a = np.asarray(boxes)
    return int(a[:, 0].min()), int(a[:, 1].min()), int(a[:, 2].max()), int(a[:, 3].max())


BRACKET_DIGIT = 0.99  # a bracket-shaped glyph read this surely as a digit other than 1 is that digit


def _brackets(field: Field, probs: np.ndarray) -> set[int]:
    """Rows of the bracket-shaped glyphs that are brackets, not digits.

    The shape test takes a narrow 3, an open 0 or a 2 for a bracket now and then, and the reading loses
    a digit. The digit model reads real brackets as 1s (MNIST has no brackets), so one it reads surely
    as another digit is that digit; and brackets come in pairs, so when one of a pair is a digit, its
    partner is a digit too unless it reads as a 1.
    """
    rows = field.glyph_rows
    read = {g: int(probs[rows[g]].argmax()) for g, _ in field.brackets}
    digit = {g: read[g] != 1 and float(probs[rows[g]].max()) >= BRACKET_DIGIT for g in read}
    for (g, a), (h, b) in zip(field.brackets, field.brackets[1:]):
        if a == "(" and b == ")" and (digit[g] or digit[h]):
            digit[g], digit[h] = read[g] != 1, read[h] != 1
    return {rows[g] for g in read if not digit[g]}


def _whole(field: Field, g: int) -> Option:
    """Glyph ``g`` read as it was cut: the default option of a second-look Choice."""
    return Option([field.glyph_rows[g]], [field.boxes[g]], 0.0)


def line_field(cut: linemod.LineCut) -> Field:
    """Default glyphs first, alternatives after; all crops normalised in one call."""
    pieces: list[linemod.Piece] = []
    boxes: list[Box] = []
    pending: list[tuple[int, linemod.Slot]] = []
    pair_splits, droppable, brackets = [], [], []
    for slot in cut.slots:
        first = len(pieces)
        pieces.extend(slot.options[0].pieces)
        boxes.extend(pc.box for pc in slot.options[0].pieces)
        if len(slot.options) > 1:
            pending.append((first, slot))
        if slot.pair_split is not None:
            pair_splits.append((first, slot.pair_split))
        if slot.drop is not None:
            droppable.append((first, slot.drop))
        if slot.bracket is not None:
            brackets.append((first, slot.bracket))
    choices = []
    for first, slot in pending:
        d = slot.options[0]
        opts = [Option(list(range(first, first + len(d.pieces))), [pc.box for pc in d.pieces], d.prior, d.pair)]
        for o in slot.options[1:]:
            rows = list(range(len(pieces), len(pieces) + len(o.pieces)))
            pieces.extend(o.pieces)
            opts.append(Option(rows, [pc.box for pc in o.pieces], o.prior, o.pair))
        choices.append(Choice(first, opts))
    crops = normalize_batch([pc.ink for pc in pieces]) if pieces else np.zeros((0, 28, 28), np.float32)
    shaped = {g for g, _ in brackets}
    first_digit = min((b[0] for g, b in enumerate(boxes) if g not in shaped), default=None)
    plus = any(ch == "+" and (first_digit is None or b[2] <= first_digit + 2) for ch, b in cut.separators)
    return Field("line", crops, boxes, [False] * len(boxes), list(cut.separators), choices, _union(boxes), plus, pair_splits, droppable, brackets)


class Recognizer:
    """Owns the cutting rules and (lazily) the model. One per worker process."""

    def __init__(self, model=None, settings=None, line_params=None, form_params=None, pair_model="auto"):
        if settings is None:
            from phonereader.config import get_settings

            settings = get_settings()
        self.settings = settings
        self._model = model
        self.line_params = line_params or linemod.LineParams()
        self.form_params = form_params or formmod.FormParams()
        self.max_choice_loss = choose.MAX_LOSS  # 0 turns off the phone-rule search among a line's cuts
        self._pair_model = False if pair_model == "auto" else pair_model  # False: look for it on first use; None: none
        self.pair_readings = True  # wide blobs also offered as read whole by the pair model

    @property
    def model(self):
        """Loaded on first use, once: cutting alone (benchmarks, tests) needs no model."""
        if self._model is None:
            from worker.engine import DigitModel

            self._model = DigitModel.serving(self.settings)
        return self._model

    # --- cut: model-free -----------------------------------------------------------------------

    def cut(self, ink: np.ndarray, kind: str = "auto") -> list[Field]:
        """Fields of one image in reading order; always at least one (possibly with no glyphs)."""
        if kind not in ("line", "form", "auto"):
            raise ValueError(f"kind must be line, form or auto for one image, not {kind!r}")
        ink = np.asarray(ink, np.float32)
        if ink.ndim != 2 or ink.size == 0:
            return [_empty_field("line" if kind == "auto" else kind)]
        if kind == "form" or (kind == "auto" and formmod.has_rule(ink, self.form_params)):
            fields = self.cut_form(ink)
            if fields or kind == "form":
                return fields or [_empty_field("form")]
        return [line_field(linemod.cut_line(ink, self.line_params))]

    def cut_form(self, ink: np.ndarray) -> list[Field]:
        out = []
        for ff in formmod.cut_form(ink, self.form_params):
            crops = [c for c in ff.crops if c is not None]
            row = np.cumsum([c is not None for c in ff.crops]) - 1  # each cell's row in crops
            choices = []
            for first, alt, boxes, whole in ff.alternatives:  # wall, seam or pair model: the surest reading wins
                cells = range(first, first + len(alt))
                if any(ff.crops[c] is None for c in cells):
                    continue
                default = Option([int(row[c]) for c in cells], [ff.cells[c] for c in cells], 0.0)
                options = [default, Option(list(range(len(crops), len(crops) + len(alt))), boxes, 0.0)]
                crops.extend(alt)
                if whole is not None:  # two touching digits: the pair model reads the blob whole (never one digit)
                    options.append(Option([len(crops)], [_union(boxes)], -np.inf))
                    crops.append(whole)
                choices.append(Choice(first, options))
            norm = normalize_batch(crops) if crops else np.zeros((0, 28, 28), np.float32)
            out.append(Field("form", norm, list(ff.cells), [c is None for c in ff.crops], choices=choices, box=ff.box))
        return out

    def cut_boxes(self, inks: list[np.ndarray]) -> Field:
        """The canvas row of boxes, one digit per image, in order; boxes are in each image's coordinates."""
        crops, boxes, empty = [], [], []
        for ink in inks:
            crop, box = cut_box(np.asarray(ink, np.float32))
            boxes.append(box)
            empty.append(crop is None)
            if crop is not None:
                crops.append(crop)
        norm = normalize_batch(crops) if crops else np.zeros((0, 28, 28), np.float32)
        return Field("boxes", norm, boxes, empty)

    # --- read: probabilities -> reading ------------------------------------------------------------

    def read(self, field: Field, probs: np.ndarray, region: str | None = None) -> Reading:
        """Choose among alternative cuts, apply phone rules, and report calibrated confidences."""
        return self.read_with_rows(field, probs, region)[0]

    def read_with_rows(self, field: Field, probs: np.ndarray, region: str | None = None) -> tuple[Reading, list[int | None]]:
        """:meth:`read`, plus the row of ``field.crops`` each digit was read from, in reading order: what the
        worker keeps for corrections. None for a digit with no crop of its own (the pair model read it from
        a whole blob, or it was cut after the batch)."""
        probs = np.asarray(probs, np.float32).reshape(-1, 10)
        if len(probs) != len(field.crops):
            raise ValueError(f"expected {len(field.crops)} rows of probabilities, got {len(probs)}")
        region = (region or self.settings.default_region).upper()
        glyphs, probs, fixed = self._choose_cuts(field, probs, region)
        rows = [r for _, r in glyphs if r is not None]
        p = probs[rows] if rows else np.zeros((0, 10), np.float32)
        chosen = p.argmax(axis=1) if len(p) else np.zeros(0, np.int64)
        raw = "".join(str(d) for d in chosen)
        if fixed is not None:
            chosen = fixed
        digits = "".join(str(d) for d in chosen)
        details, k, threshold = [], 0, self.settings.review_threshold
        for box, r in glyphs:
            if r is None:
                details.append(DigitDetail(digit=None, confidence=0.0, alternatives=[], box=box, empty=True))
                continue
            pr = probs[r]
            top3 = np.argsort(-pr)[:3]
            d = int(chosen[k])
            k += 1
            conf = float(pr[d])
            details.append(
                DigitDetail(
                    digit=str(d),
                    confidence=conf,
                    alternatives=[Alternative(digit=str(int(a)), p=float(pr[a])) for a in top3],
                    box=box,
                    needs_review=conf < threshold,
                )
            )
        confs = [dd.confidence for dd in details if not dd.empty]
        confidence = float(np.prod(confs)) if confs else 0.0
        info = phone.info(digits, region, field.plus)
        return Reading(
            kind=field.kind,
            digits=digits,
            confidence=confidence,
            # eleven digits at 0.98 each are right together only 4 times in 5: the number needs a look too
            needs_review=confidence < threshold or any(dd.needs_review for dd in details),
            digits_detail=details,
            valid=info.valid,
            e164=info.e164,
            formatted=info.formatted,
            international=info.international,
            region=info.region,
            corrected=fixed is not None,
            raw_digits=raw,
            model_version=getattr(self._model, "version", "") or "",
        ), [r if r < len(field.crops) else None for r in rows]

    def _choose_cuts(self, field: Field, probs: np.ndarray, region: str):
        """(glyphs as (box, row), probabilities, phone.correct's digits or None) of the chosen cuts.

        First each ambiguous blob's best cut alone, narrow blobs whole (what the batch already holds).
        Only when that reading is no valid number, or may have lost its national prefix in a touching
        pair (:meth:`_sure_pair`), do the narrow blobs' touching-pair splits join in: cut now, their
        crops read by the digit model in one small extra call, the whole blobs by the pair model, and
        the best valid combination of cuts searched for (choose.py).
        """
        base: list[tuple[Box, int | None]] = list(zip(field.boxes, field.glyph_rows))
        choices = list(field.choices)
        fixes: dict[tuple[int, ...], np.ndarray | None] = {}
        brackets = _brackets(field, probs)

        def glyphs_for(pick: tuple[int, ...]) -> list[tuple[Box, int | None]]:
            glyphs = list(base)
            for ch, k in sorted(zip(choices, pick), key=lambda t: -t[0].first):  # from the right: indices stay valid
                o, n_default = ch.options[k], len(ch.options[0].rows)
                glyphs[ch.first : ch.first + n_default] = list(zip(o.boxes, o.rows))
            return [g for g in glyphs if g[1] not in brackets]

        def valid(pick: tuple[int, ...]) -> bool:
            """The reading with these cuts is a valid, well-formed number, as read or after phone.correct."""
            p = probs[[r for _, r in glyphs_for(pick) if r is not None]]
            top = "".join(str(d) for d in p.argmax(axis=1))
            if len(p) and phone.is_valid(top, region, field.plus):
                fixes[pick] = None
                return phone.well_formed(top, region, field.plus)
            fixes[pick] = phone.correct(p, region, field.plus, max_tries=phone.MAX_TRIES if not fixes else 200)
            return fixes[pick] is not None and phone.well_formed("".join(map(str, fixes[pick])), region, field.plus)

        def logmax(probs: np.ndarray) -> np.ndarray:
            return np.log(np.clip(probs.max(axis=1), 1e-9, 1.0)) if len(probs) else np.zeros(0)

        if self.pair_readings:
            probs = self._add_pair_readings(probs, field, choices)
        pick = choose.best(choose.option_scores(choices, logmax(probs)))
        second_look = self.max_choice_loss > 0 and (choices or field.pair_splits or field.droppable)
        if second_look and (not valid(pick) or self._sure_pair(field, probs, region, brackets)):  # skipped here, valid(pick) runs below
            probs, model_logits = self._add_pair_splits(field, probs, choices)
            for g, prior in field.droppable:  # keep the glyph (the default) or read it as no digit
                choices.append(Choice(g, [_whole(field, g), Option([], [], prior, dropped=True)]))
            scores = choose.option_scores(choices, logmax(probs), pairs=True, model_logits=model_logits)
            pick = choose.choose(scores, valid, self.max_choice_loss) or pick  # none valid: the first reading stands
        glyphs = glyphs_for(pick)
        if pick not in fixes:
            valid(pick)
        return glyphs, probs, fixes[pick]

    def _sure_pair(self, field: Field, probs: np.ndarray, region: str, brackets: set[int]) -> bool:
        """Is a valid reading's narrow first blob surely two touching digits, while the reading does not
        start with the region's national prefix? A US 1 touching the next digit reads as a valid number
        one digit short. Only such lines (about a fifth) pay for the one small pair-model call."""
        first = next((g for g, r in enumerate(field.glyph_rows) if r not in brackets), None)
        if field.plus or not field.pair_splits or field.pair_splits[0][0] != first or self.pair_model is None:
            return False
        prefix = phone.national_prefix(region)
        row = field.glyph_rows[first]
        if not prefix or str(int(probs[row].argmax())) == prefix[0]:
            return False
        z, _, _ = self.pair_model.predict(field.crops[[row]])
        return bool(z[0] > choose.SURE_PAIR)

    def _add_pair_splits(self, field: Field, probs: np.ndarray, choices: list[Choice]) -> tuple[np.ndarray, dict[int, float] | None]:
        """Offer each narrow blob as a touching pair: append a Choice per blob to ``choices`` and the new
        digits' rows to ``probs``; return the longer table and the pair model's log-odds per new choice.

        With the pair model, a pair's two digits are its reading of the whole blob (one option per blob;
        the boxes come from the best seam): a seam between a 1 and the 2 it is tucked into is often
        wrong, the whole-blob reading is not. Without it, the digit model reads each seam's pieces.
        """
        splits = [(g, split()) for g, split in field.pair_splits]
        splits = [(g, opts) for g, opts in splits if opts]
        if not splits:
            return probs, None
        if self.pair_model is not None:
            z, left, right = self.pair_model.predict(field.crops[[field.glyph_rows[g] for g, _ in splits]])
            logits = {}
            for i, (g, opts) in enumerate(splits):
                r = len(probs) + 2 * i
                logits[len(choices)] = float(z[i])
                choices.append(Choice(g, [_whole(field, g), Option([r, r + 1], [pc.box for pc in opts[0].pieces], 0.0, opts[0].pair)]))
            return np.concatenate([probs, np.stack([left, right], 1).reshape(-1, 10)]), logits
        crops, row = [], len(probs)
        for g, opts in splits:
            options = [_whole(field, g)]  # whole first: the default
            for o in opts:
                options.append(Option(list(range(row, row + len(o.pieces))), [pc.box for pc in o.pieces], 0.0, o.pair))
                row += len(o.pieces)
                crops.extend(pc.ink for pc in o.pieces)
            choices.append(Choice(g, options))
        return np.concatenate([probs, self.model.predict_proba(normalize_batch(crops))]), None

    def _add_pair_readings(self, probs: np.ndarray, field: Field, choices: list[Choice]) -> np.ndarray:
        """Wide blobs offered whole or split at a seam (or too wide for one digit, their whole crop kept
        for this) also get the pair model's reading of their two digits, scored like the seam split
        (same width prior) with the heads' probabilities: where one digit is tucked into the other no
        seam separates them, and the whole-blob reading is right. On forms, two digits touching across
        a box wall get it too: a 0 spilling into the 3 next door leaves a "C" on one side of the wall
        and a "B" on the other, and no seam near the wall parts them; the pair model reads the "03".
        In lines the heads' readings are pooled with the digit model's reading of the seam's pieces
        (:func:`choose.pool`): each is wrong where the other is often right. Not on forms: there the
        parting is the wall, and the pair reading is for the digits it does not part (val forms: no
        reading changed either way).
        Replaces those Choices in ``choices`` and returns ``probs`` with the pooled rows appended."""
        wide = [c for c, ch in enumerate(choices) if any(len(o.rows) == 1 for o in ch.options) and any(len(o.rows) == 2 for o in ch.options)]
        if not wide or self.pair_model is None:
            return probs
        whole = [next(o.rows[0] for o in choices[c].options if len(o.rows) == 1) for c in wide]
        _, left, right = self.pair_model.predict(field.crops[whole])
        seams = [next(o for o in choices[c].options if len(o.rows) == 2) for c in wide]
        if field.kind == "line":
            left = choose.pool(left, probs[[o.rows[0] for o in seams]])
            right = choose.pool(right, probs[[o.rows[1] for o in seams]])
        for i, (c, seam) in enumerate(zip(wide, seams)):
            ch = choices[c]
            r = len(probs) + 2 * i
            bonus = choose.HEADS_BONUS_FORM if field.kind == "form" else choose.HEADS_BONUS
            choices[c] = Choice(ch.first, ch.options + [Option([r, r + 1], seam.boxes, seam.prior + bonus)])
        return np.concatenate([probs, np.stack([left, right], 1).reshape(-1, 10)])

    @property
    def pair_model(self):
        """The touching-pair model (pairs.json beside the digit model's card, else the committed
        models/pairs.json), loaded on first use; None when there is none (the pair splits are then
        weighed by the digit model's doubt alone)."""
        if self._pair_model is False:
            from phonereader import ROOT
            from worker.recognition.pairmodel import PairModel

            paths = [Path(self.settings.model_path).parent / "pairs.json", ROOT / "models" / "pairs.json"]
            path = next((p for p in paths if p.is_file()), None)
            self._pair_model = PairModel.load(path) if path else None
        return self._pair_model

    # --- convenience -------------------------------------------------------------------------------

    def predict(self, fields: list[Field]) -> list[np.ndarray]:
        """One forward pass for all crops of all fields; the rows split back per field."""
        sizes = [len(f.crops) for f in fields]
        if sum(sizes) == 0:
            return [np.zeros((0, 10), np.float32) for _ in fields]
        probs = self.model.predict_proba(np.concatenate([f.crops for f in fields]))
        return np.split(probs, np.cumsum(sizes)[:-1])

    def recognize(self, inks, kind: str = "auto", region: str | None = None) -> list[Reading]:
        """Cut everything, ONE predict_proba over all crops, read. ``boxes``: all inks are one number."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if isinstance(inks, np.ndarray) and inks.ndim == 2:
            inks = [inks]
        if kind == "boxes":
            fields = [self.cut_boxes(list(inks))]
        else:
            fields = [f for ink in inks for f in self.cut(ink, kind)]
        return [self.read(f, p, region) for f, p in zip(fields, self.predict(fields))]
