"""``phonereader bench all``: everything side by side, measured in one run on this machine.

1. **Model only**: digits/s at batch 1 versus the worker's dynamic batcher under concurrent callers
   (CPU; CUDA too when torch sees a GPU).
2. **Naive baseline** (``bench.naive``): one synchronous endpoint, the same model in-process, one request
   at a time, under the same closed-loop clients and the same images.
3. **End to end**: C closed-loop clients through HTTP, Redis and W workers: images/s, digits/s, latency
   percentiles from submit to result, our ratio to the baseline at the same C, and the CPU each part used
   (which one saturates). Then an open-loop run at half of the measured maximum: the p99 a user sees
   when the service is busy but not overloaded.
4. **Bulk**: one zip of N line images, time until the job is finished.
5. **Batch sizes**: the workers' histogram of crops per forward pass and of items per pass.

The load generator runs in this process and shares the cores with the service (both designs alike), so
compare rows within one run; absolute figures move with whatever else the machine is doing.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.up import Stack, StackError, free_port
from bench.load import Image, LoadResult, closed_loop, file_name, line_images, open_loop
from bench.procs import CpuWindow, roles_of
from phonereader.config import get_settings

# CPU workers as the Docker images run them: ONNX Runtime, explicitly (device 'auto' imports torch to look
# for CUDA, which costs ~650 MB of resident memory per worker when torch is installed), and at most two
# malloc arenas (glibc otherwise gives each busy task thread its own, and resident memory creeps up).
CPU_WORKER_ENV = {"PHONEREADER_DEVICE": "cpu", "PHONEREADER_RUNTIME": "onnx", "MALLOC_ARENA_MAX": "2"}
BENCH_ENV = {"PHONEREADER_REDIS_PREFIX": "bench", "PHONEREADER_QUEUE_NAME": "bench", **CPU_WORKER_ENV}


@dataclass
class Row:
    workers: int  # 0: the naive baseline
    load: LoadResult
    cpu: CpuWindow


@dataclass
class Bulk:
    workers: int
    items: int
    seconds: float
    cpu: CpuWindow


@dataclass
class Report:
    model_rows: list[tuple] = field(default_factory=list)
    naive: dict[int, Row] = field(default_factory=dict)
    ours: dict[tuple[int, int], Row] = field(default_factory=dict)
    half_load: dict[int, Row] = field(default_factory=dict)
    bulk: list[Bulk] = field(default_factory=list)
    naive_bulk: Bulk | None = None
    batch_hist: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)  # closed-loop runs
    bulk_hist: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)  # the bulk zip


# --- 1. the model alone -------------------------------------------------------------------------------


def model_only(console: Console, seconds: float, crops_per_item: int) -> list[tuple]:
    """Batch 1 (one digit per call, as the tutorials ran it), one item's crops per call, and the dynamic
    batcher with 32 concurrent callers at the configured max size and delay."""
    from worker.benchmark import batcher_run, model_throughput
    from worker.engine import DigitModel, _cuda_available

    settings = get_settings()
    devices = [("cpu", "onnx")] + ([("cuda", "torch")] if _cuda_available() else [])
    rows, rng = [], np.random.default_rng(0)
    for device, runtime in devices:
        model = DigitModel.load(settings.model_path, device, runtime, threads=settings.worker_model_threads or None)
        (_, one, _), (_, item, _) = model_throughput(model, [1, crops_per_item], seconds, rng)
        dyn = batcher_run(model, 32, settings.batch_max_size, settings.batch_max_delay_ms, crops_per_item, seconds, rng)
        rows.append((f"{runtime} on {device}", one, item, dyn["digits_s"], dyn["mean_batch"], dyn["p99_ms"]))
        console.log(f"model only, {runtime} on {device}: batch 1 {one:,.0f} digits/s, batcher {dyn['digits_s']:,.0f}")
    if not devices[1:]:
        console.log("no CUDA device here: the GPU row is left out (run this on a GPU machine to add it)")
    return rows


# --- 2. the naive baseline ------------------------------------------------------------------------------


class NaiveServer:
    """``bench.naive`` under uvicorn, one process, on a free port of 127.0.0.1."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "NaiveServer":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.naive:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"the naive server exited: {self.proc.stderr.read().decode()[-500:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise StackError("the naive server did not start within 120 s")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def run_naive(console: Console, images: list[Image], clients: list[int], seconds: float, bulk_n: int,
              report: Report) -> None:
    with NaiveServer() as naive:
        roles = {"naive": [naive.proc.pid], "client": [os.getpid()]}
        closed_loop(naive.url, "naive", images, 2, 2.0, ramp_s=0)  # warm-up
        for c in clients:
            with CpuWindow(roles) as cpu:
                load = closed_loop(naive.url, "naive", images, c, seconds)
            report.naive[c] = Row(0, load, cpu)
            console.log(f"naive, {c:>3} clients: {load.images_s:6.1f} images/s, p99 {load.pct(99):6.0f} ms, "
                        f"CPU {cpu.short()}")
        if bulk_n:
            with progress_bar(console, f"naive: {bulk_n} images, one request each (8 clients)", bulk_n) as (bar, task):
                with CpuWindow(roles) as cpu:
                    load = closed_loop(naive.url, "naive", images, 8, total=bulk_n,
                                       progress=lambda n: bar.advance(task, n))
            report.naive_bulk = Bulk(0, bulk_n, load.seconds, cpu)


# --- 3, 4, 5. our service ----------------------------------------------------------------------------------


def progress_bar(console: Console, label: str, total: int):
    class _Ctx:
        def __enter__(self):
            self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                              console=console, transient=True)
            self.p.__enter__()
            return self.p, self.p.add_task(label, total=total)

        def __exit__(self, *exc):
            self.p.__exit__(*exc)

    return _Ctx()


def batch_histograms(url: str) -> dict[str, dict[str, float]]:
    """Cumulative bucket counts of the workers' batch histograms, read from the gateway's /metrics."""
    out: dict[str, dict[str, float]] = {"batch_size": {}, "batch_requests": {}}
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        name = family.name.removeprefix("phonereader_")
        if name in out:
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    out[name][s.labels["le"]] = s.value
    return out


def hist_delta(after: dict, before: dict) -> dict[str, dict[str, float]]:
    return {h: {le: v - before.get(h, {}).get(le, 0.0) for le, v in buckets.items()} for h, buckets in after.items()}


def settle_metrics() -> None:
    """Workers push their metrics with each heartbeat; wait for one before reading /metrics."""
    time.sleep(get_settings().heartbeat_s + 0.7)


def bulk_zip(images: list[Image], n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            data = images[i % len(images)][0]
            zf.writestr(f"{i:05d}{file_name(data)[4:]}", data)
    return buf.getvalue()


def run_bulk(console: Console, url: str, payload: bytes, n: int) -> float:
    """Upload the zip and poll until the job is finished; seconds from the start of the upload."""
    with httpx.Client(base_url=url, timeout=120) as c:
        t0 = time.perf_counter()
        r = c.post("/api/jobs", files=[("files", ("bulk.zip", payload))], data={"kind": "line"})
        if r.status_code != 202:
            raise StackError(f"bulk upload refused: {r.status_code} {r.text[:300]}")
        url_ = r.json()["status_url"]
        with progress_bar(console, f"bulk zip of {n} line images", n) as (bar, task):
            while True:
                job = c.get(url_, params={"wait": 1, "detail": "false"}).json()
                bar.update(task, completed=job["progress"]["done"])
                if job["finished_at"] is not None:
                    return time.perf_counter() - t0


def run_ours(console: Console, images: list[Image], workers: list[int], clients: list[int], seconds: float,
             bulk_n: int, report: Report, extra_env: dict[str, str] | None = None) -> None:
    payload = bulk_zip(images, bulk_n) if bulk_n else b""
    for w in workers:
        console.log(f"starting Redis, {w} worker(s) and the gateway…")
        with Stack(workers=w, port=0, env={**BENCH_ENV, **(extra_env or {})}, quiet=True) as stack:
            roles = roles_of(stack)
            closed_loop(stack.url, "ours", images, 4, 2.0, ramp_s=0)  # warm-up: connections, first batches
            settle_metrics()
            before = batch_histograms(stack.url)
            for c in clients:
                with CpuWindow(roles) as cpu:
                    load = closed_loop(stack.url, "ours", images, c, seconds)
                report.ours[(w, c)] = Row(w, load, cpu)
                console.log(f"ours, {w} worker(s), {c:>3} clients: {load.images_s:6.1f} images/s, "
                            f"p99 {load.pct(99):6.0f} ms, errors {load.errors}, CPU {cpu.short()}")
            settle_metrics()
            report.batch_hist[w] = hist_delta(batch_histograms(stack.url), before)
            best = max(report.ours[(w, c)].load.images_s for c in clients)
            with CpuWindow(roles) as cpu:
                load = open_loop(stack.url, "ours", images, best / 2, seconds)
            report.half_load[w] = Row(w, load, cpu)
            console.log(f"ours, {w} worker(s), open loop at {best / 2:.1f}/s (half of {best:.1f}): "
                        f"p50 {load.pct(50):.0f} ms, p99 {load.pct(99):.0f} ms")
            if bulk_n:
                settle_metrics()
                before = batch_histograms(stack.url)
                with CpuWindow(roles) as cpu:
                    took = run_bulk(console, stack.url, payload, bulk_n)
                report.bulk.append(Bulk(w, bulk_n, took, cpu))
                settle_metrics()
                report.bulk_hist[w] = hist_delta(batch_histograms(stack.url), before)
                console.log(f"ours, {w} worker(s): bulk of {bulk_n} in {took:.1f} s, CPU {cpu.short()}")


# --- the printed report ----------------------------------------------------------------------------------


def _ms(x: float) -> str:
    return "-" if np.isnan(x) else f"{x:,.0f}"


def print_report(console: Console, report: Report, clients: list[int], workers: list[int]) -> list[str]:
    """Prints the tables; returns the lines of the target check (also printed)."""
    if report.model_rows:
        t = Table(title="1. Model only: digits/s")
        for col in ("runtime", "batch 1", "one item's crops per call", "dynamic batcher, 32 callers", "mean batch",
                    "batcher p99 ms", "batcher / batch 1"):
            t.add_column(col, justify="right")
        for name, one, item, dyn, mean, p99 in report.model_rows:
            t.add_row(name, f"{one:,.0f}", f"{item:,.0f}", f"{dyn:,.0f}", f"{mean:.0f}", f"{p99:.1f}", f"{dyn / one:.1f}x")
        console.print(t)

    t = Table(title="2-3. End to end, closed-loop clients (latency = submit to result)")
    for col in ("design", "clients", "images/s", "digits/s", "p50 ms", "p95 ms", "p99 ms", "errors", "vs naive",
                "CPU % (w g r n c o)"):
        t.add_column(col, justify="right")
    for c in clients:
        if c in report.naive:
            r = report.naive[c]
            t.add_row("naive", str(c), f"{r.load.images_s:.1f}", f"{r.load.digits_s:,.0f}", _ms(r.load.pct(50)),
                      _ms(r.load.pct(95)), _ms(r.load.pct(99)), str(r.load.errors), "1.0x", r.cpu.short())
    for w in workers:
        t.add_section()
        for c in clients:
            r = report.ours.get((w, c))
            if r is None:
                continue
            base = report.naive.get(c)
            ratio = f"{r.load.images_s / base.load.images_s:.1f}x" if base and base.load.images_s else "-"
            t.add_row(f"ours, {w} worker{'s' * (w > 1)}", str(c), f"{r.load.images_s:.1f}", f"{r.load.digits_s:,.0f}",
                      _ms(r.load.pct(50)), _ms(r.load.pct(95)), _ms(r.load.pct(99)), str(r.load.errors), ratio,
                      r.cpu.short())
    console.print(t)
    console.print(f"CPU %: percent of one core over the run ({100 * (os.cpu_count() or 1)} = all cores): w workers, "
                  "g gateway, r Redis, n naive server, c the load clients (this process), o other processes on the "
                  "machine (not ours).")

    if report.half_load:
        t = Table(title="3b. Open loop at half of the maximum throughput (Poisson arrivals)")
        for col in ("workers", "rate /s", "done", "p50 ms", "p95 ms", "p99 ms", "errors", "CPU %"):
            t.add_column(col, justify="right")
        for w, r in report.half_load.items():
            t.add_row(str(w), f"{r.load.rate:.1f}", str(r.load.done), _ms(r.load.pct(50)), _ms(r.load.pct(95)),
                      _ms(r.load.pct(99)), str(r.load.errors), r.cpu.short())
        console.print(t)

    if report.bulk or report.naive_bulk:
        t = Table(title="4. Bulk: N line images, time to complete")
        for col in ("design", "images", "seconds", "images/s", "CPU % (w g r n c o)"):
            t.add_column(col, justify="right")
        if report.naive_bulk:
            b = report.naive_bulk
            t.add_row("naive (8 clients, one request per image)", str(b.items), f"{b.seconds:.1f}",
                      f"{b.items / b.seconds:.1f}", b.cpu.short())
        for b in report.bulk:
            t.add_row(f"ours, {b.workers} worker{'s' * (b.workers > 1)}, one zip", str(b.items), f"{b.seconds:.1f}",
                      f"{b.items / b.seconds:.1f}", b.cpu.short())
        console.print(t)

    for phase, by_workers in (("closed-loop runs", report.batch_hist), ("bulk zip", report.bulk_hist)):
        for w, hists in by_workers.items():
            for name, title in (("batch_size", "crops per forward pass"),
                                ("batch_requests", "items (any jobs) per pass")):
                console.print(f"5. Batch histogram, {w} worker(s), {phase}: {title}")
                console.print(render_histogram(hists.get(name, {})))
    return check_targets(console, report, workers)


def render_histogram(cumulative: dict[str, float], width: int = 40) -> str:
    """Cumulative Prometheus buckets -> one bar per bucket ('le' upper bound)."""
    les = sorted(cumulative, key=lambda le: float("inf") if le == "+Inf" else float(le))
    counts, prev = [], 0.0
    for le in les:
        counts.append(max(0.0, cumulative[le] - prev))
        prev = cumulative[le]
    total = sum(counts) or 1.0
    top = max(counts) or 1.0
    short = lambda le: le if le == "+Inf" else f"{float(le):g}"  # noqa: E731
    lines, lower = [], "0"
    for le, n in zip(les, counts):
        label = f"({lower}, {short(le)}]"
        lines.append(f"  {label:>12} {'█' * round(width * n / top):<{width}} {int(n):>8,} {100 * n / total:5.1f} %")
        lower = short(le)
    return "\n".join(lines) if les else "  (no batches recorded)"


def check_targets(console: Console, report: Report, workers: list[int]) -> list[str]:
    """The issue's targets, stated plainly as met or not met with the measured figures."""
    lines = []
    naive32 = report.naive.get(32)
    for w in workers:
        ours32 = report.ours.get((w, 32))
        if naive32 and ours32 and naive32.load.images_s:
            ratio = ours32.load.images_s / naive32.load.images_s
            lines.append(f"{'met' if ratio >= 3 else 'NOT met'}: throughput at 32 clients, {w} worker(s), is "
                         f"{ratio:.2f}x the naive design's (target >= 3x)")
        half = report.half_load.get(w)
        if half:
            p99 = half.load.pct(99)
            lines.append(f"{'met' if p99 <= 250 else 'NOT met'}: p99 at half of maximum throughput, {w} worker(s), "
                         f"is {p99:.0f} ms (target <= 250 ms)")
        hist = report.batch_hist.get(w, {}).get("batch_requests", {})
        if hist:
            single = hist.get("1.0", 0.0)
            total = hist.get("+Inf", 0.0)
            shared = 1 - single / total if total else 0.0
            lines.append(f"{'met' if shared > 0 else 'NOT met'}: batching is visible, {w} worker(s): {100 * shared:.0f} % "
                         f"of forward passes served more than one item")
    if lines:
        console.print("\nTargets:")
        for line in lines:
            console.print(f"  {line}")
    return lines


def make_console() -> Console:
    """Tables wide enough to read when the output goes to a file or a CI log, not a terminal."""
    return Console() if sys.stdout.isatty() else Console(width=150)


def run_all(workers: list[int], clients: list[int], seconds: float, bulk_n: int, n_images: int,
            naive: bool, model: bool, naive_bulk: bool, extra_env: dict[str, str] | None = None) -> Report:
    console = make_console()
    report = Report()
    console.log(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} before starting; "
                f"{seconds:g} s per measurement; making {n_images} line images…")
    images = line_images(n_images)
    crops = round(float(np.mean([len(t) for _, t in images])))
    if model:
        report.model_rows = model_only(console, min(seconds, 3.0), crops)
    if naive:
        run_naive(console, images, clients, seconds, bulk_n if naive_bulk else 0, report)
    if workers:
        if extra_env:
            console.log(f"service settings for this run: {extra_env}")
        run_ours(console, images, workers, clients, seconds, bulk_n, report, extra_env)
    print_report(console, report, clients, workers)
    return report
