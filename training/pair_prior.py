"""Fit the touching-pair log-odds of worker/recognition/choose.py on synthetic lines from MNIST *val* digits.

For every blob 0.55-1.1 H wide (where width cannot tell a wide digit from a narrow touching pair) the
cutter can offer a split; this collects the split's features, the digit model's and the pair model's
views, and the truth (how many written digits the blob covers, from the sample's digit boxes), then
fits a logistic regression. Lines touch far more often here (touch_p 0.5) than in the evaluation so
that there are enough pairs; choose.PAIR_BIAS moves the base rate back.

    python -m training.pair_prior --n 300 --seeds 100,200

prints the weights to paste into choose.py (PAIR_WEIGHTS without the pair model, PAIR_WEIGHTS_MODEL with it).
"""

from __future__ import annotations

import argparse

import numpy as np


def collect(n: int, seed: int, touch_p: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per narrow blob: (width, seam, whole_logp, pieces_logp by the digit model on the best seam's
    pieces, narrow_share, pair-model log-odds, pieces_logp by the pair model's digit heads), and the
    label (1 = the blob covers two written digits, by the sample's digit boxes)."""
    from tqdm import tqdm

    from phonereader.config import get_settings
    from phonereader.imageio import load_page
    from phonereader.normalize import normalize_batch
    from training import synth
    from worker.recognition import Recognizer
    from worker.recognition import line as linemod
    from worker.recognition.pipeline import line_field

    settings = get_settings()
    rec = Recognizer(settings=settings)
    rows, labels = [], []
    for s in tqdm(synth.make_lines(synth.DigitPool("val"), n, seed, touch_p=touch_p), desc=f"lines (seed {seed})", leave=False):
        f = line_field(linemod.cut_line(load_page(s.image, "line", 0, settings), rec.line_params))
        splits = [(g, split()) for g, split in f.pair_splits]
        splits = [(g, opts[0]) for g, opts in splits if opts]
        if not splits:
            continue
        wholes = f.crops[[g for g, _ in splits]]
        whole_p = rec.model.predict_proba(wholes).max(1)
        piece_p = rec.model.predict_proba(normalize_batch([pc.ink for _, o in splits for pc in o.pieces])).max(1).reshape(-1, 2)
        if rec.pair_model is not None:
            z, left, right = rec.pair_model.predict(wholes)
            heads = np.log(left.max(1)) + np.log(right.max(1))
        else:
            z, heads = np.zeros(len(splits)), np.zeros(len(splits))
        for i, (g, o) in enumerate(splits):
            x0, x1 = f.boxes[g][0], f.boxes[g][2]
            covered = sum(1 for b in s.boxes if min(x1, b[2]) - max(x0, b[0]) > 0.5 * (b[2] - b[0]))
            if covered not in (1, 2):
                continue
            width, seam, narrow = o.pair
            rows.append((width, seam, np.log(whole_p[i]), np.log(piece_p[i]).sum(), narrow, z[i], heads[i]))
            labels.append(covered == 2)
    return np.array(rows, np.float64), np.array(labels, np.float64)


def fit(x: np.ndarray, y: np.ndarray, l2: float = 0.1) -> np.ndarray:
    """Logistic regression with a bias, a light L2 on the slopes."""
    from scipy.optimize import minimize

    f = np.column_stack([np.ones(len(x)), x])

    def loss(w):
        z = f @ w
        return float(np.sum(np.logaddexp(0, z) - y * z) + l2 * np.sum(w[1:] ** 2))

    return minimize(loss, np.zeros(f.shape[1]), method="BFGS").x


def auc(score: np.ndarray, y: np.ndarray) -> float:
    pos, neg = score[y == 1], score[y == 0]
    return float(np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seeds", default="100,200")
    ap.add_argument("--touch-p", type=float, default=0.5)
    a = ap.parse_args()
    parts = [collect(a.n, int(s), a.touch_p) for s in a.seeds.split(",")]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    print(f"{int(y.sum())} pairs, {int((1 - y).sum())} single digits")
    ones = np.ones((len(x), 1))
    plain = x[:, :5]  # the digit model reads the seam's pieces
    heads = np.column_stack([x[:, :3], x[:, 6], x[:, 4], x[:, 5]])  # the pair model reads the pair and weighs in
    without, with_model = fit(plain, y), fit(heads, y)
    print("PAIR_WEIGHTS =", tuple(round(float(v), 2) for v in np.append(without, 0.0)), f"# AUC {auc(np.hstack([ones, plain]) @ without, y):.3f}")
    print("PAIR_WEIGHTS_MODEL =", tuple(round(float(v), 2) for v in with_model), f"# AUC {auc(np.hstack([ones, heads]) @ with_model, y):.3f}")


if __name__ == "__main__":
    main()
