"""The touching-pair model: is a blob of ink one digit, or two digits whose strokes touch?

Why a second model: the line cutter splits blobs by width, and a narrow touching pair (a "17", a 1
tucked into a 2) is no wider than a wide 0, so the line comes out a digit short. The digit model,
shown such a pair squeezed into one 28x28 crop, often still names one digit with confidence. This
small CNN looks at the very same crop (``normalize_digit`` of the whole blob, the row the line field
already holds) and says "pair" or "one"; worker/recognition/choose.py weighs that against the other
blobs of the line when the phone rules say a digit is missing.

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
INK_LOW = 0.3  # the cutter's hysteresis low threshold (worker/recognition/ink.py): what counts as connected


def _glyph(images, by_class, rng: np.random.Generator, digit: int, height: float, pen: float) -> np.ndarray:
    from training.synth import pen_digit

    idx = by_class[digit]
    return pen_digit(images[idx[rng.integers(len(idx))]], height, rng, pen)


def render_blob(images, by_class, rng: np.random.Generator, pair: bool, max_tries: int = 8) -> np.ndarray | None:
    """Ink (float32, 1 = ink) of one digit, or of two digits laid out as synth._compose_line lays out a
    touching neighbour (overlapping boxes, same pen, same baseline jitter). None when no try touched."""
    height = float(rng.uniform(20, 46))  # the working digit height after the cutter's rescaling
    pen = float(rng.uniform(0.05, 0.16))
    if not pair:
        return _finish(_glyph(images, by_class, rng, int(rng.integers(10)), height * rng.uniform(0.88, 1.12), pen), rng)
    for _ in range(max_tries):
        a, b = (_glyph(images, by_class, rng, int(rng.integers(10)), height * rng.uniform(0.88, 1.12), pen) for _ in range(2))
        gap = -rng.uniform(0.0, 0.12) * height
        ya, yb = (int(round((height - g.shape[0]) * 0.5 + rng.normal(0, 0.04 * height))) for g in (a, b))
        off = min(ya, yb)
        ya, yb = ya - off, yb - off
        xb = max(0, int(round(a.shape[1] + gap)))
        canvas = np.zeros((max(ya + a.shape[0], yb + b.shape[0]), max(a.shape[1], xb + b.shape[1])), np.float32)
        canvas[ya : ya + a.shape[0], : a.shape[1]] = a
        sub = canvas[yb : yb + b.shape[0], xb : xb + b.shape[1]]
        np.maximum(sub, b, out=sub)
        _, n = ndimage.label(canvas > INK_LOW, structure=np.ones((3, 3), bool))
        if n == 1:
            return _finish(canvas, rng)
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


def make_set(images, labels, n: int, seed: int, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``n`` normalised crops (half pairs, half single digits) and their labels (1 = pair)."""
    from tqdm import tqdm

    from phonereader.normalize import normalize_digit

    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == d) for d in range(10)]
    x = np.zeros((n, 28, 28), np.float32)
    y = np.zeros(n, np.int64)
    for i in tqdm(range(n), desc=f"blobs (seed {seed})", disable=not progress, leave=False):
        pair = bool(i % 2)
        ink = render_blob(images, by_class, rng, pair)
        while ink is None:
            ink = render_blob(images, by_class, rng, pair)
        x[i], y[i] = normalize_digit(ink), int(pair)
    return x, y


def build():
    """A small CNN (8-16-32 channels, 28 -> 14 -> 7, global max over the map): the question is coarse,
    so it is ~10x cheaper than the digit model and runs only on the blobs in doubt."""
    from torch import nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(1, 8), nn.MaxPool2d(2),
        *block(8, 16), nn.MaxPool2d(2),
        *block(16, 32),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 2),
    )  # fmt: skip


def train(out: Path, n_train: int = 60_000, n_val: int = 6_000, epochs: int = 6, seed: int = 0, data: Path | None = None,
          batch_size: int = 128, lr: float = 3e-3, threads: int | None = None) -> Path:
    """Train on blobs from MNIST train digits, measure on blobs from MNIST val digits, write the three files."""
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm

    from phonereader.modelcard import sha256
    from training.data import load_mnist
    from training.models import fuse_for_inference

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.time()
    xtr, ytr = make_set(*load_mnist("train", data), n_train, seed)
    xva, yva = make_set(*load_mnist("val", data), n_val, seed + 1)
    mean, std = float(xtr.mean()), float(xtr.std())
    norm = lambda a: torch.from_numpy((a[:, None] - mean) / std)  # noqa: E731
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
            loss = torch.nn.functional.cross_entropy(model(xb), Ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        acc, nll = _evaluate(model, Xva, Yva)
        history.append({"epoch": epoch + 1, "train_loss": total / len(Xtr), "val_accuracy": acc, "val_nll": nll})
        print(f"epoch {epoch + 1}: train loss {total / len(Xtr):.4f}, val accuracy {acc:.4f}", file=sys.stderr)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights, onnx_path, card_path = out / "pairs.safetensors", out / "pairs.onnx", out / "pairs.json"
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(weights))
    weights.chmod(0o644)
    _export(fuse_for_inference(model), onnx_path)
    card = {
        "format": FORMAT,
        "name": "pairs",
        "classes": list(CLASSES),
        "input": {"shape": [1, 28, 28], "mean": mean, "std": std, "normalize": "phonereader.normalize.normalize_digit"},
        "parameters": sum(p.numel() for p in model.parameters()),
        "files": {"weights": weights.name, "weights_sha256": sha256(weights), "onnx": onnx_path.name, "onnx_sha256": sha256(onnx_path)},
        "metrics": {"val_accuracy": history[-1]["val_accuracy"], "val_nll": history[-1]["val_nll"], "val_set": f"{n_val} blobs from MNIST val digits"},
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


def _evaluate(model, x, y) -> tuple[float, float]:
    import torch

    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(x[i : i + 1024]) for i in range(0, len(x), 1024)])
    acc = float((logits.argmax(1) == y).float().mean())
    nll = float(torch.nn.functional.cross_entropy(logits, y))
    return acc, nll


def _export(model, path: Path) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.cpu().eval(), (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False, opset_version=17,
            input_names=["digits"], output_names=["logits"],
            dynamic_axes={"digits": {0: "batch"}, "logits": {0: "batch"}},
        )  # fmt: skip
