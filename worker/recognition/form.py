"""Find printed comb-box rows on a scanned form and cut one digit per box.

A comb field is a long printed horizontal line (the boxes' bottom edge) with evenly spaced vertical
ticks of equal height standing on it (the box walls, or a comb's teeth). That signature is cheap to
find with run lengths and hard to fake: handwriting has no long straight runs, printed text no evenly
spaced equal ticks on a rule. The page is deskewed first, since a 1-degree tilt breaks a 60 mm rule
into short runs. Box lines are wiped before cutting (and strokes that cross them are bridged back),
so a digit written over its box edge does not drag the box along into the crop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from worker.recognition import ink as inkmod
from worker.recognition.glyphs import Frame, components
from worker.recognition.line import cut_paths

ALONG = 1.4  # a rule holds a stroke along it where the ink across it is this many times its own (val: 1.15-1.5 alike)


@dataclass(frozen=True)
class FormParams:
    line_frac: float = 0.06  # a rule is at least this fraction of the image width...
    line_px: int = 48  # ...and at least this many pixels long
    max_thickness: int = 14
    min_group_cells: int = 3  # a printed group of boxes ("(_ _ _)") has at least this many
    min_field_cells: int = 5  # a field (groups on one row merged) has at least this many
    max_skew_deg: float = 3.0
    speck: float = 0.12  # marks smaller than this fraction of the box height are dust
    min_extent: float = 0.18  # a box whose ink is smaller than this (of its height) is empty


@dataclass
class Comb:
    ticks: list[float]  # x of each wall, left to right (len = cells + 1), working coordinates
    bottom: int  # y of the top edge of the bottom rule
    top: int  # y where the cells start (the top rule's lower edge, or a comb's writing height)
    thickness: int
    boxed: bool  # full boxes (top rule present) or a comb of teeth
    wall: float  # height of the walls / teeth above the bottom rule
    wall_w: int = 1  # their width in pixels

    @property
    def pitch(self) -> float:
        return float(np.median(np.diff(self.ticks)))


@dataclass
class FormField:
    """One comb field cut into cells; ``crops[i]`` is None for an empty box. Boxes in source coordinates."""

    cells: list[tuple[int, int, int, int]] = field(default_factory=list)
    crops: list[np.ndarray | None] = field(default_factory=list)
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    # digits touching across a wall, parted along the seam instead of the wall: (first cell, their
    # crops, their boxes, the whole blob's crop for the pair model or None) for a run of cells; read()
    # lets the models choose between the partings
    alternatives: list[tuple[int, list[np.ndarray], list[tuple[int, int, int, int]], np.ndarray | None]] = field(default_factory=list)


def page_skew(mask: np.ndarray, max_deg: float) -> float:
    """Slope angle (degrees, atan dy/dx) of the page's horizontal structure: rules and text lines.

    Projection-profile search on a subsample of ink points: the true angle makes the row histogram
    sharpest (largest sum of squares).
    """
    step = max(1, int(max(mask.shape) / 1000))
    small = mask[::step, ::step]
    ys, xs = np.nonzero(small)
    if len(ys) < 50:
        return 0.0
    if len(ys) > 60_000:
        pick = np.linspace(0, len(ys) - 1, 60_000).astype(np.int64)
        ys, xs = ys[pick], xs[pick]
    best, best_score = 0.0, -1.0
    for coarse in (True, False):
        grid = np.arange(-max_deg, max_deg + 1e-6, 0.25) if coarse else np.arange(best - 0.25, best + 0.25 + 1e-6, 0.05)
        for deg in grid:
            yy = ys - xs * np.tan(np.radians(deg))
            hist = np.bincount(np.round(yy - yy.min()).astype(np.int64))
            score = float(hist.astype(np.float64) @ hist)
            if score > best_score:
                best, best_score = float(deg), score
    return best


def long_runs(mask: np.ndarray, length: int) -> np.ndarray:
    """Pixels that belong to a horizontal run of at least ``length`` ink pixels (an opening with a 1xL bar,
    in O(pixels) with cumulative sums instead of O(pixels * L))."""
    h, w = mask.shape
    length = int(length)
    if length > w or length < 1:
        return np.zeros_like(mask)
    c = np.zeros((h, w + 1), np.int32)
    np.cumsum(mask, axis=1, out=c[:, 1:])
    full = (c[:, length:] - c[:, :-length]) == length  # (h, w - L + 1): the window starting at s is all ink
    f = np.zeros((h, full.shape[1] + 1), np.int32)
    np.cumsum(full, axis=1, out=f[:, 1:])
    x = np.arange(w)
    hi = np.minimum(x, w - length) + 1
    lo = np.maximum(x - length + 1, 0)
    return (f[:, hi] - f[:, lo]) > 0


def _ticks(binary: np.ndarray, hmask: np.ndarray, seg, p: FormParams) -> list[Comb]:
    """Evenly spaced walls of equal height standing on one rule (x0, y0, x1, y1), as comb groups."""
    sx0, sy0, sx1, sy1 = seg
    seg_len = sx1 - sx0
    maxh = min(sy0, int(0.3 * seg_len))
    if maxh < 6:
        return []
    cols = np.arange(max(0, sx0 - 2), min(binary.shape[1], sx1 + 2))
    band = hmask[sy0:sy1, cols]
    top_edge = sy0 + np.where(band.any(0), band.argmax(0), 0)  # the rule's upper edge, per column
    rows = top_edge[None, :] - 1 - np.arange(maxh)[:, None]
    up = binary[np.clip(rows, 0, None), cols[None, :]] & (rows >= 0)
    run = np.where((~up).any(0), (~up).argmax(0), maxh)  # ink pixels straight up from the rule
    tmin = max(5, int(0.015 * seg_len))
    on = run >= tmin
    if on.sum() < 4:
        return []
    idx = np.flatnonzero(on)
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(idx) - 1]])
    hs = np.array([run[idx[a] : idx[b] + 1].max() for a, b in zip(starts, ends)])
    # a wall's position is where its run is longest: a stroke fused to its foot widens the run group
    xs = np.array([cols[idx[a] : idx[b] + 1][run[idx[a] : idx[b] + 1] >= 0.9 * h].mean() for a, b, h in zip(starts, ends, hs)])
    ws = np.array([idx[b] - idx[a] + 1 for a, b in zip(starts, ends)])
    thickness = max(1, int(np.median((band.sum(0))[band.any(0)]))) if band.any() else 1
    thin = ws <= max(4, 3 * thickness)
    if thin.sum() < p.min_group_cells + 1:
        return []
    # the printed walls share one height; count how many walls agree with each candidate height
    cand = hs[thin]
    tol = np.maximum(2, 0.08 * cand)
    agree = (np.abs(cand[:, None] - cand[None, :]) <= tol[:, None]).sum(1)
    h_ref = float(np.median(cand[agree == agree.max()]))
    good = thin & (np.abs(hs - h_ref) <= max(2.0, 0.1 * h_ref))
    gx = np.sort(xs[good])
    if len(gx) < p.min_group_cells + 1:
        return []
    d = np.diff(gx)
    pitch = float(np.median(d))
    pitch = float(np.median(d[np.abs(d - pitch) <= 0.25 * pitch])) if (np.abs(d - pitch) <= 0.25 * pitch).any() else pitch
    if pitch < 6:
        return []
    # walk the grid from wall to wall: a wall a stroke made taller still counts if it sits on the grid,
    # a hidden one between two real ones is inferred, anything off the grid is handwriting
    ax = np.sort(xs[hs >= 0.85 * h_ref])
    combs, group, pos, misses = [], [float(gx[0])], float(gx[0]), 0
    while True:
        e = pos + pitch
        j = int(np.argmin(np.abs(ax - e)))
        if abs(ax[j] - e) <= 0.2 * pitch:
            group.append(float(ax[j]))
            pos, misses = float(ax[j]), 0
            continue
        ahead = ax[ax > pos + 0.3 * pitch]
        if ahead.size == 0:
            break
        bridge = np.abs(ahead[:, None] - (e + pitch * np.arange(1, 3))[None, :]).min() <= 0.2 * pitch
        if misses < 2 and bridge:
            group.append(e)
            pos, misses = e, misses + 1
            continue
        if len(group) >= p.min_group_cells + 1:
            combs.append(group)
        nxt = gx[gx > pos + 0.3 * pitch]
        if nxt.size == 0:
            group = []
            break
        group, pos, misses = [float(nxt[0])], float(nxt[0]), 0
    if len(group) >= p.min_group_cells + 1:
        combs.append(group)
    if combs:  # the rule runs from the first wall to the last: walls a stroke hid at either end are there
        first, last = combs[0], combs[-1]
        while first[0] - pitch >= sx0 - 0.3 * pitch:
            e = first[0] - pitch
            j = int(np.argmin(np.abs(ax - e)))
            first.insert(0, float(ax[j]) if abs(ax[j] - e) <= 0.2 * pitch else e)
        while last[-1] + pitch <= sx1 + 0.3 * pitch:
            e = last[-1] + pitch
            j = int(np.argmin(np.abs(ax - e)))
            last.append(float(ax[j]) if abs(ax[j] - e) <= 0.2 * pitch else e)
    bottom = int(np.median(top_edge))
    out = []
    for g in combs:
        gp = float(np.median(np.diff(g)))
        if h_ref < 0.3 * gp or h_ref > 3.0 * gp:  # neither a box nor a comb tooth
            continue
        top = int(round(bottom - h_ref))
        a, b = int(g[0]), int(g[-1])
        top_band = hmask[max(0, top - thickness - 3) : top + 3, a:b]
        boxed = top_band.any(0).mean() >= 0.7 if top_band.size else False
        if not boxed:
            top = int(round(bottom - max(h_ref, 1.3 * gp)))
        else:
            top = top + thickness  # the walls' run includes the top rule: the cells start below it
        out.append(Comb([float(x) for x in g], bottom, max(0, top), thickness, boxed, h_ref, int(np.median(ws[good]))))
    return out


def _merge_rows(combs: list[Comb]) -> list[list[Comb]]:
    """Groups on one rule height, with similar pitch and a short gap, are one field ("(_ _ _) _ _ _ - _ _ _ _")."""
    combs = sorted(combs, key=lambda c: (c.bottom, c.ticks[0]))
    fields: list[list[Comb]] = []
    for c in combs:
        for f in fields:
            last = f[-1]
            same_row = abs(last.bottom - c.bottom) <= 0.3 * (last.bottom - last.top)
            similar = abs(last.pitch - c.pitch) <= 0.15 * last.pitch
            gap = c.ticks[0] - last.ticks[-1]
            if same_row and similar and -0.5 * last.pitch <= gap <= 3.2 * last.pitch:
                f.append(c)
                break
            if same_row and gap < -0.5 * last.pitch and c.ticks[-1] <= last.ticks[-1] + 0.5 * last.pitch:
                break  # a duplicate of a group we already have (one rule seen twice)
        else:
            fields.append([c])
    return fields


def _reading_order(fields: list[list[Comb]]) -> list[list[Comb]]:
    """Rows top to bottom (fields whose rules are within a box height share a row), left to right."""
    fields = sorted(fields, key=lambda f: f[0].bottom)
    rows: list[list[list[Comb]]] = []
    for f in fields:
        if rows and abs(rows[-1][0][0].bottom - f[0].bottom) <= 0.5 * (f[0].bottom - f[0].top):
            rows[-1].append(f)
        else:
            rows.append([f])
    return [f for row in rows for f in sorted(row, key=lambda f: f[0].ticks[0])]


def _wipe_rules(sub: np.ndarray, rules: list[tuple[bool, int, int, int, int]]) -> np.ndarray:
    """Erase printed rules where they are alone; keep them where handwriting crosses or overlaps.

    rules: (horizontal, centre, start, end, width) in sub coordinates: a horizontal rule centred on
    row ``centre`` from column ``start`` to ``end``, or a vertical one. Across a rule, the ink run
    through its centre is as wide as the rule where nothing else is there; a stroke crossing it makes
    the run longer, and those pixels stay, so a 7 crossing the bottom rule stays in one piece.

    A stroke lying along a rule (a 0 whose side runs down its box wall) may widen the run by only a
    pixel or two, as much as blur and JPEG do to the rule alone. It does add a stroke's worth of ink,
    though: where the run is wider than the rule and the ink across it is ``ALONG`` times the rule's
    own (its median where it is alone), the pixels stay too. Wiping that side opened the 0, which then
    read as 5, 6 or 7 (session 9: 7 of the 41 wrong digits on 400 val forms).
    """
    out = sub.copy()
    binary = sub > inkmod.LOW
    h, w = sub.shape
    for horizontal, centre, start, end, width in rules:
        view, values, limit = (binary, sub, h) if horizontal else (binary.T, sub.T, w)
        a, b = max(0, start), max(0, min(view.shape[1], end))
        span = view[:, a:b]
        if not (0 <= centre < limit) or span.shape[1] == 0:
            continue
        up, down = span[centre::-1], span[centre:]
        run = np.where((~up).any(0), (~up).argmax(0), up.shape[0]) + np.where((~down).any(0), (~down).argmax(0), down.shape[0]) - 1
        lo, hi = max(0, centre - width // 2 - 2), min(limit, centre + (width + 1) // 2 + 2)
        alone = run <= width + 2
        along, plain = alone & (run > width), alone & (run > 0)  # a stroke along the rule, or the rule alone?
        if along.any() and plain.any():
            across = values[lo:hi, a:b].sum(0)  # ink across the rule at each point along it
            alone &= ~(along & (across > ALONG * float(np.median(across[plain]))))
        lines = np.flatnonzero(alone) + a
        if horizontal:
            out[lo:hi, lines] = 0.0
        else:
            out[lines, lo:hi] = 0.0
    return out


def _cells(work: np.ndarray, combs: list[Comb], p: FormParams):
    """Crops (or None) and working-coordinate boxes for every box of one field, and the seam-parted
    alternatives for runs of boxes that share a blob (see FormField.alternatives)."""
    ticks = [c.ticks for c in combs]
    top = min(c.top for c in combs)
    bottom = max(c.bottom for c in combs)
    t = max(c.thickness for c in combs)
    cell_h = bottom - top
    pitch = float(np.median(np.concatenate([np.diff(x) for x in ticks])))
    mx, my = int(0.5 * pitch), int(0.45 * cell_h)
    rx0, ry0 = max(0, int(min(x[0] for x in ticks)) - mx), max(0, top - my)
    rx1, ry1 = min(work.shape[1], int(max(x[-1] for x in ticks)) + mx + 1), min(work.shape[0], bottom + t + my)
    sub = work[ry0:ry1, rx0:rx1]
    rules = []  # (horizontal, centre, start, end, width) in sub coordinates
    for c in combs:
        a, b = int(c.ticks[0]) - rx0 - c.wall_w - 2, int(c.ticks[-1]) - rx0 + c.wall_w + 3
        rules.append((True, c.bottom - ry0 + c.thickness // 2, a, b, c.thickness))
        if c.boxed:
            rules.append((True, c.top - ry0 - (c.thickness + 1) // 2, a, b, c.thickness))
        wall_top = int(round(c.bottom - c.wall)) - ry0 - 1
        for x in c.ticks:
            rules.append((False, int(round(x)) - rx0, wall_top, c.bottom - ry0 + c.thickness + 1, c.wall_w))
    clean = _wipe_rules(sub, rules)
    comps = components(inkmod.binarize(clean))
    boxes = []
    for c in combs:
        for a, b in zip(c.ticks[:-1], c.ticks[1:]):
            boxes.append((int(round(a)), top, int(round(b)), bottom))
    crops: list[np.ndarray | None] = [None] * len(boxes)
    if not comps.n:
        return boxes, crops, []
    walls = np.array(sorted({b[0] for b in boxes} | {b[2] for b in boxes}), np.float64) - rx0
    lefts = np.array([b[0] for b in boxes], np.float64) - rx0
    rights = np.array([b[2] for b in boxes], np.float64) - rx0
    big = np.maximum(comps.h, comps.w) >= p.speck * cell_h
    # (component, left, right): the part of the component between two partings, each an absolute
    # column per row of the component's box (None: the component's own edge). Blobs that span a wall
    # are parted twice: straight down the wall (members) and along the seam near it (seamed).
    members: list[list[tuple[int, np.ndarray | None, np.ndarray | None]]] = [[] for _ in boxes]
    seamed: list[list[tuple[int, np.ndarray | None, np.ndarray | None]]] = [[] for _ in boxes]
    touched: set[int] = set()  # cells that hold part of a parted blob
    for k in np.flatnonzero(big):
        k = int(k)
        cyk = comps.cy[k] + ry0
        if not (top - 0.4 * cell_h <= cyk <= bottom + 0.4 * cell_h):
            continue
        x0k, x1k, y0k, y1k = int(comps.x0[k]), int(comps.x1[k]), int(comps.y0[k]), int(comps.y1[k])
        blob = comps.labels[y0k:y1k, x0k:x1k] == k + 1
        cuts = _touching(blob, x0k, walls, pitch, cell_h) if x1k - x0k > 1.2 * pitch else []
        if not cuts:
            i = _owner(blob, x0k, None, None, lefts, rights, pitch)
            if i is not None:
                members[i].append((k, None, None))
                seamed[i].append((k, None, None))
            continue
        straight = [np.full(y1k - y0k, int(round(w))) for w in cuts]
        seams = [_seam(blob, w - x0k, pitch) + x0k for w in cuts]
        for target, lines in ((members, straight), (seamed, seams)):
            edges = [None, *lines, None]
            for left, right in zip(edges[:-1], edges[1:]):
                i = _owner(blob, x0k, left, right, lefts, rights, pitch)
                if i is not None:
                    target[i].append((k, left, right))
                    touched.add(i)
    alternatives, run = [], []
    for i in range(len(boxes) + 1):  # runs of neighbouring cells whose crops the seams change
        if i in touched:
            run.append(i)
            continue
        if run:
            alt = [_crop(comps, seamed[j], clean, cell_h, p) for j in run]
            if all(a is not None for a in alt):
                whole = _crop(comps, [m for j in run for m in members[j]], clean, cell_h, p) if len(run) == 2 else None
                alternatives.append((run[0], [a[0] for a in alt], [_shift(a[1], rx0, ry0) for a in alt], whole[0] if whole else None))
            run = []
    for i, ms in enumerate(members):
        got = _crop(comps, ms, clean, cell_h, p)
        if got is not None:
            crops[i], boxes[i] = got[0], _shift(got[1], rx0, ry0)  # the digit's own box, where there is one
    return boxes, crops, alternatives


def _touching(blob: np.ndarray, x0k: int, walls: np.ndarray, pitch: float, cell_h: float) -> list[float]:
    """The walls inside a blob that part two touching digits.

    A digit spilling over a wall stays whole, with the box that holds most of it: its part beyond the
    wall is a thin tail or a sliver of a loop. Two boxes on either side of a wall that each hold a
    digit-sized part (tall, wide, and not a trace of ink beside its neighbour) hold two digits. Judged
    per box, so a bold 0 touching a thin 3 parts, and so does a run of three touching digits, where an
    ink share around each wall (the old rule: 30-70%) held for neither wall.
    """
    inner = [float(w) for w in walls if x0k < w < x0k + blob.shape[1]]
    edges = [0, *[int(round(w)) - x0k for w in inner], blob.shape[1]]
    parts = [blob[:, a:b] for a, b in zip(edges[:-1], edges[1:])]
    ink = np.array([pt.sum() for pt in parts], np.float64)
    rows = [np.flatnonzero(pt.any(1)) for pt in parts]
    cols = [np.flatnonzero(pt.any(0)) for pt in parts]
    tall = np.array([r[-1] - r[0] + 1 if r.size else 0 for r in rows])
    wide = np.array([c[-1] - c[0] + 1 if c.size else 0 for c in cols])
    digit = (ink >= 0.25 * ink.max()) & (tall >= 0.35 * cell_h) & (wide >= 0.35 * pitch)
    return [w for w, a, b in zip(inner, digit[:-1], digit[1:]) if a and b]


def _shift(box, dx: int, dy: int) -> tuple[int, int, int, int]:
    return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy


def _between(blob: np.ndarray, x0k: int, left: np.ndarray | None, right: np.ndarray | None) -> np.ndarray:
    """The blob's pixels between two partings (absolute columns per row; None: the blob's own edge)."""
    xs = np.arange(x0k, x0k + blob.shape[1])[None, :]
    part = blob.copy()
    if left is not None:
        part &= xs >= left[:, None]
    if right is not None:
        part &= xs < right[:, None]
    return part


def _owner(blob, x0k: int, left, right, lefts, rights, pitch: float) -> int | None:
    """The box that holds the centre of a blob's ink between two partings (None: no box near it)."""
    pc = _between(blob, x0k, left, right).sum(0)
    mid = x0k + float((pc * np.arange(len(pc))).sum() / max(pc.sum(), 1))  # centre of the ink
    inside = np.flatnonzero((lefts <= mid) & (mid < rights))
    if inside.size:
        return int(inside[0])
    near = int(np.argmin(np.abs((lefts + rights) / 2 - mid)))
    return near if abs((lefts[near] + rights[near]) / 2 - mid) < 0.6 * pitch else None


