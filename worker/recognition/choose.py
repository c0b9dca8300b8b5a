"""Pick one cut per ambiguous blob for the whole line at once, letting the phone rules break ties.

Each blob's options are scored alone by geometry prior + the model's log-probabilities, and the best
per blob is the default. That misses a kind of error the digit model cannot see: a narrow touching
pair ("17", a 1 tucked into a 2) reads as one confident digit, and the line comes out a digit short.
A phone number has a known length and structure, so when the default reading is not a valid number we
look, best first, at the next most probable *combinations* of cuts, and take the first one whose
reading is valid (directly or after phone.correct's digit substitutions), provided it is not more than
``max_loss`` (natural log) less probable than the default. A valid default is never second-guessed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence

import numpy as np

MAX_LOSS = 9.0  # log-probability a combination may lose against the default (tuned on MNIST val lines)
MAX_TRIES = 24  # combinations examined at most: each costs a validity check (~20 us, more when correcting)


# Log-odds that a narrow blob (0.55-1.1 H wide) is a touching pair rather than one digit: logistic
# regressions on blobs of synthetic lines from MNIST *val* digits (touch_p 0.5; fitted by
# training/pair_prior.py on 0.7-1.1 H, before session 9 let narrower blobs in), features in
# PAIR_FEATURES order. Without the pair model the digit model's doubt about the whole blob says most;
# with it, the pair model's own log-odds.
PAIR_FEATURES = ("bias", "width", "seam", "whole_logp", "pieces_logp", "narrow_share", "pair_model")
PAIR_WEIGHTS = (-8.42, 6.52, -3.51, -7.57, 1.35, -0.08, 0.0)  # no pair model: pieces read by the digit model; AUC 0.864
PAIR_WEIGHTS_MODEL = (-3.45, 1.54, 0.27, -0.74, -0.11, 1.29, 0.93)  # pieces read by the pair model's heads; AUC 0.998
HEADS_BONUS = 1.0  # log prior of a wide blob read whole by the pair model over the same split at a seam
HEADS_BONUS_FORM = 0.0  # the same for two digits touching across a form's box wall (val forms: 0 beat -1 and +1)
PAIR_BIAS = -2.4  # those lines touch 8x as often as the evaluation's (touch_p 0.06): move the base rate back
SEAM_SAY = 0.3  # the digit model's weight on a seam's pieces in the pair model's reading of a wide blob (val lines: 0.15-0.4 alike, 0.5 worse)
SURE_PAIR = 15.0  # pair-model log-odds above which a narrow first blob is looked at as a pair in a valid reading


def pool(heads: np.ndarray, pieces: np.ndarray, w: float = SEAM_SAY) -> np.ndarray:
    """The pair model's reading of each digit of a wide blob, pooled (log-linear) with the digit model's
    reading of the same digit cut out at the seam. The pair model misreads a 7 tucked against a 2 now
    and then, the digit model a piece that lost a corner to the seam; where one is unsure the other
    decides. Val lines seeds 0-4: 234 -> 227 edits at 0.3, 11 readings better, 5 worse."""
    q = np.exp((1 - w) * np.log(np.clip(heads, 1e-9, 1.0)) + w * np.log(np.clip(pieces, 1e-9, 1.0)))
    return (q / q.sum(axis=1, keepdims=True)).astype(np.float32)


def pair_logit(pair: tuple[float, float, float], whole_logp: float, pieces_logp: float, model_logit: float | None = None) -> float:
    width, seam, narrow = pair
    x = (1.0, width, seam, whole_logp, pieces_logp, narrow, model_logit or 0.0)
    w = PAIR_WEIGHTS if model_logit is None else PAIR_WEIGHTS_MODEL
    return float(np.dot(w, x)) + PAIR_BIAS


def option_scores(choices, logmax: np.ndarray, pairs: bool = False, model_logits: dict[int, float] | None = None) -> list[np.ndarray]:
    """Per choice, each option's log score: its geometric prior plus the log max-probability of its rows.

    A narrow blob's split (``option.pair`` set) is left out (-inf) unless ``pairs``; then it scores as
    the whole blob plus the pair log-odds (width does not decide there, the models' doubt does).
    A glyph read as no digit (``option.dropped``) is likewise left out unless ``pairs``; then it scores
    as the glyph kept plus its prior: the digit model reads a stray bracket as a confident 1, so its
    probabilities cannot say which glyph is not a digit, only the phone rules can.
    ``model_logits`` maps a choice's index to the pair model's log-odds for its whole blob.
    """
    out = []
    for c, ch in enumerate(choices):
        base = [o.prior + float(logmax[o.rows].sum()) for o in ch.options]
        whole = ch.options[0]
        for k, o in enumerate(ch.options):
            if o.dropped:
                base[k] = base[0] + o.prior if pairs else -np.inf
            elif o.pair is not None:
                m = (model_logits or {}).get(c)
                base[k] = base[0] + pair_logit(o.pair, float(logmax[whole.rows].sum()), float(logmax[o.rows].sum()), m) if pairs else -np.inf
        out.append(np.array(base))
    return out


def best(scores: Sequence[np.ndarray]) -> tuple[int, ...]:
    """Each choice's top option."""
    return tuple(int(np.argmax(s)) for s in scores)


def choose(scores: Sequence[np.ndarray], acceptable: Callable[[tuple[int, ...]], bool], max_loss: float = MAX_LOSS, max_tries: int = MAX_TRIES) -> tuple[int, ...] | None:
    """Option index per choice: the best combination by total score that ``acceptable`` accepts, or None
    when none within ``max_loss`` of the best and ``max_tries`` tries is. The search walks combinations
    in decreasing total score, as phone.correct walks digit alternatives.
    """
    if not scores:
        return ()
    order = [np.argsort(-s, kind="stable") for s in scores]
    ranked = [s[o] for s, o in zip(scores, order)]
    start = (0,) * len(scores)
    heap = [(0.0, start)]
    seen = {start}
    tries = 0
    while heap and tries < max_tries:
        loss, ranks = heapq.heappop(heap)
        if loss > max_loss:
            break
        tries += 1
        pick = tuple(int(order[i][r]) for i, r in enumerate(ranks))
        if acceptable(pick):
            return pick
        for i, r in enumerate(ranks):
            if r + 1 < len(ranked[i]) and np.isfinite(ranked[i][r + 1]):
                nxt = ranks[:i] + (r + 1,) + ranks[i + 1 :]
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, (loss + float(ranked[i][r] - ranked[i][r + 1]), nxt))
    return None
