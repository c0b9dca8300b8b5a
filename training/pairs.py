"""The touching-pair model: is a blob of ink one digit, or two digits whose strokes touch?

Why a second model: the line cutter splits blobs by width, and a narrow touching pair (a "17", a 1
tucked into a 2) is no wider than a wide 0, so the line comes out a digit short. The digit model,
shown such a pair squeezed into one 28x28 crop, often still names one digit with confidence. This
CNN looks at the very same crop (``normalize_digit`` of the whole blob, the row the line field
already holds) and says "pair" or "one"; worker/recognition/choose.py weighs that against the other
blobs of the line when the phone rules say a digit is missing. For blobs too wide for one digit its
reading of the two digits competes with the digit model's reading of the pieces of a seam.

Data: synthetic blobs from MNIST *train* digits, drawn as the line synthesiser draws them
(training/synth.py: pen strokes, heights, touching overlaps), keeping only pairs whose strokes really
connect at the cutter's threshold. ``phonereader train-pairs`` writes models/pairs.{safetensors,onnx,json}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

FORMAT = "phonereader-pair-model/1"
CLASSES = ("one", "pair")
OUTPUTS = 22  # logits: one/pair, then the left digit of a pair (10), then the right digit (10)
IGNORE = -100  # cross_entropy's ignore_index: single digits have no left/right digit
INK_LOW = 0.3  # the cutter's hysteresis low threshold (worker/recognition/ink.py): what counts as connected


def _glyph(images, by_class, rng: np.random.Generator, digit: int, height: float, pen: float) -> np.ndarray:
    from training.synth import pen_digit

    idx = by_class[digit]
    return pen_digit(images[idx[rng.integers(len(idx))]], height, rng, pen)


def render_blob(images, by_class, rng: np.random.Generator, pair: bool, max_tries: int = 8) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """Ink (float32, 1 = ink) of one digit, or of two digits laid out as synth._compose_line lays out a
    touching neighbour (overlapping boxes, same pen, same baseline jitter), and the digits written.
    None when no try touched."""
    height = float(rng.uniform(20, 46))  # the working digit height after the cutter's rescaling
    pen = float(rng.uniform(0.05, 0.16))
    if not pair:
        d = int(rng.integers(10))
        return _finish(_glyph(images, by_class, rng, d, height * rng.uniform(0.88, 1.12), pen), rng), (d,)
    for _ in range(max_tries):
        da, db = int(rng.integers(10)), int(rng.integers(10))
        a, b = (_glyph(images, by_class, rng, d, height * rng.uniform(0.88, 1.12), pen) for d in (da, db))
        gap = -rng.uniform(0.0, 0.12) * height
        ya, yb = (round((height - g.shape[0]) * 0.5 + rng.normal(0, 0.04 * height)) for g in (a, b))
        off = min(ya, yb)
        ya, yb = ya - off, yb - off
        xb = max(0, round(a.shape[1] + gap))
        canvas = np.zeros((max(ya + a.shape[0], yb + b.shape[0]), max(a.shape[1], xb + b.shape[1])), np.float32)
        canvas[ya : ya + a.shape[0], : a.shape[1]] = a
        sub = canvas[yb : yb + b.shape[0], xb : xb + b.shape[1]]
        np.maximum(sub, b, out=sub)
        _, n = ndimage.label(canvas > INK_LOW, structure=np.ones((3, 3), bool))
        if n == 1:
            return _finish(canvas, rng), (da, db)
    return None


def _finish(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What the cutter hands normalize_digit: sometimes a photo's blur and a slight tilt, then only the
    pixels of the binarised stroke, keeping their gray values."""
    if rng.random() < 0.5:
        ink = ndimage.gaussian_filter(ink, rng.uniform(0.3, 1.0))
        ink = ink / max(float(ink.max()), 1e-6)
    if rng.random() < 0.3:
        ink = ndimage.rotate(ink, rng.uniform(-8, 8), reshape=True, order=1)
    return np.where(ink > INK_LOW, ink, 0.0).astype(np.float32)


CHUNK = 2_000  # samples per generator chunk; chunk i draws from rng (seed, i), so workers do not change the data