def _crop(comps, ms, clean: np.ndarray, cell_h: float, p: FormParams):
    """(crop, box in sub coordinates) of a cell's members, or None when nothing digit-sized is there."""
    if not ms:
        return None
    mask = np.zeros(comps.labels.shape, bool)
    for k, left, right in ms:
        ys, xs = slice(int(comps.y0[k]), int(comps.y1[k])), slice(int(comps.x0[k]), int(comps.x1[k]))
        mask[ys, xs] |= _between(comps.labels[ys, xs] == k + 1, xs.start, left, right)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if max(x1 - x0, y1 - y0) < p.min_extent * cell_h:
        return None
    # the strokes' faint anti-aliased rim (below the ink threshold) comes along, as MNIST's digits have
    # one: cut off, a thin stroke at 150 dpi thins and breaks (session 9: val forms 169 -> 154 edits)
    ys, xs = slice(max(0, y0 - 1), y1 + 1), slice(max(0, x0 - 1), x1 + 1)
    own = mask[ys, xs]
    keep = own | (ndimage.binary_dilation(own) & (clean[ys, xs] <= inkmod.LOW))
    return np.where(keep, clean[ys, xs], 0.0).astype(np.float32), (x0, y0, x1, y1)


def _seam(blob: np.ndarray, wall: float, pitch: float) -> np.ndarray:
    """Where to part two digits that touch across a box wall: the top-to-bottom path crossing the least
    ink near the wall (the wall itself is wiped where it is alone). Cutting straight down the wall
    would hand a 0's spilled side to the 7 next door. Columns relative to ``blob``, one per row."""
    h, w = blob.shape
    half = max(2, int(round(0.3 * pitch)))
    a, b = max(0, int(round(wall)) - half), min(w, int(round(wall)) + half + 1)
    paths = cut_paths(blob[:, a:b], float(b - a), k=1, margin=0.0) if b - a >= 5 else []
    return paths[0][0] + a if paths else np.full(h, int(round(wall)))


