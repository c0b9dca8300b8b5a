"""Score a model card on the MNIST test set through the serving path, and write a report folder.

Everything goes through worker.engine.DigitModel (the object workers use) and normalize_digit, so the
figures are the service's figures, not those of a training-time shortcut.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from training.calibrate import ece
from training.prepared import prepared_split
from worker.engine import DigitModel

console = Console()


def softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = z / temperature
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def per_class(pred: np.ndarray, labels: np.ndarray) -> list[dict]:
    rows = []
    for c in range(10):
        tp = int(((pred == c) & (labels == c)).sum())
        rows.append(dict(digit=c, precision=tp / max(int((pred == c).sum()), 1),
                         recall=tp / max(int((labels == c).sum()), 1), support=int((labels == c).sum())))  # fmt: skip
    return rows


def robustness_table(model: DigitModel, data, clean_acc: float, limit: int | None = None) -> list[dict]:
    """Accuracy under each shift of training.robustness; a shift passes within 1 point of clean."""
    from tqdm import tqdm

    from training.data import load_mnist
    from training.robustness import SHIFTS, shifted

    images, labels = load_mnist("test", data)
    if limit:
        images, labels = images[:limit], labels[:limit]
    rows = []
    for name in tqdm([s for s in SHIFTS if s != "clean"], desc="robustness", unit="shift"):
        acc = float((model.logits(shifted(images, name)).argmax(1) == labels).mean())
        rows.append(dict(shift=name, accuracy=acc, delta_points=100 * (acc - clean_acc),
                         within_1_point=bool(100 * (clean_acc - acc) <= 1.0)))  # fmt: skip
    return rows


def evaluate(card_path: Path, report: Path, robustness: bool = False, data=None, device: str = "auto") -> dict:
    model = DigitModel.load(card_path, device=device)
    card = model.card
    x, y = prepared_split("test", data)
    logits = model.logits(x)
    pred = logits.argmax(1)
    acc = float((pred == y).mean())
    p_raw, p_cal = softmax(logits), softmax(logits, card.temperature)
    metrics = dict(
        model=str(card_path), version=model.version, runtime=model.runtime, test_accuracy=acc,
        test_errors=int((pred != y).sum()), test_size=len(y), temperature=card.temperature,
        ece_before=ece(p_raw, y), ece_after=ece(p_cal, y),
        nll_before=float(-np.log(p_raw[np.arange(len(y)), y] + 1e-12).mean()),
        nll_after=float(-np.log(p_cal[np.arange(len(y)), y] + 1e-12).mean()),
        per_class=per_class(pred, y), card_metrics=card.metrics.model_dump(),
    )  # fmt: skip

    console.print(f"[bold]{card_path}[/bold] ({model.version}, {model.runtime})")
    console.print(f"test accuracy: [bold]{acc:.2%}[/bold] ({metrics['test_errors']} errors in {len(y)})")
    table = Table("digit", "precision", "recall", "support", title="per class")
    for r in metrics["per_class"]:
        table.add_row(str(r["digit"]), f"{r['precision']:.2%}", f"{r['recall']:.2%}", str(r["support"]))
    console.print(table)
    console.print(
        f"ECE: {metrics['ece_before']:.4f} before temperature, {metrics['ece_after']:.4f} after (T={card.temperature:.3f}); "
        f"NLL {metrics['nll_before']:.4f} -> {metrics['nll_after']:.4f}"
    )

    if robustness:
        rows = robustness_table(model, data, acc)
        metrics["robustness"] = rows
        table = Table("shift", "accuracy", "vs clean", "within 1 pt", title="robustness (MNIST test, serving preprocessing)")
        table.add_row("clean", f"{acc:.2%}", "", "")
        for r in rows:
            table.add_row(r["shift"], f"{r['accuracy']:.2%}", f"{r['delta_points']:+.2f} pt", "yes" if r["within_1_point"] else "[red]NO[/red]")
        console.print(table)

    report = Path(report)
    report.mkdir(parents=True, exist_ok=True)
    from training.plots import plot_confusion, plot_curves, plot_mistakes, plot_reliability

    plot_curves(card.training.history, report / "curves.png", card.training.best_epoch)
    plot_confusion(y, pred, report / "confusion.png")
    plot_mistakes(x, y, p_cal, report / "mistakes.png")
    plot_reliability(p_raw, p_cal, y, report / "reliability.png")
    (report / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    console.print(f"report written to {report}/ (curves.png, confusion.png, mistakes.png, reliability.png, metrics.json)")
    return metrics
