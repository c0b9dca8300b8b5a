"""Synthetic evaluation sets for the recognition pipeline: boxes, lines and forms with known truth.

Every handwritten glyph is a real MNIST digit (the test split for evaluation; the val split for tuning,
so no figure is ever picked on the test set), redrawn the way the service will meet it: canvas strokes
of varying size and pen width, transparent PNGs, photos of paper (uneven gray, blue ink, blur, JPEG,
skew), touching neighbours, broken strokes, separators, and printed comb-box forms with distractor text
at 150 to 300 dpi. A fixed seed gives the same set on every machine. numpy + Pillow only.

:func:`score` compares readings to the truth by edit distance, so a dropped or invented digit costs
exactly one digit, as it would for a person reading the result.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import phonenumbers
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

REGIONS = (("US", 10, 0.35), ("US", 11, 0.2), ("GB", 11, 0.25), ("FR", 10, 0.2))  # region, digits, share


# --- truth ---------------------------------------------------------------------------------------


def phone_number(rng: np.random.Generator) -> tuple[str, str]:
    """A valid 10- or 11-digit national number and its region (valid, so phone rules can only help if they are right)."""
    i = rng.choice(len(REGIONS), p=[r[2] for r in REGIONS])
    region, n, _ = REGIONS[i]
    prefix = {("US", 10): "", ("US", 11): "1", ("GB", 11): "07", ("FR", 10): "0"}[(region, n)]
    while True:
        s = prefix + "".join(str(d) for d in rng.integers(0, 10, n - len(prefix)))
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(s, region)):
                return s, region
        except phonenumbers.NumberParseException:
            pass


def written_form(digits: str, region: str, rng: np.random.Generator) -> str:
    """How a person might write the number on one line: groups, spaces and separators."""
    if region == "US":
        core = digits[-10:]
        a, b, c = core[:3], core[3:6], core[6:]
        styles = [f"{a}{b}{c}", f"{a} {b} {c}", f"({a}) {b}-{c}", f"({a}){b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}"]
        if len(digits) == 11:
            styles = [f"1{a}{b}{c}", f"1 {a} {b} {c}", f"1-{a}-{b}-{c}", f"+1 {a} {b} {c}", f"+1 ({a}) {b}-{c}", f"1 ({a}) {b}-{c}"]
        return styles[rng.integers(len(styles))]
    if region == "GB":
        styles = [digits, f"{digits[:5]} {digits[5:]}", f"{digits[:5]}-{digits[5:8]}-{digits[8:]}", f"({digits[:5]}) {digits[5:]}"]
        return styles[rng.integers(len(styles))]
    pairs = [digits[i : i + 2] for i in range(0, 10, 2)]
    styles = [digits, " ".join(pairs), ".".join(pairs), "-".join(pairs)]
    return styles[rng.integers(len(styles))]


# --- handwriting ---------------------------------------------------------------------------------


class DigitPool:
    """MNIST digits by class, drawn at random. ``split='test'`` for evaluation, 'val' for tuning."""

    def __init__(self, split: str = "test", root=None, images=None, labels=None):
        if images is None:
            from training.data import load_mnist

            images, labels = load_mnist(split, root)
        self.images = images
        self.by_class = [np.flatnonzero(labels == d) for d in range(10)]

    def draw(self, digit: int, rng: np.random.Generator) -> np.ndarray:
        idx = self.by_class[digit]
        return self.images[idx[rng.integers(len(idx))]]


def pen_digit(img28: np.ndarray, height: float, rng: np.random.Generator, pen: float | None = None) -> np.ndarray:
    """Redraw an MNIST digit at ``height`` pixels (for its 20-pixel box) as pen strokes of a chosen width.

    ``pen`` is the stroke width as a fraction of the height (MNIST's own is about 0.13).
    """
    a = img28.astype(np.float32) / 255.0
    rows, cols = np.flatnonzero(a.max(1) > 0.1), np.flatnonzero(a.max(0) > 0.1)
    a = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = height / 20.0
    size = (max(1, round(a.shape[1] * scale)), max(1, round(a.shape[0] * scale)))
    pad = max(4, int(height * 0.1))
    big = np.asarray(Image.fromarray(np.pad(a, 1)).resize((size[0] + 2 * round(scale), size[1] + 2 * round(scale)), Image.BICUBIC))
    big = np.pad(np.clip(big, 0, 1), pad)
    pen = pen if pen is not None else float(rng.uniform(0.05, 0.16))
    core = big > 0.5
    if not core.any():
        core = big > big.max() * 0.5
    dist_in = ndimage.distance_transform_edt(core)
    dist_out = ndimage.distance_transform_edt(~core)
    width = 2.0 * float(np.percentile(dist_in[core], 95))  # the stroke's width now
    grow = max((pen * height - width) / 2.0, -0.15 * width, 1.0 - width / 2.0)  # thinning deletes thin parts: only a little
    signed = np.where(core, -dist_in, dist_out)  # distance to the stroke's edge, < 0 inside
    ink = np.clip(0.5 - (signed - grow), 0.0, 1.0)  # anti-aliased edge about one pixel wide
    rows, cols = np.flatnonzero(ink.max(1) > 0.02), np.flatnonzero(ink.max(0) > 0.02)
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return ink.astype(np.float32)


def break_strokes(ink: np.ndarray, rng: np.random.Generator, digit: int) -> np.ndarray:
    """Open a thin gap where strokes cross one height, as a pen lifting or a faint stroke does.

    Only strokes that pass *through* the gap (ink above and below it) are cut; a horizontal stroke
    lying along it stays, since a pen lift does not erase a bar. For a 5 the gap goes under the top
    bar, which then floats apart (the issue's example).
    """
    h = ink.shape[0]
    rows = np.flatnonzero(ink.max(1) > 0.5)
    if len(rows) < 8:
        return ink
    top, bottom = rows[0], rows[-1]
    frac = rng.uniform(0.18, 0.3) if digit == 5 else rng.uniform(0.2, 0.8)
    y = int(top + frac * (bottom - top))
    gap = max(1, int(round(rng.uniform(0.03, 0.07) * (bottom - top))))
    a, b = max(1, y - gap // 2), min(h - 1, y - gap // 2 + gap)
    crossing = (ink[a - 1] > 0.5) & (ink[b] > 0.5)
    out = ink.copy()
    out[a:b, crossing] = 0
    return out


def separator_ink(char: str, height: float, pen_px: float, slant: float = 0.0) -> np.ndarray:
    """A hand-drawn separator at digit height ``height`` (the box it occupies: width by height)."""
    r = max(1.0, pen_px / 2)
    if char == "-":
        w, hh = int(0.45 * height), int(height)
        img = Image.new("L", (w + 8, hh), 0)
        d = ImageDraw.Draw(img)
        y = 0.55 * hh
        d.line([(4, y), (w + 4, y - 0.04 * hh)], fill=255, width=max(1, round(pen_px)))
    elif char == ".":
        w, hh = int(2 * r + 6), int(height)
        img = Image.new("L", (w, hh), 0)
        d = ImageDraw.Draw(img)
        d.ellipse([w / 2 - r * 1.2, hh - 2 * r * 1.2 - 2, w / 2 + r * 1.2, hh - 2], fill=255)
    elif char in "()":
        w, hh = int(0.35 * height), int(1.35 * height)
        img = Image.new("L", (w + 8, hh), 0)
        d = ImageDraw.Draw(img)
        box = [4, 2, 4 + 2 * w, hh - 2] if char == "(" else [4 - w, 2, 4 + w, hh - 2]
        d.arc(box, 120, 240, fill=255, width=max(1, round(pen_px))) if char == "(" else d.arc(box, -60, 60, fill=255, width=max(1, round(pen_px)))
    elif char == "+":
        s = int(0.55 * height)
        img = Image.new("L", (s + 8, int(height)), 0)
        d = ImageDraw.Draw(img)
        cy = 0.55 * height
        d.line([(4, cy), (s + 4, cy)], fill=255, width=max(1, round(pen_px)))
        d.line([(4 + s / 2, cy - s / 2), (4 + s / 2, cy + s / 2)], fill=255, width=max(1, round(pen_px)))
    else:
        raise ValueError(char)
    if slant:
        img = img.rotate(slant, Image.BILINEAR, expand=True)
    return np.asarray(img, dtype=np.float32) / 255.0


# --- samples -------------------------------------------------------------------------------------


@dataclass
class BoxesSample:
    images: list[bytes]  # one PNG per box, in order
    truth: str  # the digits, empty boxes left out
    empty: list[bool]
    region: str


@dataclass
class LineSample:
    image: bytes
    truth: str
    written: str  # with the separators, as drawn
    region: str
    style: str  # "canvas" | "photo"
    touching: int = 0
    broken: int = 0
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # each digit's ink box in the image


@dataclass
class FormField:
    truth: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the comb in the saved image
    region: str


@dataclass
class FormSample:
    image: bytes
    fmt: str
    dpi: int
    fields: list[FormField] = field(default_factory=list)


def _png(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, "PNG")
    return buf.getvalue()


def _canvas_rgba(ink: np.ndarray, color, transparent: bool) -> bytes:
    """Strokes on a transparent canvas (as a browser exports it) or on white."""
    h, w = ink.shape
    a8 = np.round(np.clip(ink, 0, 1) * 255).astype(np.uint8)
    if transparent:
        rgba = np.zeros((h, w, 4), np.uint8)
        rgba[..., :3] = np.asarray(color, np.uint8)  # colour stays; only alpha carries the stroke
        rgba[..., 3] = a8
        return _png(rgba, "RGBA")
    rgb = 255 - (a8[..., None].astype(np.float32) / 255.0) * (255 - np.asarray(color, np.float32))
    return _png(np.round(rgb).astype(np.uint8), "RGB")


def make_boxes(pool: DigitPool, n: int, seed: int = 0) -> list[BoxesSample]:
    """The canvas page's row of boxes: one PNG per digit, sometimes transparent, sometimes an empty box."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        digits, region = phone_number(rng)
        empties = [False] * len(digits)
        if rng.random() < 0.25:  # a trailing or a skipped box
            empties.insert(len(empties) if rng.random() < 0.6 else int(rng.integers(1, len(empties))), True)
        side = int(rng.choice([50, 50, 64, 80, 100, 128]))
        transparent = rng.random() < 0.5
        color = (0, 0, 0) if rng.random() < 0.7 else tuple(int(c) for c in rng.integers(0, 90, 3))
        pen = float(rng.uniform(0.05, 0.16))
        images, it = [], iter(digits)
        for empty in empties:
            ink = np.zeros((side, side), np.float32)
            if not empty:
                d = int(next(it))
                glyph = pen_digit(pool.draw(d, rng), side * rng.uniform(0.5, 0.85), rng, pen)
                gh, gw = glyph.shape
                gh, gw = min(gh, side), min(gw, side)
                y = int(rng.integers(0, side - gh + 1))
                x = int(rng.integers(0, side - gw + 1))
                ink[y : y + gh, x : x + gw] = np.maximum(ink[y : y + gh, x : x + gw], glyph[:gh, :gw])
            images.append(_canvas_rgba(ink, color, transparent))
        out.append(BoxesSample(images, digits, empties, region))
    return out


def _compose_line(written: str, pool: DigitPool, rng: np.random.Generator, height: float, touch_p: float, break_p: float):
    """Lay the glyphs of a written number out on one baseline; returns the ink, and counts of touching/broken."""
    pen = float(rng.uniform(0.06, 0.15))
    pieces = []  # (ink, x, y)
    x = float(rng.uniform(6, 30))
    top = height * 0.35 + 4
    touching = broken = 0
    prev_digit = False
    for ch in written:
        if ch == " ":
            x += rng.uniform(0.35, 0.8) * height
            prev_digit = False
            continue
        if ch.isdigit():
            h = height * rng.uniform(0.88, 1.12)
            glyph = pen_digit(pool.draw(int(ch), rng), h, rng, pen)
            if rng.random() < break_p:
                glyph = break_strokes(glyph, rng, int(ch))
                broken += 1
            gap = rng.uniform(0.08, 0.45) * height
            if prev_digit and rng.random() < touch_p:
                gap = -rng.uniform(0.0, 0.12) * height  # glyph boxes overlap: strokes often touch
                touching += 1
            y = top + (height - h) * 0.5 + rng.normal(0, 0.04 * height)
            prev_digit = True
        else:
            glyph = separator_ink(ch, height, pen * height, slant=rng.uniform(-8, 8) if ch in "()" else 0.0)
            gap = rng.uniform(0.1, 0.3) * height
            y = top - (glyph.shape[0] - height) / 2 + rng.normal(0, 0.03 * height)
            prev_digit = False
        x += gap if pieces else 0
        pieces.append((glyph, x, y, ch.isdigit()))
        x += glyph.shape[1]
    width = int(x + rng.uniform(6, 30))
    canvas = np.zeros((int(top * 2 + height * 1.1), width), np.float32)
    boxes = []
    for glyph, gx, gy, is_digit in pieces:
        gx, gy = max(0, int(round(gx))), max(0, int(round(gy)))
        gh, gw = glyph.shape
        gh, gw = min(gh, canvas.shape[0] - gy), min(gw, canvas.shape[1] - gx)
        canvas[gy : gy + gh, gx : gx + gw] = np.maximum(canvas[gy : gy + gh, gx : gx + gw], glyph[:gh, :gw])
        if is_digit:
            boxes.append((gx, gy, gx + gw, gy + gh))
    return canvas, touching, broken, boxes


def rotate_boxes(boxes, degrees: float, old_shape, new_shape) -> list[tuple[int, int, int, int]]:
    """Where boxes land after PIL's counter-clockwise ``rotate(degrees, expand=True)`` (their bounding boxes)."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    (h0, w0), (h1, w1) = old_shape, new_shape
    out = []
    for x0, y0, x1, y1 in boxes:
        d = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64) - [w0 / 2, h0 / 2]
        r = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], 1) + [w1 / 2, h1 / 2]
        out.append((int(r[:, 0].min()), int(r[:, 1].min()), int(np.ceil(r[:, 0].max())), int(np.ceil(r[:, 1].max()))))
    return out


def _photo(ink: np.ndarray, rng: np.random.Generator, skew_deg: float, blue: bool) -> tuple[bytes, tuple[int, int]]:
    """Ink on photographed paper: uneven gray, texture, blue or black pen, blur, skew, JPEG."""
    ink = np.asarray(Image.fromarray(ink).rotate(skew_deg, Image.BILINEAR, expand=True), np.float32)
    h, w = ink.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0.62, 0.95)
    angle = rng.uniform(0, 2 * np.pi)
    grad = ((xx / w - 0.5) * np.cos(angle) + (yy / h - 0.5) * np.sin(angle)) * rng.uniform(0.0, 0.25)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)).astype(np.float32), rng.uniform(2, 8)) * rng.uniform(0, 0.06) * 4
    paper = np.clip(base + grad + texture, 0.3, 1.0)
    tint = np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.88, 1.0)], np.float32)
    color = np.array([rng.uniform(0.0, 0.25), rng.uniform(0.1, 0.35), rng.uniform(0.55, 0.9)] if blue else [rng.uniform(0.0, 0.25)] * 3, np.float32)
    alpha = np.clip(ink * rng.uniform(0.75, 1.0), 0, 1)
    alpha = ndimage.gaussian_filter(alpha, rng.uniform(0.3, 1.0))
    img = paper[..., None] * tint * (1 - alpha[..., None]) + color * paper[..., None] * alpha[..., None]
    img = img + rng.normal(0, rng.uniform(0.005, 0.03), img.shape)
    rgb = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=int(rng.integers(45, 92)))
    return buf.getvalue(), ink.shape


def make_lines(pool: DigitPool, n: int, seed: int = 0, touch_p: float = 0.06, break_p: float = 0.06) -> list[LineSample]:
    """Whole numbers on one line, as canvas drawings (half) or photos of paper (half)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        digits, region = phone_number(rng)
        written = written_form(digits, region, rng)
        photo = rng.random() < 0.5
        height = rng.uniform(36, 90) if photo else rng.uniform(22, 70)
        ink, touching, broken, boxes = _compose_line(written, pool, rng, height, touch_p, break_p)
        if photo:
            skew = rng.uniform(-10, 10)
            image, shape = _photo(ink, rng, skew, blue=rng.random() < 0.5)
            boxes = rotate_boxes(boxes, skew, ink.shape, shape)
        else:
            color = (0, 0, 0) if rng.random() < 0.7 else tuple(int(c) for c in rng.integers(0, 90, 3))
            image = _canvas_rgba(ink, color, transparent=rng.random() < 0.5)
        out.append(LineSample(image, digits, written, region, "photo" if photo else "canvas", touching, broken, boxes))
    return out


# --- forms ---------------------------------------------------------------------------------------

_WORDS = "name address city postcode date signature email customer account number please write clearly in block capitals one digit per box office use only reference the of and to".split()


@lru_cache(maxsize=8)
def _font(px: int):
    return ImageFont.load_default(size=max(8, px))


def _comb(draw: ImageDraw.ImageDraw, x: float, y: float, n: int, bw: float, bh: float, t: int, style: str) -> None:
    """A printed row of ``n`` boxes (full rectangles) or a comb (bottom line with short ticks)."""
    if style == "boxes":
        draw.rectangle([x, y, x + n * bw, y + bh], outline=0, width=t)
        for i in range(1, n):
            draw.line([(x + i * bw, y), (x + i * bw, y + bh)], fill=0, width=t)
    else:
        draw.line([(x, y + bh), (x + n * bw, y + bh)], fill=0, width=t)
        for i in range(n + 1):
            draw.line([(x + i * bw, y + bh * 0.6), (x + i * bw, y + bh)], fill=0, width=t)


def make_forms(pool: DigitPool, n: int, seed: int = 0) -> list[FormSample]:
    """Scanned forms (or crops of them) with 1-3 comb fields, printed labels and distractor text."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        dpi = int(rng.choice([150, 200, 300]))
        mm = dpi / 25.4
        full = rng.random() < 0.5
        n_fields = int(rng.integers(1, 4)) if full else int(rng.integers(1, 3))
        page_w = 210 * mm if full else rng.uniform(150, 200) * mm
        page_h = 297 * mm if full else (30 + 25 * n_fields + rng.uniform(0, 20)) * mm
        W, H = int(page_w), int(page_h)
        page = Image.new("L", (W, H), 255)
        draw = ImageDraw.Draw(page)
        font = _font(int(3.2 * mm))
        ink = np.zeros((H, W), np.float32)
        y = rng.uniform(8, 25) * mm
        if full:  # a title and a paragraph of distractor text
            draw.text((20 * mm, y), "APPLICATION FORM " + str(int(rng.integers(100, 999))), fill=0, font=_font(int(5 * mm)))
            y += 12 * mm
            for _ in range(int(rng.integers(2, 6))):
                words = " ".join(rng.choice(_WORDS, int(rng.integers(6, 12))))
                draw.text((20 * mm, y), words + " " + str(int(rng.integers(0, 10**6))), fill=0, font=font)
                y += 6 * mm
            y += 6 * mm
        fields = []
        for f in range(n_fields):
            digits, region = phone_number(rng)
            n_boxes = len(digits) + int(rng.choice([0, 0, 1, 2]))
            bw, bh = rng.uniform(5.5, 8.5) * mm, rng.uniform(7, 10) * mm
            t = max(1, int(round(rng.uniform(0.15, 0.35) * mm)))
            style = "boxes" if rng.random() < 0.75 else "comb"
            label = str(rng.choice(["Phone", "Telephone", "Mobile", "Tel.", "Home phone", "Contact number"]))
            x0 = rng.uniform(10, 20) * mm
            draw.text((x0, y + bh * 0.25), label + ":", fill=0, font=font)
            x = x0 + font.getlength(label + ":") + rng.uniform(3, 8) * mm
            x = min(x, W - n_boxes * bw - 2 * mm)
            _comb(draw, x, y, n_boxes, bw, bh, t, style)
            side_text = rng.random() < 0.5 and x + n_boxes * bw + 40 * mm < W
            if side_text:
                draw.text((x + n_boxes * bw + 4 * mm, y + bh * 0.25), "(" + str(rng.choice(_WORDS)) + ")", fill=0, font=font)
            pen = float(rng.uniform(0.07, 0.15))
            for i, ch in enumerate(digits):
                h = bh * rng.uniform(0.55, 0.85)
                img = pool.draw(int(ch), rng)
                glyph = pen_digit(img, h, rng, pen)
                if glyph.shape[1] > 0.92 * bw:  # people write inside the box: a wide digit is written smaller
                    glyph = pen_digit(img, h * 0.92 * bw / glyph.shape[1], rng, pen)
                gh, gw = glyph.shape
                cx = x + (i + 0.5) * bw + rng.normal(0, 0.08) * bw
                cy = y + bh * 0.5 + rng.normal(0, 0.06) * bh
                gx, gy = int(round(cx - gw / 2)), int(round(cy - gh / 2))
                gx, gy = max(0, gx), max(0, gy)
                gh, gw = min(gh, H - gy), min(gw, W - gx)
                ink[gy : gy + gh, gx : gx + gw] = np.maximum(ink[gy : gy + gh, gx : gx + gw], glyph[:gh, :gw])
            fields.append((digits, region, (x, y, x + n_boxes * bw, y + bh)))
            y += bh + rng.uniform(10, 25) * mm
            if y > H - 15 * mm:
                break
        printed = 1.0 - np.asarray(page, np.float32) / 255.0
        blue = rng.random() < 0.4
        gray = np.clip(1.0 - printed * rng.uniform(0.75, 0.95), 0, 1)
        paper = rng.uniform(0.85, 1.0)
        if blue:
            color = np.array([rng.uniform(0.05, 0.25), rng.uniform(0.15, 0.35), rng.uniform(0.55, 0.85)], np.float32)
            img = (paper * gray)[..., None] * (1 - ink[..., None]) + color * ink[..., None]
        else:
            img = paper * gray * (1 - ink * rng.uniform(0.8, 1.0))
        img = img + rng.normal(0, rng.uniform(0.0, 0.03), img.shape).astype(np.float32)
        arr = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
        im = Image.fromarray(arr, "RGB" if blue else "L")
        angle = float(rng.uniform(-1.5, 1.5))
        im = im.rotate(angle, Image.BILINEAR, expand=False, fillcolor=(255, 255, 255) if blue else 255)
        fmt = str(rng.choice(["PNG", "JPEG", "TIFF"]))
        buf = io.BytesIO()
        if fmt == "JPEG":
            im.save(buf, "JPEG", quality=int(rng.integers(70, 95)), dpi=(dpi, dpi))
        elif fmt == "TIFF":
            im.save(buf, "TIFF", compression="tiff_lzw", dpi=(dpi, dpi))
        else:
            im.save(buf, "PNG", dpi=(dpi, dpi))
        sample = FormSample(buf.getvalue(), fmt.lower(), dpi)
        c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        for digits, region, (bx0, by0, bx1, by1) in fields:  # PIL rotates counter-clockwise about the centre
            corners = np.array([[bx0, by0], [bx1, by0], [bx0, by1], [bx1, by1]]) - [W / 2, H / 2]
            rot = np.stack([corners[:, 0] * c + corners[:, 1] * s, -corners[:, 0] * s + corners[:, 1] * c], 1) + [W / 2, H / 2]
            box = (int(rot[:, 0].min()), int(rot[:, 1].min()), int(rot[:, 0].max()), int(rot[:, 1].max()))
            sample.fields.append(FormField(digits, box, region))
        out.append(sample)
    return out


# --- scoring -------------------------------------------------------------------------------------


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@dataclass
class Score:
    """Digit accuracy = 1 - edits / truth digits (a missed, invented or wrong digit is one edit)."""

    numbers: int = 0
    exact: int = 0
    digits: int = 0
    edits: int = 0

    def add(self, truth: str, read: str) -> None:
        self.numbers += 1
        self.digits += len(truth)
        self.exact += truth == read
        self.edits += min(edit_distance(truth, read), len(truth))

    @property
    def digit_accuracy(self) -> float:
        return 1.0 - self.edits / max(self.digits, 1)

    @property
    def exact_match(self) -> float:
        return self.exact / max(self.numbers, 1)


def match_fields(truth: list[FormField], boxes: list[tuple[int, int, int, int]]) -> list[int | None]:
    """For each true field, the index of the read field whose box overlaps it most (None when none does)."""
    out = []
    for f in truth:
        best, best_area = None, 0
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            w = min(f.box[2], x1) - max(f.box[0], x0)
            h = min(f.box[3], y1) - max(f.box[1], y0)
            if w > 0 and h > 0 and w * h > best_area:
                best, best_area = i, w * h
        out.append(best)
    return out