_POOL: tuple | None = None  # (images, labels) in a generator process


def _init(images, labels) -> None:
    global _POOL
    _POOL = (images, labels)


def _chunk(args: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    from phonereader.normalize import normalize_digit

    seed, i, n = args
    images, labels = _POOL
    rng = np.random.default_rng([seed, i])
    by_class = [np.flatnonzero(labels == d) for d in range(10)]
    x = np.zeros((n, 28, 28), np.float32)
    y = np.full((n, 3), IGNORE, np.int64)  # pair?, left digit, right digit (IGNORE for a single digit)
    for k in range(n):
        pair = bool(k % 2)
        got = None
        while got is None:
            got = render_blob(images, by_class, rng, pair)
        x[k] = normalize_digit(got[0])
        y[k, 0] = int(pair)
        if pair:
            y[k, 1:] = got[1]
    return x, y


def make_set(images, labels, n: int, seed: int, workers: int = 1, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``n`` normalised crops (half pairs, half single digits) and labels (n, 3): pair (1) or one digit
    (0), then a pair's left and right digit (IGNORE for single digits)."""
    from tqdm import tqdm

    jobs = [(seed, i, min(CHUNK, n - i * CHUNK)) for i in range((n + CHUNK - 1) // CHUNK)]
    bar = tqdm(total=n, desc=f"blobs (seed {seed})", disable=not progress, leave=False)
    parts = []
    if workers <= 1:
        _init(images, labels)
        for job in jobs:
            parts.append(_chunk(job))
            bar.update(job[2])
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, initializer=_init, initargs=(images, labels)) as ex:
            for part in ex.map(_chunk, jobs):
                parts.append(part)
                bar.update(len(part[1]))
    bar.close()
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


WIDTHS = (32, 64, 128)  # conv channels at 28, 14 and 7 pixels
HEAD = 128


def build():
    """A CNN shaped like the digit model (three conv stages, 28 -> 14 -> 7, a dense head over the 7x7
    map), twice as wide, with three heads: pair or one digit, and a pair's left and right digit, read
    from the whole blob. The seam between two touching digits is often wrong where one is tucked into
    the other; reading the blob as a whole is not. Two digits squeezed into one crop need the width: a
    network a quarter of the digit model's size read both digits of a val pair right 93% of the time,
    this one 97%. It runs only on wide blobs and on the narrow ones of invalid lines, so its cost
    does not show in a line's."""
    from torch import nn

    from training.models import conv_bn

    c1, c2, c3 = WIDTHS
    return nn.Sequential(
        conv_bn(1, c1), nn.MaxPool2d(2),
        conv_bn(c1, c2), nn.MaxPool2d(2),
        conv_bn(c2, c3),
        nn.Flatten(), nn.Dropout(0.1), nn.Linear(c3 * 7 * 7, HEAD), nn.ReLU(), nn.Dropout(0.1), nn.Linear(HEAD, OUTPUTS),
    )  # fmt: skip


def train(out: Path, n_train: int = 150_000, n_val: int = 6_000, epochs: int = 10, seed: int = 0, data: Path | None = None,
          batch_size: int = 128, lr: float = 3e-3, threads: int | None = None, workers: int = 1) -> Path:
    """Train on blobs from MNIST train digits, measure on blobs from MNIST val digits, write the three files."""
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm

    from phonereader.modelcard import sha256
    from training.data import load_mnist
    from training.export import export_onnx

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.time()
    xtr, ytr = make_set(*load_mnist("train", data), n_train, seed, workers)
    xva, yva = make_set(*load_mnist("val", data), n_val, seed + 1, workers)
    mean, std = float(xtr.mean()), float(xtr.std())

    def norm(a):
        return torch.from_numpy((a[:, None] - mean) / std)

    Xtr, Ytr, Xva, Yva = norm(xtr), torch.from_numpy(ytr), norm(xva), torch.from_numpy(yva)
    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(Xtr) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(Xtr), generator=gen)
        total = 0.0
        for i in tqdm(range(0, len(Xtr), batch_size), desc=f"epoch {epoch + 1}/{epochs}", leave=False):
            idx = perm[i : i + batch_size]
            xb = Xtr[idx]
            if torch.rand(1, generator=gen).item() < 0.5:  # cheap extra variety: shift by a pixel
                xb = torch.roll(xb, shifts=(int(torch.randint(-1, 2, (1,), generator=gen)), int(torch.randint(-1, 2, (1,), generator=gen))), dims=(2, 3))
            loss = _loss(model(xb), Ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        m = _evaluate(model, Xva, Yva)
        history.append({"epoch": epoch + 1, "train_loss": total / len(Xtr), **m})
        print(f"epoch {epoch + 1}: train loss {total / len(Xtr):.4f}, pair-or-one {m['val_accuracy']:.4f}, "
              f"pair digits {m['val_pair_digits_accuracy']:.4f}", file=sys.stderr)
    temperature = _temperature(model, Xva, Yva)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights, onnx_path, card_path = out / "pairs.safetensors", out / "pairs.onnx", out / "pairs.json"
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(weights))
    weights.chmod(0o644)
    export_onnx(model, onnx_path)  # BN folded, input "digits", output "logits", dynamic batch
    card = {
        "format": FORMAT,
        "name": "pairs",
        "classes": list(CLASSES),
        "input": {"shape": [1, 28, 28], "mean": mean, "std": std, "normalize": "phonereader.normalize.normalize_digit"},
        "parameters": sum(p.numel() for p in model.parameters()),
        "files": {"weights": weights.name, "weights_sha256": sha256(weights), "onnx": onnx_path.name, "onnx_sha256": sha256(onnx_path)},
        "outputs": "logits (N, 22): [one, pair], then a pair's left digit 0-9, then its right digit 0-9",
        "temperature": temperature,
        "metrics": {**{k: v for k, v in history[-1].items() if k.startswith("val_")}, "val_set": f"{n_val} blobs from MNIST val digits"},
        "training": {
            "command": " ".join(["phonereader", "train-pairs"] + sys.argv[2:]) if len(sys.argv) > 1 else "phonereader train-pairs",
            "hyperparameters": {"n_train": n_train, "epochs": epochs, "seed": seed, "batch_size": batch_size, "lr": lr},
            "seconds": round(time.time() - t0, 1),
            "history": history,
            "torch_version": torch.__version__,
        },
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card_path


def _temperature(model, x, y) -> float:
    """One temperature for the digit heads, by NLL on the val pairs (their probabilities meet the
    digit model's, calibrated the same way, in the phone rules)."""
    import torch

    from training.calibrate import fit_temperature

    model.eval()
    pairs = y[:, 0] == 1
    with torch.inference_mode():
        z = model(x[pairs])
    return fit_temperature(torch.cat([z[:, 2:12], z[:, 12:22]]), torch.cat([y[pairs, 1], y[pairs, 2]]))


def _loss(z, y):
    """Pair-or-one, plus the two digits of the pairs (singles are ignored there)."""
    from torch.nn.functional import cross_entropy

    loss = cross_entropy(z[:, :2], y[:, 0])
    if (y[:, 1] != IGNORE).any():
        loss = loss + cross_entropy(z[:, 2:12], y[:, 1], ignore_index=IGNORE) + cross_entropy(z[:, 12:22], y[:, 2], ignore_index=IGNORE)
    return loss


def _evaluate(model, x, y) -> dict:
    """Pair-or-one accuracy and NLL on all blobs; both digits of a pair right, on the pairs."""
    import torch

    model.eval()
    with torch.inference_mode():
        z = torch.cat([model(x[i : i + 1024]) for i in range(0, len(x), 1024)])
    pairs = y[:, 0] == 1
    both = (z[pairs, 2:12].argmax(1) == y[pairs, 1]) & (z[pairs, 12:22].argmax(1) == y[pairs, 2])
    return {
        "val_accuracy": float((z[:, :2].argmax(1) == y[:, 0]).float().mean()),
        "val_nll": float(torch.nn.functional.cross_entropy(z[:, :2], y[:, 0])),
        "val_pair_digits_accuracy": float(both.float().mean()),
    }

