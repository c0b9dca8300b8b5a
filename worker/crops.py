"""Keep each read digit's crop with the job, so a user's correction becomes a training sample at once.

For every recognised digit of a unit the worker stores, next to the unit's result and with the job's TTL
(``P:job:J:crops``, see api.jobstore), one small record: the 28x28 model input as 784 uint8 bytes,
followed by the original crop (the ink inside the digit's box, dark on white, at most
``ORIGINAL_MAX_SIDE`` pixels a side) as raw grayscale pixels behind a 6-byte header. The gateway never
re-runs anything: ``api.corrections`` reads these records back when a correction arrives and only then
encodes the original as a PNG (:func:`unpack`). Encoding a PNG per digit at read time cost a quarter of
a worker's CPU, for crops that are almost never corrected.

Record layout: ``model (784 B) + original``, where ``original`` is empty (no crop), ``b"RW" + height +
width`` (two big-endian uint16) followed by ``height * width`` pixel bytes, or a PNG (records written by
older workers; :func:`unpack` reads all three).

Record names are ``"unit.field.position"``: ``position`` counts the digits of the reading (0-based),
exactly as the pages count them when they send a correction.
"""

from __future__ import annotations

import io
import logging
import struct

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

MODEL_BYTES = 28 * 28
ORIGINAL_MAX_SIDE = 128  # a crop from a 300 dpi scan can be big; a thumbnail this size is plenty to look at


def crop_name(unit: int, field: int | None, position: int) -> str:
    return f"{unit}.{field or 0}.{position}"


RAW_MAGIC = b"RW"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_RAW_HEADER = struct.Struct(">2sHH")


def pack(model_input: np.ndarray, original: np.ndarray | None = None) -> bytes:
    """One record: the model input (float in [0, 1]) and the original crop (uint8, dark on white), if any."""
    q = np.clip(np.rint(np.asarray(model_input, np.float32) * 255), 0, 255).astype(np.uint8)
    head = q.reshape(MODEL_BYTES).tobytes()
    if original is None or original.size == 0:
        return head
    h, w = original.shape
    return head + _RAW_HEADER.pack(RAW_MAGIC, h, w) + np.ascontiguousarray(original, np.uint8).tobytes()


def unpack(record: bytes) -> tuple[np.ndarray, bytes]:
    """-> (uint8 (28, 28) model input, original crop PNG bytes, b"" when there is none)."""
    if len(record) < MODEL_BYTES:
        raise ValueError("a crop record is shorter than its 28x28 model input")
    model = np.frombuffer(record[:MODEL_BYTES], np.uint8).reshape(28, 28)
    rest = record[MODEL_BYTES:]
    if not rest or rest.startswith(PNG_MAGIC):  # no original, or a record from a worker that stored PNGs
        return model, bytes(rest)
    if len(rest) < _RAW_HEADER.size or not rest.startswith(RAW_MAGIC):
        raise ValueError("a crop record's original is neither raw pixels nor a PNG")
    _, h, w = _RAW_HEADER.unpack_from(rest)
    pixels = rest[_RAW_HEADER.size :]
    if h * w != len(pixels) or not h or not w:
        raise ValueError(f"a crop record's original holds {len(pixels)} bytes, not {h}x{w}")
    return model, png(np.frombuffer(pixels, np.uint8).reshape(h, w))


def png(gray: np.ndarray) -> bytes:
    """A uint8 grayscale image as a PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(gray, np.uint8), "L").save(buf, "PNG", optimize=True)
    return buf.getvalue()


def original_crop(ink: np.ndarray | None, box) -> np.ndarray | None:
    """The digit as written (dark ink on white, uint8), cut from the source ink map by its box with a
    2-pixel margin, shrunk to at most ``ORIGINAL_MAX_SIDE`` a side; None when there is nothing to cut."""
    if ink is None or box is None:
        return None
    h, w = ink.shape
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0, x1, y1 = max(0, x0 - 2), max(0, y0 - 2), min(w, x1 + 2), min(h, y1 + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    gray = (255 - np.clip(ink[y0:y1, x0:x1], 0, 1) * 255).astype(np.uint8)
    if max(gray.shape) > ORIGINAL_MAX_SIDE:  # rare (a big scan): Pillow's thumbnail, as it always was
        im = Image.fromarray(gray, "L")
        im.thumbnail((ORIGINAL_MAX_SIDE, ORIGINAL_MAX_SIDE))
        gray = np.asarray(im)
    return gray


def unit_crops(unit: int, kind: str, inks: list[np.ndarray], fields: list, rows: list[list[int | None]],
               readings: list[dict]) -> dict[str, bytes]:
    """The records of one unit's digits. ``rows``: per field, the crop row each digit was read from
    (``Recognizer.read_with_rows``). A digit with no crop of its own is left out, and so is a field whose
    rows do not match its reading digit for digit (never stored under the wrong position)."""
    out: dict[str, bytes] = {}
    many = len(fields) > 1
    for f, (field, picked, reading) in enumerate(zip(fields, rows, readings)):
        shown = [tuple(d["box"]) for d in reading.get("digits_detail", []) if not d.get("empty")]
        if len(picked) != len(reading.get("digits") or "") or len(shown) != len(picked):
            log.warning("unit %d field %d: crops do not match the reading; not kept for corrections", unit, f)
            continue
        for pos, (row, box) in enumerate(zip(picked, shown)):
            if row is None:
                continue
            if kind == "boxes":  # one image per box, empty boxes included: glyph i sits in the i-th non-empty one
                ink = inks[[i for i, e in enumerate(field.empty) if not e][pos]]
            else:
                ink = inks[0] if len(inks) == 1 else None
            out[crop_name(unit, f if many else None, pos)] = pack(field.crops[row], original_crop(ink, box))
    return out
