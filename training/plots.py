"""The report's pictures: training curves, confusion matrix, worst mistakes, reliability diagram."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_curves(history: list[dict], path: Path, best_epoch: int | None = None) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    if history:
        ep = [h["epoch"] for h in history]
        a.plot(ep, [h["train_loss"] for h in history], label="train (augmented, smoothed)")
        a.plot(ep, [h["val_loss"] for h in history], label="val")
        b.plot(ep, [100 * h["train_acc"] for h in history], label="train (augmented)")
        b.plot(ep, [100 * h["val_acc"] for h in history], label="val")
        best = next((h for h in history if h["epoch"] == best_epoch), max(history, key=lambda h: h["val_acc"]))
        b.axvline(best["epoch"], color="gray", ls=":", label=f"exported: val {100 * best['val_acc']:.2f}%")
        polish = [h["epoch"] for h in history if h.get("stage") == "polish"]
        for ax in (a, b):
            if polish:
                ax.axvspan(min(polish) - 0.5, max(polish) + 0.5, color="gold", alpha=0.2, label="polish")
        b.set_ylim(max(90.0, min(100 * h["val_acc"] for h in history) - 1), 100)
    a.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    b.set(xlabel="epoch", ylabel="accuracy %", title="accuracy")
    a.legend()
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(labels: np.ndarray, pred: np.ndarray, path: Path) -> None:
    cm = np.zeros((10, 10), int)
    np.add.at(cm, (labels, pred), 1)
    fig, ax = plt.subplots(figsize=(6, 6))
    off = cm.copy()
    np.fill_diagonal(off, 0)
    ax.imshow(off, cmap="Reds")  # colour the errors; the diagonal would drown them
    for i in range(10):
        for j in range(10):
            ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=7, color="black" if i != j else "navy")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true", title="confusion (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_mistakes(x: np.ndarray, labels: np.ndarray, probs: np.ndarray, path: Path, n: int = 36) -> None:
    """The most confident wrong answers first: those are the ones a threshold will not catch."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]])][:n]
    cols = 9
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(x[i], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{labels[i]}→{pred[i]} {probs[i, pred[i]]:.2f}", fontsize=8)
    fig.suptitle("worst mistakes: true→predicted, calibrated confidence")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(p_raw: np.ndarray, p_cal: np.ndarray, labels: np.ndarray, path: Path, bins: int = 15) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    edges = np.linspace(0, 1, bins + 1)
    for probs, name in ((p_raw, "T=1"), (p_cal, "fitted T")):
        conf, ok = probs.max(1), probs.argmax(1) == labels
        xs, ys = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            m = (conf > lo) & (conf <= hi)
            if m.sum() >= 5:
                xs.append(conf[m].mean())
                ys.append(ok[m].mean())
        ax.plot(xs, ys, "o-", label=name)
    ax.plot([0, 1], [0, 1], "k:", label="perfect")
    ax.set(xlabel="confidence", ylabel="accuracy", title="reliability (test)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
