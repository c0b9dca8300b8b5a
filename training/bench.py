"""``phonereader bench model``: digits/s of each model card in PyTorch and ONNX Runtime at batch 1, 16, 256.

Measured through worker.engine.DigitModel.predict_proba, i.e. what a worker pays per batch (input
scaling and softmax included). Each figure is the median of three rounds, and the rounds interleave
models and runtimes so that a noisy neighbour on this shared machine hurts all of them alike.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from phonereader.modelcard import ModelFileError
from worker.engine import DigitModel

BATCHES = (1, 16, 256)
RUNTIMES = ("torch", "onnx")
console = Console()


def digits_per_s(model: DigitModel, batch: int, seconds: float) -> float:
    x = np.random.default_rng(0).random((batch, 28, 28), dtype=np.float32)
    for _ in range(3):
        model.predict_proba(x)
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        model.predict_proba(x)
        n += 1
    return n * batch / elapsed


def bench_models(names: list[str], folder: Path, threads: int = 2, seconds: float = 1.0, rounds: int = 3) -> dict:
    import torch

    torch.set_num_threads(threads)
    loaded, missing = {}, {}
    for name in names:
        path = Path(name) if name.endswith(".json") else Path(folder) / f"{name}.json"
        try:
            loaded[name] = {rt: DigitModel.load(path, device="cpu", runtime=rt, threads=threads) for rt in RUNTIMES}
        except ModelFileError as e:
            missing[name] = str(e)
    results: dict = {(n, rt, b): [] for n in loaded for rt in RUNTIMES for b in BATCHES}
    jobs = [(n, rt, b) for _ in range(rounds) for n in loaded for rt in RUNTIMES for b in BATCHES]
    for n, rt, b in tqdm(jobs, desc="bench model", unit="run"):
        results[n, rt, b].append(digits_per_s(loaded[n][rt], b, seconds / rounds))
    speed = {k: float(np.median(v)) for k, v in results.items()}

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    console.print(f"CPU ({os.cpu_count()} cores, load average {load} while measuring), {threads} threads, "
                  f"torch {torch.__version__}; median of {rounds} interleaved rounds")  # fmt: skip
    table = Table("model", "runtime", *[f"batch {b}" for b in BATCHES], title="digits/s")
    for n in loaded:
        for rt in RUNTIMES:
            table.add_row(n, "PyTorch" if rt == "torch" else "ONNX Runtime", *[f"{speed[n, rt, b]:,.0f}" for b in BATCHES])
    console.print(table)

    summary = Table("model", "test acc", "val acc", "params", "digits/s @256", "fastest",
                    title="models side by side (accuracy from each card)")  # fmt: skip
    out = {}
    for n, rts in loaded.items():
        card = rts["onnx"].card
        best = max(RUNTIMES, key=lambda rt: speed[n, rt, 256])
        ta, va = card.metrics.test_accuracy, card.metrics.val_accuracy
        summary.add_row(n, f"{ta:.2%}" if ta is not None else "-", f"{va:.2%}" if va is not None else "-",
                        f"{card.parameters:,}", f"{speed[n, best, 256]:,.0f}", best)  # fmt: skip
        out[n] = dict(parameters=card.parameters, test_accuracy=ta, fastest=best,
                      digits_per_s={f"{rt}@{b}": speed[n, rt, b] for rt in RUNTIMES for b in BATCHES})  # fmt: skip
    for n, why in missing.items():
        summary.add_row(n, "missing", "-", "-", "-", "-")
        console.print(f"[yellow]{n}: {why}; train it with `phonereader train --model {n}`[/yellow]")
    console.print(summary)
    return out
