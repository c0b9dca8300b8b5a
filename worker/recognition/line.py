"""Cut a freehand line of digits into glyphs: components, fragments merged, separators set aside,
touching neighbours split.

Everything is measured against the line's own digit height ``H`` (the median height of the tall
components), so the same rules hold for a 25-pixel canvas scribble and a 300-pixel photo. Where the
geometry is ambiguous (a blob 1.2 H wide may be a wide 0 or two touching digits), the cut keeps several
*options* for that slot and the model picks one later in ``read()``: the options' crops ride in the
same batch as every other crop, so the worker still makes one forward pass per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from scipy import ndimage

from worker.recognition import ink as inkmod
from worker.recognition.glyphs import Components, Frame, from_labels


@dataclass(frozen=True)
class LineParams:
    """Geometry rules, in units of the digit height H. Tuned on synthetic lines from MNIST *val* digits."""

    max_height: int = 84  # larger images are shrunk first (a first guess: a line image is a few digits tall)
    max_width: int = 1600
    target_h: float = 32.0  # digits taller than max_h are shrunk to about this height
    max_h: float = 46.0
    min_h: float = 18.0  # a first guess that left digits shorter than this is retried finer
    image_to_digit: float = 2.2  # a line image's height over its digits' (median on synthetic lines; 1.8-4.5)
    rotate_from_deg: float = 12.0  # steeper lines are rotated level; gentler ones only tracked by slope
    speck: float = 0.12  # blobs smaller than this (both sides) are noise...
    speck_reach: float = 0.1  # ...unless this close to a digit (the dots of a skipping pen)
    speck_rounds: int = 4
    fragment_h: float = 0.62  # a piece shorter than this that sits over/under a taller one belongs to it
    fragment_overlap: float = 0.45
    fragment_gap: float = 0.45
    merge_max_h: float = 1.5
    near: float = 0.12  # pieces this close (in H) may be one digit whose pen lifted
    tall_overlap: float = 0.6  # two tall pieces overlapping this much may be one broken digit
    broken_min: float = 0.3  # ...as may two side by side, the shorter of them this tall or more...
    broken_max: float = 0.8  # ...but under this (two full-height pieces are two digits)...
    broken_gap: float = 0.15  # ...at most this far apart...
    broken_w: float = 1.3  # ...and together no wider than this
    baseline_tol: float = 0.2  # neighbouring digits' feet differ by up to this much
    split_from: float = 1.1  # narrower blobs are one digit by default (the width prior is for wider ones)
    pair_from: float = 0.55  # ...but from this width they also carry a "touching pair" split (see Option.pair; 0.7
    # before session 9: two 1s touching in a V, or a 1 over a 7, are narrower; val lines 262 -> 239 edits)
    whole_below: float = 1.6  # wider blobs are never one digit
    three_from: float = 1.75
    seam_candidates: int = 4  # seams looked at for a digit-shaped split (see _seams)
    two_at: float = 1.25  # width (in H) where one digit and two are equally likely
    three_at: float = 2.1
    count_slope: float = 14.0  # log-odds per H of width
    dot: float = 0.34
    dash_h: float = 0.3
    paren_h: float = 0.8
    paren_w: float = 0.45
    paren_bulge: float = 0.08
    lone_bracket_h: float = 1.1  # a bracket with no partner still counts when it is this tall...
    lone_bracket_bulge: float = 0.1  # ...and this curved
    band: float = 0.75  # units whose centre is further than band*H outside the digit band are stray marks
    # A lone thin or short unit read as a digit may be no digit at all: a bracket without a partner, a
    # slanted dash, the loose bar of a broken 5. When the line's reading is no valid number, read() may
    # drop it, at this log prior (tuned on MNIST val lines).
    drop_below: float = 0.6  # thinner or shorter than this (in H)
    drop_prior: float = -3.0
    space_gap: float = 0.6  # a gap this wide (in H) between digits is a space: it ends a group


@dataclass
class Piece:
    box: tuple[int, int, int, int]  # working-image coordinates while cutting, source coordinates after
    ink: np.ndarray  # the glyph's own pixels (other glyphs masked out), ready for normalize_digit


@dataclass
class Option:
    pieces: list[Piece]
    prior: float = 0.0  # log prior from geometry; read() adds the model's log-probabilities
    pair: tuple[float, float, float] | None = None  # (width/H, seam, narrower piece's share) of a narrow blob's split


@dataclass
class Slot:
    """One place in the number: usually a single option; ambiguous blobs carry alternatives (default first)."""

    options: list[Option]
    ratio: float = 0.0  # the blob's width over the digit height (for tuning and debugging)
    pair_split: Callable[[], list[Option]] | None = None  # a narrow blob's splits as a touching pair, cut on demand
    drop: float | None = None  # log prior that this lone glyph is no digit (see LineParams.drop_below)
    bracket: str | None = None  # '(' or ')': a bracket by its shape, unless the model reads a digit (see cut_line)


@dataclass
class LineCut:
    slots: list[Slot] = field(default_factory=list)
    separators: list[tuple[str, tuple[int, int, int, int]]] = field(default_factory=list)  # (char, source box)
    frame: Frame = field(default_factory=Frame)
    height: float = 0.0  # digit height in working pixels


def _median(values) -> float:
    """np.median costs ~20 us in overhead; a line has a dozen values."""
    v = sorted(float(x) for x in values)
    n = len(v)
    return (v[n // 2] + v[(n - 1) // 2]) / 2.0


def _height(c: Components) -> float:
    """Median height of the tall blobs: separators and fragments are shorter and do not move it.

    With fewer than three tall blobs (a lone, perhaps broken, digit) the median is no estimate; the
    height of the whole ink band is used when it is larger.
    """
    if c.n == 0:
        return 0.0
    h = c.h.astype(np.float64)
    sig = c.area >= 0.02 * c.area.max()
    ref = np.max(h[sig])
    tall = h >= 0.45 * ref
    H = _median(h[tall])
    if tall.sum() < 3:
        band = float(np.max(c.y1[sig]) - np.min(c.y0[sig]))
        H = max(H, min(band, 1.6 * ref))
    return H


def _binarized(work: np.ndarray, flat: bool = False) -> tuple[np.ndarray, np.ndarray, Components, float]:
    work = work if flat else inkmod.flatten(work)
    labels, n = inkmod.strokes(work)
    comps = from_labels(labels, n)
    return work, labels > 0, comps, _height(comps)


def prepare(ink: np.ndarray, p: LineParams = LineParams()) -> tuple[np.ndarray, np.ndarray, Components, float, Frame, float]:
    """Working image: digits about ``target_h`` pixels tall, paper flattened, binarised, deskewed.

    Digits end up 20 pixels tall in the model's input, so working at 30-40 pixels loses nothing and
    makes every later step (labels, cuts, crops) several times cheaper than at photo resolution.
    A first guess of the scale comes from the image height (a line image is a few digits tall).
    Skew up to ``rotate_from_deg`` is not undone (rotating costs more than the whole cut); the band
    rules use the fitted ``slope`` instead, and the model is trained on digits rotated by more
    (levelling each crop measured no gain on synthetic photos skewed by up to 10 degrees).
    """
    ink = np.asarray(ink, np.float32)
    src = ink.shape
    f = max(1, round(max(ink.shape[0] / p.max_height, ink.shape[1] / p.max_width)))
    guess = ink.shape[0] / (f * p.image_to_digit)  # digit height, if the image is the usual margins around one row
    if guess > 1.1 * p.max_h:  # clearly too fine: shrink now rather than label it twice
        f *= max(2, round(guess / p.target_h))
    work, mask, comps, H = _binarized(inkmod.downscale(ink, f))
    if f > 1 and 0 < H < p.min_h:  # the guess shrank small digits too far: start again finer
        f = max(1, int(f * H / p.target_h))
        work, mask, comps, H = _binarized(inkmod.downscale(ink, f))
    if H > p.max_h:
        g = max(2, round(H / p.target_h))
        f *= g
        work, mask, comps, H = _binarized(inkmod.downscale(work, g), flat=True)
    frame = Frame(scale=f, scaled_shape=work.shape, work_shape=work.shape, source_shape=src)
    slope = 0.0
    if comps.n >= 3:
        tall = (comps.h >= 0.6 * H) & (comps.h <= 1.3 * H)
        angle = inkmod.skew_angle(comps.cx[tall], comps.cy[tall]) if tall.sum() >= 3 else 0.0
        if abs(angle) > 25:
            angle = 0.0
        if abs(angle) >= p.rotate_from_deg:
            scaled_shape = work.shape
            work, mask, comps, H = _binarized(inkmod.rotate(work, angle), flat=True)
            frame = Frame(scale=f, angle=angle, scaled_shape=scaled_shape, work_shape=work.shape, source_shape=src)
        else:
            slope = float(np.tan(np.radians(angle)))  # small skews stay: the band rules follow the slope
    return work, mask, comps, H, frame, slope


def _groups(c: Components, keep: np.ndarray, H: float, p: LineParams, slope: float = 0.0) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """Union the fragments of broken strokes into units; return the units and ambiguous tall pairs.

    Two rules. A short piece mostly within a taller piece's columns, just above or below it, is part of
    it (a 2's foot, the lower half of a cut 0). A short flat piece in the top zone of the line is a
    floating bar (a 5's or a 7's) and joins the nearest tall neighbour: separators never sit up there.
    """
    idx = np.flatnonzero(keep)
    x0, x1, y0, y1 = c.x0[idx], c.x1[idx], c.y0[idx], c.y1[idx]
    h, w = (y1 - y0).astype(np.float64), np.maximum(x1 - x0, 1).astype(np.float64)
    cx = (x0 + x1) / 2.0
    lift = slope * (cx - _median(cx))  # band rules measure heights from the sloping baseline
    cy = (y0 + y1) / 2.0 - lift
    ov = np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None])
    gap = np.maximum(x0[None] - x1[:, None], x0[:, None] - x1[None])  # < 0 when overlapping
    vgap = np.maximum(np.maximum(y0[None] - y1[:, None], y0[:, None] - y1[None]), 0)
    mw = np.maximum(x1[:, None], x1[None]) - np.minimum(x0[:, None], x0[None])  # the pair's width and height together
    mh = np.maximum(y1[:, None], y1[None]) - np.minimum(y0[:, None], y0[None])
    short = h < p.fragment_h * H
    tall = h >= 0.6 * H
    band_top = _median((y0 - lift)[tall]) if tall.any() else float(y0.min())
    band_bot = _median((y1 - lift)[tall]) if tall.any() else float(y1.max())
    tiny = np.maximum(h, w) < p.dot * H
    low = cy > band_bot - 0.3 * H
    # j is a fragment of i: j is short, overlaps i's columns, close above/below, and i is taller
    frag = (
        short[None, :]
        & (ov / np.minimum(w[:, None], w[None]) >= p.fragment_overlap)
        & (vgap <= p.fragment_gap * H)
        & (mh <= p.merge_max_h * H)
        & (h[:, None] >= h[None, :])
        & ~(tiny & low)[None, :]  # a dot on the baseline is a separator, not part of its neighbour
    )
    np.fill_diagonal(frag, False)
    edges = list(zip(*np.nonzero(frag)))
    bar = short & (cy < band_top + 0.3 * H) & (h < 0.35 * H)
    if bar.any() and tall.any():
        for j in np.flatnonzero(bar):
            # a tall neighbour, or a smaller bowl under the bar that the bar makes digit-high
            body = tall | ((h >= 0.4 * H) & (mh[:, j] >= 0.55 * H))
            cand = np.flatnonzero(body & (gap[:, j] <= 0.25 * H) & (y1 > y1[j]))
            if len(cand):
                left_first = gap[cand, j] - 0.05 * H * ((x0[cand] + x1[cand]) / 2 < (x0[j] + x1[j]) / 2)
                edges.append((int(cand[np.argmin(left_first)]), int(j)))
    # pieces that almost touch (a pen lifted for a moment): join a short piece to its nearest tall-enough
    # neighbour when the result is still digit-sized; dots and dashes are left alone
    mid = (cy > band_top + 0.25 * H) & (cy < band_bot - 0.15 * H)
    dash = (h < p.dash_h * H) & (w >= 1.4 * h) & mid
    joined = {int(j) for _, j in edges}
    near = max(1, int(round(p.near * H)))
    for j in np.flatnonzero(short & ~(tiny & low) & ~dash):
        if int(j) in joined:
            continue
        bgap = np.maximum(gap[:, j], np.maximum(y0 - y1[j], y0[j] - y1))
        cand = np.flatnonzero((bgap <= near) & (mw[:, j] <= 1.05 * H) & (mh[:, j] <= p.merge_max_h * H) & ~dash & ~(tiny & low))
        cand = [int(i) for i in cand[np.argsort(bgap[cand])] if i != j]
        for i in cand:
            if _pixel_gap(c, int(idx[i]), int(idx[j]), near):
                edges.append((i, int(j)))
                break
    parent = list(range(len(idx)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in edges:
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[rj] = ri
    pairs = (tall[:, None] & tall[None, :]) & (ov / np.minimum(w[:, None], w[None]) >= p.tall_overlap)
    # two pieces of one broken digit that no rule above joined (a 4 whose arm misses its stem, a 5 whose
    # bar floats off a small bowl): side by side and digit-sized together, but one too tall to be a mere
    # fragment. Offered both ways; the model and the phone rules pick.
    lo = np.minimum(h[:, None], h[None])
    pairs |= (
        (lo >= p.broken_min * H) & (lo < p.broken_max * H)
        & (np.maximum(gap, vgap) <= p.broken_gap * H)
        & (mw <= p.broken_w * H) & (mh >= 0.65 * H) & (mh <= 1.35 * H)
    )
    units: dict[int, list[int]] = {}
    for k in range(len(idx)):
        units.setdefault(find(k), []).append(int(idx[k]))
    ambiguous = [(int(idx[i]), int(idx[j])) for i, j in zip(*np.nonzero(np.triu(pairs, 1))) if find(int(i)) != find(int(j))]
    return list(units.values()), ambiguous


def _attach_specks(c: Components, keep: np.ndarray, units: list[list[int]], H: float, p: LineParams) -> list[list[int]]:
    """Give specks that lie against a digit back to it: a thin or skipping pen leaves a stroke as a row
    of dots (the top of a 5 or a 6), and without them the digit reads as another (a 3). A speck joins
    the nearest unit within ``speck_reach`` H whose columns it lies in, if the unit stays digit-sized;
    a few rounds let a chain of dots grow out from the digit. Dust elsewhere stays dropped."""
    specks = np.flatnonzero(~keep)
    if not len(specks) or not units:
        return units
    units = [list(u) for u in units]
    box = np.array([[c.x0[u].min(), c.y0[u].min(), c.x1[u].max(), c.y1[u].max()] for u in units], np.float64)
    sx0, sy0, sx1, sy1 = (a[specks].astype(np.float64)[:, None] for a in (c.x0, c.y0, c.x1, c.y1))
    scx = (sx0 + sx1) / 2
    left = np.ones(len(specks), bool)
    for _ in range(p.speck_rounds):
        d = np.maximum(np.maximum(box[None, :, 0] - sx1, sx0 - box[None, :, 2]), np.maximum(box[None, :, 1] - sy1, sy0 - box[None, :, 3]))
        cols = (scx >= box[None, :, 0] - 0.05 * H) & (scx <= box[None, :, 2] + 0.05 * H)
        nw = np.maximum(box[None, :, 2], sx1) - np.minimum(box[None, :, 0], sx0)
        nh = np.maximum(box[None, :, 3], sy1) - np.minimum(box[None, :, 1], sy0)
        ok = left[:, None] & (d <= p.speck_reach * H) & cols & (nw <= 1.1 * H) & (nh <= 1.3 * H)
        hit = np.flatnonzero(ok.any(1))
        if not len(hit):
            break
        for k in hit:
            u = int(np.argmin(np.where(ok[k], d[k], np.inf)))
            units[u].append(int(specks[k]))
            box[u] = np.minimum(box[u, 0], sx0[k, 0]), np.minimum(box[u, 1], sy0[k, 0]), np.maximum(box[u, 2], sx1[k, 0]), np.maximum(box[u, 3], sy1[k, 0])
            left[k] = False
    return units


def _pixel_gap(c: Components, a: int, b: int, r: int) -> bool:
    """Do components a and b (0-based) come within r pixels of each other (Chebyshev distance)?"""
    x0, y0 = min(c.x0[a], c.x0[b]), min(c.y0[a], c.y0[b])
    x1, y1 = max(c.x1[a], c.x1[b]), max(c.y1[a], c.y1[b])
    sub = c.labels[y0:y1, x0:x1]
    grown = ndimage.maximum_filter((sub == a + 1).astype(np.uint8), size=2 * r + 1)
    return bool((grown.astype(bool) & (sub == b + 1)).any())


@dataclass
class _Unit:
    ids: list[int]
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0


def _unit(c: Components, ids: list[int]) -> _Unit:
    if len(ids) == 1:  # most units: plain indexing is 4x cheaper than the fancy kind below
        i = ids[0]
        return _Unit(ids, int(c.x0[i]), int(c.y0[i]), int(c.x1[i]), int(c.y1[i]))
    ids_a = np.asarray(ids)
    return _Unit(ids, int(c.x0[ids_a].min()), int(c.y0[ids_a].min()), int(c.x1[ids_a].max()), int(c.y1[ids_a].max()))


def _mask(c: Components, u: _Unit) -> np.ndarray:
    lab = c.labels[u.y0 : u.y1, u.x0 : u.x1]
    if len(u.ids) == 1:
        return lab == u.ids[0] + 1
    return np.isin(lab, np.asarray(u.ids) + 1)


def _bulge(m: np.ndarray) -> float:
    """How far the middle of a tall stroke sits left (<0) or right (>0) of the line joining its ends.

    A straight stroke has none however slanted it is (a 1); a bracket is an arc and has plenty.
    """
    h, w = m.shape
    counts = m.sum(1)
    rows = counts > 0
    xs = ((m * np.arange(w)).sum(1) / np.maximum(counts, 1))[rows]
    n = len(xs)
    if n < 6:
        return 0.0
    k = max(1, n // 6)
    top, mid, bot = xs[:k].mean(), xs[n // 2 - k : n // 2 + k].mean(), xs[-k:].mean()
    return float(mid - (top + bot) / 2.0)


def classify_separator(m: np.ndarray, H: float, first: bool, p: LineParams) -> str | None:
    """'.', '-', '(', ')', '+' for a unit that is not a digit by its shape and size, else None.

    Only geometry: the model has never seen a bracket and would call it a confident 1. Brackets are
    only candidates here; cut_line keeps them when they pair up around a few digits.
    """
    h, w = m.shape
    if max(h, w) < p.dot * H and h < p.dot * H:
        return "." if w < 2.2 * h else "-"
    if h <= p.dash_h * H and w >= 1.4 * h:
        return "-"
    if h >= p.paren_h * H and w <= p.paren_w * H and m.sum() / h < 0.3 * H and not _encloses_paper(m):
        bulge = _bulge(m)
        if abs(bulge) >= p.paren_bulge * H:
            return "(" if bulge < 0 else ")"
    if first and 0.25 * H <= max(h, w) <= 0.85 * H and 0.55 < w / max(h, 1) < 1.8 and _is_cross(m):
        return "+"
    return None


def _encloses_paper(m: np.ndarray) -> bool:
    """Does the glyph close a loop around some paper? A bracket is an open arc; a narrow 6, 0 or 9
    that is otherwise shaped like one (tall, thin, curved) closes its loop."""
    holes, n = ndimage.label(~np.pad(m, 1))  # padded: all the outside paper is one region
    if n <= 1:
        return False
    sizes = np.bincount(holes.ravel(), minlength=n + 1)[2:]  # region 1 is the outside (it holds the corner)
    return bool((sizes >= 2).any())  # a one-pixel pinhole in a thick stroke is no loop


def _pair_brackets(kinds: list[str | None], tall_strong: list[bool]) -> list[str | None]:
    """Keep '(' and ')' that enclose up to 6 digits near the start of the number (at most 4 digits
    before, at least 4 after: an area or trunk code; or nothing outside them), or that are unmistakable
    alone; the rest are digits (a curved 1 looks like a bracket, and losing a digit costs more than
    reading a stray bracket).
    Of two like brackets side by side, the outer one is the bracket: "((" and "))" are never written,
    but a 7 or a 1 just inside a bracket can be shaped like one. For the same reason a number has one
    bracketed code: of two pairs in a row, the outer brackets are the pair when they fit."""
    # of a run of like brackets only the outermost is one (the comprehension reads the list as passed in)
    kinds = [None if (k == "(" and kinds[i - 1 : i] == ["("]) or (k == ")" and kinds[i + 1 : i + 2] == [")"]) else k
             for i, k in enumerate(kinds)]  # fmt: skip

    def code(i: int, j: int, inside: int) -> bool:
        before, after = kinds[:i].count(None), kinds[j + 1 :].count(None)
        return inside <= 6 and before <= 4 and (after >= 4 or before + after == 0)

    pairs = []
    for i, k in enumerate(kinds):
        if k != "(":
            continue
        digits = 0
        for j in range(i + 1, len(kinds)):
            if kinds[j] is None:
                digits += 1
            elif kinds[j] == "(":
                break
            elif kinds[j] == ")":
                if code(i, j, digits):
                    pairs.append((i, j))
                break
    if len(pairs) > 1 and code(pairs[0][0], pairs[-1][1], pairs[-1][1] - pairs[0][0] - 1):
        pairs = [(pairs[0][0], pairs[-1][1])]  # one code per number: "(0)1(23)" is a 7 and a 1 read as brackets
    confirmed = {i for pair in pairs for i in pair}
    out = list(kinds)
    for i, k in enumerate(kinds):
        if k in ("(", ")") and i not in confirmed and not tall_strong[i]:
            out[i] = None
    return out


def _find_partners(kinds: list[str | None], units: list["_Unit"], masks: list[np.ndarray], H: float, p: LineParams) -> list[str | None]:
    """A bracket whose partner the shape test missed: a straight ')' is just a tall stroke, and the
    digit model reads it as a confident 1. Brackets hug a group of digits with no space inside, so look
    from the lone bracket across its group (up to a wide gap or a separator) for the farthest tall thin
    stroke at least two digits away, and make that the partner."""
    out = list(kinds)
    for i, k in enumerate(kinds):
        if k not in ("(", ")") or _has_partner(out, i):
            continue
        step = 1 if k == "(" else -1
        digits, best, j = 0, None, i + step
        while 0 <= j < len(units) and out[j] is None:
            a, b = (units[j - step], units[j]) if step == 1 else (units[j], units[j - step])
            if j != i + step and b.x0 - a.x1 >= p.space_gap * H:  # a space: the group has ended
                break
            u = units[j]
            if digits >= 2 and u.h >= p.paren_h * H and u.w < p.drop_below * H and not _encloses_paper(masks[j]):
                best = j
            digits += 1
            j += step
        if best is not None:
            out[best] = ")" if k == "(" else "("
    return out


def _has_partner(kinds: list[str | None], i: int) -> bool:
    step, want = (1, ")") if kinds[i] == "(" else (-1, "(")
    j = i + step
    while 0 <= j < len(kinds) and kinds[j] in (None, "-", "."):
        j += step
    return 0 <= j < len(kinds) and kinds[j] == want


def _is_cross(m: np.ndarray) -> bool:
    """A plus sign: two bars crossing near the middle, each spanning the glyph, and nothing in the
    four corners (a 4 or a 7 always puts a stroke in one). Tolerates bars tilted by ~20 degrees."""
    h, w = m.shape
    ys, xs = np.nonzero(m)
    if len(ys) < 8:
        return False
    cy, cx = float(np.median(ys)), float(np.median(xs))
    if not (0.25 * h <= cy <= 0.75 * h and 0.25 * w <= cx <= 0.75 * w):
        return False
    off_x = np.abs(xs - cx) > 0.22 * w
    off_y = np.abs(ys - cy) > 0.22 * h
    if (off_x & off_y).mean() > 0.04:
        return False
    hx, vy = xs[~off_y], ys[~off_x]
    holes, n = ndimage.label(~m)  # a plus encloses no paper; a 4, 6 or 9 does
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    if n > len(border[border > 0]):
        return False
    return bool(
        len(hx) and len(vy)
        and cx - hx.min() >= 0.3 * w and hx.max() - cx >= 0.3 * w
        and cy - vy.min() >= 0.3 * h and vy.max() - cy >= 0.3 * h
    )


def cut_paths(m: np.ndarray, H: float, k: int = 2, margin: float = 0.25) -> list[tuple[np.ndarray, int]]:
    """Up to ``k`` top-to-bottom cut paths through a blob that cross the least ink (seam-carving DP),
    each with the number of ink pixels it crosses.

    A path is one column per row; it may drift one column per row, so it can follow the gap
    between two slanted digits that touch at one point, where a straight cut would slice a stroke.
    """
    h, w = m.shape
    lo, hi = max(1, int(0.2 * w), int(margin * H)), min(w - 1, int(0.8 * w), w - int(margin * H))
    if hi <= lo:
        lo, hi = max(1, w // 3), max(2, w - w // 3)
        if hi <= lo:
            return []
    cost = m.astype(np.float32) + 0.02
    inf = np.float32(1e9)
    E = np.full(w, inf, np.float32)
    E[lo:hi] = cost[0, lo:hi]
    back = np.zeros((h, w), np.int8)
    side = np.float32(0.08)  # a sideways step costs a little, so straight cuts win ties
    best = np.empty(w, np.float32)
    for y in range(1, h):
        np.copyto(best, E)
        step = back[y]
        shifted = E[:-1] + side  # arrive from the left neighbour
        better = shifted < best[1:]
        best[1:][better] = shifted[better]
        step[1:][better] = -1
        shifted = E[1:] + side  # arrive from the right neighbour
        better = shifted < best[:-1]
        best[:-1][better] = shifted[better]
        step[:-1][better] = 1
        E = best + cost[y]
        E[:lo] = inf
        E[hi:] = inf
    order = np.argsort(E[lo:hi], kind="stable") + lo
    ends: list[int] = []
    for x in order:
        if E[x] >= inf:
            break
        if all(abs(int(x) - e) >= max(2, 0.15 * H) for e in ends):
            ends.append(int(x))
        if len(ends) == k:
            break
    paths = []
    for x in ends:
        path = np.empty(h, np.int64)
        path[-1] = x
        for y in range(h - 1, 0, -1):
            path[y - 1] = path[y] + back[y, path[y]]  # back: where row y-1's end of the path lies
        paths.append((path, int(m[np.arange(h), path].sum())))
    return paths


def _split(m: np.ndarray, path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    left_of = np.arange(m.shape[1])[None, :] < path[:, None]
    return m & left_of, m & ~left_of


def _whole(work: np.ndarray, m: np.ndarray, u: "_Unit") -> Piece:
    """A unit's own pixels: its mask already spans its box exactly."""
    return Piece((u.x0, u.y0, u.x1, u.y1), np.where(m, work[u.y0 : u.y1, u.x0 : u.x1], np.float32(0)))


def _piece(work: np.ndarray, m: np.ndarray, ox: int, oy: int) -> Piece | None:
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    if len(rows) == 0:
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    sub = m[r0:r1, c0:c1]
    crop = np.where(sub, work[oy + r0 : oy + r1, ox + c0 : ox + c1], 0.0).astype(np.float32)
    return Piece((int(ox + c0), int(oy + r0), int(ox + c1), int(oy + r1)), crop)


def _prior(pieces: list[Piece], r: float, H: float, p: LineParams) -> float:
    """Log prior of reading a blob ``r`` H wide as these pieces.

    The count term is an ordinal logit fitted on synthetic lines (MNIST val digits): a blob 1.25 H wide
    is as likely one digit as two, each 0.1 H either way moves the odds by e^1.4; three digits centre
    on 2.1 H. The shape terms (:func:`_misshapen`) veto pieces no digit has.
    """
    n = len(pieces)
    lp = 0.0
    if n >= 2:
        lp += p.count_slope * (r - p.two_at)
    if n >= 3:
        lp += p.count_slope * (r - p.three_at)
    return float(lp - _misshapen(pieces, H))


def _misshapen(pieces: list[Piece], H: float) -> float:
    """Log-prior penalty of cutting a blob into pieces no digit has: slivers, or stubs well under the
    line height (0 for a blob left whole)."""
    penalty = 0.0
    if len(pieces) < 2:
        return penalty
    for pc in pieces:
        w, h = (pc.box[2] - pc.box[0]) / H, (pc.box[3] - pc.box[1]) / H
        if w < 0.15:
            penalty += ((0.15 - w) / 0.05) ** 2
        if h < 0.55:
            penalty += ((0.55 - h) / 0.1) ** 2
    return penalty


def _off_baseline(a: Piece, b: Piece, H: float, p: LineParams) -> float:
    """Log-prior penalty for reading two pieces side by side as two digits when their feet are far apart:
    neighbouring digits stand on one baseline, the arm of a broken 4 or the bar of a 5 floats above it."""
    d = abs(a.box[3] - b.box[3]) / H - p.baseline_tol
    return (d / 0.1) ** 2 if d > 0 else 0.0


def _pair_options(work: np.ndarray, m: np.ndarray, u: _Unit, H: float, r: float, frame: Frame, k: int = 3) -> list[Option]:
    """A narrow blob split in two at its ``k`` best seams, for the case it is a touching pair ("17", a 1
    tucked into a 2): width alone cannot tell these from one wide digit, so these options carry no
    prior, only their geometry (``pair``); read() weighs them with the models' doubt about the whole
    blob, and the model's reading of the pieces picks the seam (choose.py). Seams may pass closer to
    the blob's edge than for wide blobs: a 1 is a sliver.

    Called only by read(), for lines whose reading is a digit short of a valid number: cutting every
    narrow blob up front doubled the crops per line and cost a third of the cutting time."""
    out = []
    for path, crossed in cut_paths(m, H, k=k, margin=0.12):
        a, b = _split(m, path)
        pa, pb = _piece(work, a, u.x0, u.y0), _piece(work, b, u.x0, u.y0)
        if pa is not None and pb is not None:
            narrow = min(pa.ink.shape[1], pb.ink.shape[1]) / max(u.w, 1)
            for pc in (pa, pb):
                pc.box = frame.to_source(pc.box)
            out.append(Option([pa, pb], 0.0, pair=(r, crossed / H, narrow)))
    return out


def _seams(work: np.ndarray, m: np.ndarray, x0: int, y0: int, H: float, p: LineParams, want: int) -> list[tuple[np.ndarray, np.ndarray, Piece, Piece]]:
    """The ``want`` cheapest seams, and the cheapest one whose two pieces are both digit-shaped if
    those are not.

    The cheapest path through two touching digits often clips a corner off one of them (the tip of a
    7's bar over a 2): one stroke crossed instead of two. Its stub piece sinks the split's prior, and the
    blob stays one digit. A dearer seam further along usually parts the two digits."""
    found, any_shaped = [], False
    for path, _ in cut_paths(m, H, k=p.seam_candidates):
        if len(found) >= want and any_shaped:
            break
        a, b = _split(m, path)
        pa, pb = _piece(work, a, x0, y0), _piece(work, b, x0, y0)
        if pa is None or pb is None:
            continue
        shaped = _misshapen([pa, pb], H) == 0.0
        if len(found) < want or shaped:
            found.append((a, b, pa, pb))
            any_shaped |= shaped
    return found


def _options(work: np.ndarray, m: np.ndarray, u: _Unit, H: float, p: LineParams) -> list[Option]:
    """Whole, or split in two (at the best cuts), or in three for very wide blobs; most probable first.

    Only blobs wide enough to be in doubt get alternatives: each costs crops to normalise and classify.
    """
    r = u.w / H
    whole = _whole(work, m, u)
    opts = []
    if r < p.whole_below:
        opts.append(Option([whole], _prior([whole], r, H, p)))
    if r < p.split_from:
        return opts
    for a, b, pa, pb in _seams(work, m, u.x0, u.y0, H, p, 1 if r < p.two_at else 2):
        two = [pa, pb]
        opts.append(Option(two, _prior(two, r, H, p)))
        if r >= p.three_from and len(opts) <= 2:  # split the wider half again
            wide, mw = (a, pa) if pa.ink.shape[1] >= pb.ink.shape[1] else (b, pb)
            sub = wide[mw.box[1] - u.y0 : mw.box[3] - u.y0, mw.box[0] - u.x0 : mw.box[2] - u.x0]
            for _, _, pc, pd in _seams(work, sub, mw.box[0], mw.box[1], H, p, 1):
                three = sorted([pc, pd, pb if mw is pa else pa], key=lambda q: q.box[0])
                opts.append(Option(three, _prior(three, r, H, p)))
    if not opts:
        opts.append(Option([whole], _prior([whole], r, H, p)))
    elif r >= p.whole_below:
        # too wide for one digit, but the pair model reads two touching digits from the whole blob
        # better than the digit model reads them from the pieces of a poor seam (pipeline.py)
        opts.append(Option([whole], -np.inf))
    opts.sort(key=lambda o: -o.prior)  # the geometric favourite is the default reading
    return opts


def _broken_pair(c: Components, keep: np.ndarray, u: _Unit, v: _Unit, pair_of: dict[int, int], H: float, p: LineParams) -> bool:
    """Are neighbouring units ``u`` and ``v`` the two pieces of one ambiguous broken pair, give or take
    a sliver the pen left against one of them?"""
    a = next((k for k in u.ids if pair_of.get(k, -1) in v.ids), None)
    if a is None:
        return False
    rest = [k for k in u.ids + v.ids if keep[k] and k not in (a, pair_of[a])]
    return all(max(c.h[k], c.w[k]) < p.dot * H for k in rest)


def cut_line(ink: np.ndarray, p: LineParams = LineParams()) -> LineCut:
    """Slots in reading order (left to right), with separators kept apart and boxes in source coordinates."""
    work, mask, c, H, frame, slope = prepare(ink, p)
    out = LineCut(frame=frame, height=H)
    if c.n == 0 or H <= 0:
        return out
    keep = np.maximum(c.h, c.w) >= max(2.0, p.speck * H)
    if not keep.any():
        return out
    units_ids, ambiguous = _groups(c, keep, H, p, slope)
    units_ids = _attach_specks(c, keep, units_ids, H, p)
    units = sorted((_unit(c, ids) for ids in units_ids), key=lambda u: (u.x0 + u.x1) / 2)
    tall = [u for u in units if u.h >= 0.6 * H]
    if tall:
        xm = _median([(u.x0 + u.x1) / 2 for u in tall])
        lift = [slope * ((u.x0 + u.x1) / 2 - xm) for u in units]
        band_top = _median([u.y0 - d for u, d in zip(units, lift) if u.h >= 0.6 * H])
        band_bot = _median([u.y1 - d for u, d in zip(units, lift) if u.h >= 0.6 * H])
        units = [u for u, d in zip(units, lift) if band_top - p.band * H <= (u.y0 + u.y1) / 2 - d <= band_bot + p.band * H]
    pair_of = {}
    for a, b in ambiguous:
        pair_of[a], pair_of[b] = b, a
    masks = [_mask(c, u) for u in units]
    kinds: list[str | None] = []
    for u, m in zip(units, masks):
        kinds.append(classify_separator(m, H, first=not kinds, p=p))
    strong = [u.h >= p.lone_bracket_h * H and abs(_bulge(m)) >= p.lone_bracket_bulge * H for u, m in zip(units, masks)]
    kinds = _pair_brackets(_find_partners(kinds, units, masks, H, p), strong)
    i = 0
    while i < len(units):
        u, m = units[i], masks[i]
        if kinds[i] is not None:
            out.separators.append((kinds[i], frame.to_source((u.x0, u.y0, u.x1, u.y1))))
            if kinds[i] in "()":  # a 3 or a narrow 0 may be shaped like one: the model has a say
                out.slots.append(Slot([Option([_whole(work, m, u)])], u.w / H, bracket=kinds[i]))
            i += 1
            continue
        nxt = units[i + 1] if i + 1 < len(units) else None
        if nxt is not None and kinds[i + 1] is None and _broken_pair(c, keep, u, nxt, pair_of, H, p):
            # two overlapping tall blobs, or two broken pieces side by side (specks aside): one digit, or two?
            # Width says little here, so only the pieces' shapes enter the prior and the model decides.
            merged = _unit(c, u.ids + nxt.ids)
            whole = _piece(work, _mask(c, merged), merged.x0, merged.y0)
            pa, pb = _piece(work, m, u.x0, u.y0), _piece(work, masks[i + 1], nxt.x0, nxt.y0)
            r = merged.w / H
            two = -_misshapen([pa, pb], H) - _off_baseline(pa, pb, H, p)
            one = -max(0.0, r - 1.1) * p.count_slope
            opts = sorted([Option([pa, pb], two), Option([whole], one)], key=lambda o: -o.prior)
            out.slots.append(Slot(opts, r))
            i += 2
            continue
        opts = _options(work, m, u, H, p)
        if opts:
            r = u.w / H
            later = partial(_pair_options, work, m, u, H, r, frame) if len(opts) == 1 and p.pair_from <= r < p.split_from else None
            drop = p.drop_prior if len(opts) == 1 and later is None and min(u.w, u.h) < p.drop_below * H else None
            out.slots.append(Slot(opts, r, later, drop))
        i += 1
    done: set[int] = set()
    for s in out.slots:
        for o in s.options:
            for pc in o.pieces:
                if id(pc) not in done:  # options may share a piece
                    pc.box = frame.to_source(pc.box)
                    done.add(id(pc))
    return out
