"""``phonereader bench queue``: the whole service under load, for each worker count and batcher setting.

For every configuration it starts a fresh stack (``api.up.Stack``: private Redis, W workers, gateway),
then measures in one run:

- closed-loop clients: C threads, each submitting one line image (``POST /api/jobs``) and long-polling
  it to the end, over and over: images/s and submit-to-result latency percentiles;
- a bulk zip of N line images: time until the job is finished;
- the worker batcher's mean batch size, from ``/metrics``.

Line images are synthetic handwriting from MNIST *test* digits (``training.synth``). The clients run in
this process and share the machine's cores with the service, so compare rows within one run.
"""

from __future__ import annotations

import io
import threading
import time
import zipfile
from dataclasses import dataclass

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from api.up import Stack
from phonereader.loadgen import run_clients


@dataclass
class Config:
    workers: int
    batch_max_size: int
    batch_max_delay_ms: float
    concurrency: int
    chunk: int
    model_threads: int = 0

    def env(self) -> dict[str, str]:
        return {"PHONEREADER_BATCH_MAX_SIZE": str(self.batch_max_size),
                "PHONEREADER_BATCH_MAX_DELAY_MS": str(self.batch_max_delay_ms),
                "PHONEREADER_WORKER_CONCURRENCY": str(self.concurrency),
                "PHONEREADER_TASK_CHUNK_SIZE": str(self.chunk),
                "PHONEREADER_WORKER_MODEL_THREADS": str(self.model_threads),
                "PHONEREADER_REDIS_PREFIX": "bench", "PHONEREADER_QUEUE_NAME": "bench"}


def line_images(n: int, seed: int = 0) -> list[tuple[bytes, str]]:
    from training.synth import DigitPool, make_lines

    return [(s.image, s.truth) for s in make_lines(DigitPool("test"), n, seed=seed)]


def _batch_stats(client: httpx.Client) -> tuple[float, float]:
    text = client.get("/metrics").text
    get = lambda name: next((float(l.split()[-1]) for l in text.splitlines() if l.startswith(name + " ")), 0.0)  # noqa: E731
    return get("phonereader_batch_size_sum"), get("phonereader_batch_size_count")


def closed_loop(url: str, images: list[tuple[bytes, str]], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    digits = [0]
    errors = [0]
    lock, stop = threading.Lock(), threading.Event()

    def client(k: int):
        mine, n_digits, i = [], 0, k
        with httpx.Client(base_url=url, timeout=60) as c:
            while not stop.is_set():
                data, truth = images[i % len(images)]
                i += clients
                t0 = time.perf_counter()
                r = c.post("/api/jobs", files=[("files", ("line.jpg", data))], data={"kind": "line"})
                if r.status_code != 202:
                    with lock:
                        errors[0] += 1
                    time.sleep(0.1)
                    continue
                job_url = r.json()["status_url"]
                while True:
                    job = c.get(job_url, params={"wait": 10, "detail": "false"}).json()
                    if job["status"] in ("succeeded", "partial", "failed"):
                        break
                mine.append(time.perf_counter() - t0)
                n_digits += len(truth)
        with lock:
            latencies.extend(mine)
            digits[0] += n_digits

    elapsed = run_clients(client, clients, seconds, stop)
    lat = np.array(latencies or [np.nan]) * 1000
    return {"images_s": len(latencies) / elapsed, "digits_s": digits[0] / elapsed, "errors": errors[0],
            "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)), "p99": float(np.percentile(lat, 99))}


def bulk(url: str, images: list[tuple[bytes, str]], n: int) -> float:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"{i:05d}.jpg", images[i % len(images)][0])
    with httpx.Client(base_url=url, timeout=120) as c:
        t0 = time.perf_counter()
        r = c.post("/api/jobs", files=[("files", ("bulk.zip", buf.getvalue()))], data={"kind": "line"})
        r.raise_for_status()
        while c.get(r.json()["status_url"], params={"wait": 10, "detail": "false"}).json()["finished_at"] is None:
            pass
        return time.perf_counter() - t0


def run_queue_benchmark(workers: list[int], clients: list[int], settings: list[tuple[int, float]], concurrency: int,
                        chunk: int, seconds: float, bulk_n: int, model_threads: int = 0) -> None:
    console = Console()
    images = line_images(200)
    console.print(f"{len(images)} synthetic line images (MNIST test digits), {seconds:g} s per client count")
    table = Table(title="End to end: HTTP -> Redis -> workers -> result")
    for col in ("workers", "batch max", "delay ms", "clients", "images/s", "digits/s", "p50 ms", "p95 ms", "p99 ms",
                "mean batch", f"bulk {bulk_n} s"):
        table.add_column(col, justify="right")
    for w in workers:
        for size, delay in settings:
            cfg = Config(w, size, delay, concurrency, chunk, model_threads)
            with Stack(workers=w, port=0, env=cfg.env(), quiet=True) as stack:
                with httpx.Client(base_url=stack.url, timeout=30) as c:
                    closed_loop(stack.url, images, 2, 1.0)  # warm-up
                    for k in clients:
                        s0, n0 = _batch_stats(c)
                        r = closed_loop(stack.url, images, k, seconds)
                        s1, n1 = _batch_stats(c)
                        time.sleep(0.1)
                        table.add_row(str(w), str(size), f"{delay:g}", str(k), f"{r['images_s']:.1f}", f"{r['digits_s']:.0f}",
                                      f"{r['p50']:.0f}", f"{r['p95']:.0f}", f"{r['p99']:.0f}",
                                      f"{(s1 - s0) / max(n1 - n0, 1):.1f}", "")
                    if bulk_n:
                        time.sleep(2.5)  # let the last heartbeat push metrics
                        s0, n0 = _batch_stats(c)
                        took = bulk(stack.url, images, bulk_n)
                        time.sleep(2.5)
                        s1, n1 = _batch_stats(c)
                        table.add_row(str(w), str(size), f"{delay:g}", "bulk", f"{bulk_n / took:.1f}", "", "", "", "",
                                      f"{(s1 - s0) / max(n1 - n0, 1):.1f}", f"{took:.1f}")
            table.add_section()
            console.log(f"done: {w} worker(s), batch <= {size}, delay {delay:g} ms")
    console.print(table)