def find_combs(work: np.ndarray, p: FormParams = FormParams()) -> list[list[Comb]]:
    """Comb fields (each a list of groups) in reading order, on a flattened, deskewed working image."""
    # printed rules can be a pixel thin, and deskewing smears them over two rows (or columns) at half
    # strength: a low threshold, and runs measured on row pairs, keep them whole
    binary = work > 0.3
    length = max(p.line_px, int(p.line_frac * work.shape[1]))
    paired = binary.copy()
    paired[:-1] |= binary[1:]
    hmask = long_runs(paired, length) & binary
    if not hmask.any():
        return []
    segs = components(hmask)
    combs: list[Comb] = []
    for k in range(segs.n):
        if segs.w[k] < length or segs.h[k] > p.max_thickness:
            continue
        combs.extend(_ticks(binary, hmask, (int(segs.x0[k]), int(segs.y0[k]), int(segs.x1[k]), int(segs.y1[k])), p))
    fields = [f for f in _merge_rows(combs) if sum(len(c.ticks) - 1 for c in f) >= p.min_field_cells]
    return _reading_order(fields)


def has_rule(ink: np.ndarray, p: FormParams = FormParams()) -> bool:
    """Cheap test for auto mode: is there a long straight horizontal run anywhere (a printed rule)?

    Runs are measured on a max-pooled copy (thin rules survive pooling, unlike averaging), so a line
    image answers in a fraction of a millisecond and a 300-dpi page in a few.
    """
    h, w = ink.shape
    length = max(p.line_px, int(p.line_frac * w))
    f = max(1, int(np.ceil(min(h / 96, w / 256))))
    step = max(1, int(np.sqrt(h * w / 5_000)))
    paper = float(np.median(ink[::step, ::step]))  # paper covers most of any line image or page
    binary = ink > min(paper + 0.35, 0.8)
    if f > 1:  # max-pool f x f with strided ORs (numpy's multi-axis any() is ~50x slower here)
        hh, ww = h // f, w // f
        rows = binary[0 : hh * f : f, : ww * f].copy()
        for k in range(1, f):
            rows |= binary[k : hh * f : f, : ww * f]
        binary = rows[:, 0::f].copy()
        for k in range(1, f):
            binary |= rows[:, k::f]
    if binary.sum(1).max(initial=0) < length // f:  # no row holds enough ink for a rule at all
        return False
    runs = long_runs(binary, max(2, length // f - 1))
    if not runs.any():
        return False
    segs = components(runs)
    for k in np.flatnonzero(segs.w >= length // f - 1):
        # a rule is long and thin; the top of a bold 0 is long too, but thick: measure the ink across it
        x0, x1, y0, y1 = int(segs.x0[k]), int(segs.x1[k]), int(segs.y0[k]), int(segs.y1[k])
        mid = (y0 + y1) // 2
        up = binary[mid::-1, x0:x1]
        down = binary[mid:, x0:x1]
        thick = np.where((~up).any(0), (~up).argmax(0), up.shape[0]) + np.where((~down).any(0), (~down).argmax(0), down.shape[0]) - 1
        if (x1 - x0) >= 15 * max(1.0, float(np.median(thick))):  # per column: the ink run through the rule
            return True
    return False


def prepare(ink: np.ndarray, p: FormParams = FormParams()) -> tuple[np.ndarray, Frame]:
    work = inkmod.flatten(ink)
    angle = page_skew(work > 0.45, p.max_skew_deg)
    frame = Frame(scale=1.0, scaled_shape=work.shape, work_shape=work.shape, source_shape=ink.shape)
    if abs(angle) >= 0.1:
        scaled = work.shape
        work = inkmod.rotate(work, angle)
        frame = Frame(scale=1.0, angle=angle, scaled_shape=scaled, work_shape=work.shape, source_shape=ink.shape)
    return work, frame


def cut_form(ink: np.ndarray, p: FormParams = FormParams(), prepared=None) -> list[FormField]:
    """Every comb field on the page, in reading order; boxes in source coordinates."""
    work, frame = prepared if prepared is not None else prepare(ink, p)
    out = []
    for combs in find_combs(work, p):
        boxes, crops, alternatives = _cells(work, combs, p)
        x0 = int(min(c.ticks[0] for c in combs))
        x1 = int(max(c.ticks[-1] for c in combs))
        y0 = min(c.top for c in combs)
        y1 = max(c.bottom for c in combs)
        alternatives = [(first, alt, [frame.to_source(b) for b in bxs], whole) for first, alt, bxs, whole in alternatives]
        out.append(FormField([frame.to_source(b) for b in boxes], crops, frame.to_source((x0, y0, x1, y1)), alternatives))
    return out
