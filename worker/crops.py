"""Keep each read digit's crop with the job, so a user's correction becomes a training sample at once.

For every recognised digit of a unit the worker stores, next to the unit's result and with the job's TTL
(``P:job:J:crops``, see api.jobstore), one small record: the 28x28 model input as 784 uint8 bytes,
followed by the original crop (the ink inside the digit's box) as a grayscale PNG. The gateway never
re-runs anything: ``api.corrections`` reads these records back when a correction arrives.

Record names are ``"unit.field.position"``: ``position`` counts the digits of the reading (0-based),
exactly as the pages count them when they send a correction.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

MODEL_BYTES = 28 * 28
ORIGINAL_MAX_SIDE = 128  # a crop from a 300 dpi scan can be big; a thumbnail this size is plenty to look at


def crop_name(unit: int, field: int | None, position: int) -> str:
    return f"{unit}.{field or 0}.{position}"


def pack(model_input: np.ndarray, original_png: bytes) -> bytes:
    q = np.clip(np.rint(np.asarray(model_input, np.float32) * 255), 0, 255).astype(np.uint8)
    return q.reshape(MODEL_BYTES).tobytes() + original_png


def unpack(record: bytes) -> tuple[np.ndarray, bytes]:
    """-> (uint8 (28, 28) model input, original crop PNG bytes)."""
    if len(record) < MODEL_BYTES:
        raise ValueError("a crop record is shorter than its 28x28 model input")
    return np.frombuffer(record[:MODEL_BYTES], np.uint8).reshape(28, 28), record[MODEL_BYTES:]


def original_png(ink: np.ndarray | None, box) -> bytes:
    """The digit as written (dark ink on white), cut from the source ink map by its box."""
    if ink is None or box is None:
        return b""
    h, w = ink.shape
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0, x1, y1 = max(0, x0 - 2), max(0, y0 - 2), min(w, x1 + 2), min(h, y1 + 2)
    if x1 <= x0 or y1 <= y0:
        return b""
    im = Image.fromarray((255 - np.clip(ink[y0:y1, x0:x1], 0, 1) * 255).astype(np.uint8), "L")
    im.thumbnail((ORIGINAL_MAX_SIDE, ORIGINAL_MAX_SIDE))
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def chosen_rows(field, probs: np.ndarray) -> list[tuple[int, tuple]]:
    """(crop row, box) of each recognised digit, in reading order: the same choice among alternative cuts
    that ``Recognizer.read`` makes (highest prior + log max probability), from the same probabilities."""
    glyphs = list(zip(field.boxes, field.glyph_rows))
    logmax = np.log(np.clip(probs.max(axis=1), 1e-9, 1.0)) if len(probs) else np.zeros(0)
    for ch in sorted(field.choices, key=lambda c: -c.first):
        best = max(ch.options, key=lambda o: o.prior + float(logmax[o.rows].sum()))
        glyphs[ch.first : ch.first + len(ch.options[0].rows)] = list(zip(best.boxes, best.rows))
    return [(r, box) for box, r in glyphs if r is not None]


def unit_crops(unit: int, kind: str, inks: list[np.ndarray], fields: list, probs: np.ndarray,
               readings: list[dict]) -> dict[str, bytes]:
    """The records of one unit's digits. A field whose crops cannot be matched to its reading digit for
    digit is left out (never stored under the wrong position)."""
    out: dict[str, bytes] = {}
    start = 0
    many = len(fields) > 1
    for f, (field, reading) in enumerate(zip(fields, readings)):
        rows = probs[start : start + len(field.crops)]
        start += len(field.crops)
        picked = chosen_rows(field, rows)
        shown = [tuple(d["box"]) for d in reading.get("digits_detail", []) if not d.get("empty")]
        if len(picked) != len(reading.get("digits") or "") or [tuple(b) for _, b in picked] != shown:
            log.warning("unit %d field %d: crops do not match the reading; not kept for corrections", unit, f)
            continue
        for pos, (row, box) in enumerate(picked):
            if kind == "boxes":  # one image per box, empty boxes included: glyph i sits in the i-th non-empty one
                ink = inks[[i for i, e in enumerate(field.empty) if not e][pos]]
            else:
                ink = inks[0] if len(inks) == 1 else None
            out[crop_name(unit, f if many else None, pos)] = pack(field.crops[row], original_png(ink, box))
    return out
