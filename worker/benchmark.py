"""``phonereader bench batcher``: how the model scales with batch size, and what the dynamic batcher
delivers to concurrent callers for each (max size, max delay). The worker's defaults come from here.

Everything is measured in one run on the same model, so compare rows with each other, not with other
machines. Callers are threads that each submit one phone number's crops and wait, like task threads.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from phonereader.config import get_settings
from phonereader.loadgen import run_clients
from worker.batcher import DynamicBatcher


def _crops(n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros((n, 28, 28), np.float32)
    x[:, 4:24, 6:22] = rng.random((n, 20, 16), dtype=np.float32)  # digit-like: ink in the 20x20 box
    return x


def model_throughput(model, sizes: list[int], seconds: float, rng) -> list[tuple[int, float, float]]:
    rows = []
    for size in sizes:
        x = _crops(size, rng)
        model.predict_proba(x)  # warm-up
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model.predict_proba(x)
            n += 1
        elapsed = time.perf_counter() - start
        rows.append((size, n * size / elapsed, 1000 * elapsed / n))
    return rows


def batcher_run(model, clients: int, max_size: int, delay_ms: float, crops: int, seconds: float, rng) -> dict:
    sizes: list[int] = []
    batcher = DynamicBatcher(model.predict_proba, max_size, delay_ms / 1000, lambda s: sizes.append(s.size))
    x = _crops(crops, rng)
    latencies: list[float] = []
    lock, stop = threading.Lock(), threading.Event()

    def client(_: int):
        mine = []
        while not stop.is_set():
            t0 = time.perf_counter()
            batcher.predict(x)
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    elapsed = run_clients(client, clients, seconds, stop)
    batcher.stop()
    lat = np.array(latencies) * 1000
    return {"digits_s": len(lat) * crops / elapsed, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "mean_batch": float(np.mean(sizes)) if sizes else 0.0}


def run_batcher_benchmark(clients: list[int], sizes: list[int], delays: list[float], crops: int,
                          seconds: float, threads: int) -> None:
    from worker.engine import DigitModel

    settings = get_settings()
    console = Console()
    model = DigitModel.serving(settings, device="cpu", runtime="onnx", threads=threads or None)
    rng = np.random.default_rng(0)
    console.print(f"model {model.version} ({model.runtime} on {model.device}); {crops} crops per request")

    table = Table(title="Model alone: one predict_proba call per batch")
    for col in ("batch", "digits/s", "ms/batch"):
        table.add_column(col, justify="right")
    for size, rate, ms in model_throughput(model, [1, 8, 32, 64, 128, 256, 512], seconds / 2, rng):
        table.add_row(str(size), f"{rate:,.0f}", f"{ms:.2f}")
    console.print(table)

    table = Table(title="Dynamic batcher: concurrent callers, each waiting for its number")
    for col in ("callers", "max size", "max delay ms", "digits/s", "p50 ms", "p99 ms", "mean batch"):
        table.add_column(col, justify="right")
    for c in clients:
        configs = [(crops, 0.0)] + [(s, d) for s in sizes for d in delays]  # first row: no batching
        for size, delay in configs:
            r = batcher_run(model, c, size, delay, crops, seconds, rng)
            label = f"{size}" + (" (off)" if size == crops else "")
            table.add_row(str(c), label, f"{delay:g}", f"{r['digits_s']:,.0f}", f"{r['p50_ms']:.2f}",
                          f"{r['p99_ms']:.2f}", f"{r['mean_batch']:.1f}")
        table.add_section()
    console.print(table)


