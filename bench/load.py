"""HTTP load: many clients in one asyncio loop, against our API or the naive baseline, with the same images.

Two shapes of load:

- **closed loop** (:func:`closed_loop`): C clients, each sending one line image, waiting for its digits,
  then sending the next. Throughput at C clients, and latency from submit to result.
- **open loop** (:func:`open_loop`): requests arrive at a fixed rate (Poisson), whatever the answers do.
  This is how "latency at half of maximum throughput" is measured: a closed loop hides queueing delay.

For our API a request is ``POST /api/jobs`` (one line image) and long polls of ``GET /api/jobs/{id}?wait=``
until the job is finished; for the baseline it is one ``POST /recognize``. An asyncio client costs little
CPU per request, which matters on a 2-core machine where the clients share the cores with the service.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np
from pydantic import BaseModel, Field

FINISHED = {"succeeded", "partial", "failed"}
Image = tuple[bytes, str]  # (encoded image, true digits)


class Refused(Exception):
    """429 or 503 with Retry-After: the service asked us to come back later (backpressure)."""

    def __init__(self, status: int, retry_after_s: float):
        super().__init__(f"{status}, retry after {retry_after_s} s")
        self.status, self.retry_after_s = status, retry_after_s


class Failed(Exception):
    """Anything else that is not a result: a 5xx, a 4xx, a broken connection, a lost job."""


@dataclass
class Answer:
    digits: str
    ok: bool  # the item was read (not a failed item)
    job_id: str | None = None


def file_name(data: bytes) -> str:
    return "line.jpg" if data[:3] == b"\xff\xd8\xff" else "line.png"


def _refusal(r: httpx.Response) -> Refused | None:
    if r.status_code in (429, 503) and "retry-after" in r.headers:
        return Refused(r.status_code, float(r.headers["retry-after"]))
    return None


async def read_ours(client: httpx.AsyncClient, data: bytes, kind: str = "line") -> Answer:
    """Submit one image as a job and long-poll it to the end."""
    r = await client.post("/api/jobs", files=[("files", (file_name(data), data))], data={"kind": kind})
    if r.status_code != 202:
        raise _refusal(r) or Failed(f"POST /api/jobs: {r.status_code} {r.text[:200]}")
    job_id, url = r.json()["id"], r.json()["status_url"]
    broken = 0
    while True:
        try:
            r = await client.get(url, params={"wait": 10, "detail": "false"})
        except httpx.TransportError:  # a poll is safe to repeat, as any client would; a POST is not
            broken += 1
            if broken > 3:
                raise
            continue
        if r.status_code != 200:
            raise Failed(f"GET {url}: {r.status_code} {r.text[:200]}")
        job = r.json()
        if job["status"] in FINISHED:
            items = job["items"]
            return Answer("".join(i["digits"] or "" for i in items), all(i["status"] == "succeeded" for i in items), job_id)


async def read_naive(client: httpx.AsyncClient, data: bytes, kind: str = "line") -> Answer:
    r = await client.post("/recognize", files=[("file", (file_name(data), data))], data={"kind": kind})
    if r.status_code == 200:
        return Answer(r.json()["digits"], True)
    if r.status_code == 422:  # the image could not be read: a failed item, as our API reports it
        return Answer("", False)
    raise _refusal(r) or Failed(f"POST /recognize: {r.status_code} {r.text[:200]}")


TARGETS: dict[str, Callable] = {"ours": read_ours, "naive": read_naive}


class LoadResult(BaseModel):
    """One measurement. Latencies are of requests that finished inside the measured window."""

    target: str
    mode: str
    clients: int = 0
    rate: float = 0.0
    seconds: float
    done: int = 0
    digits: int = 0
    failed_items: int = 0
    refused: int = 0
    errors: int = 0
    error_examples: list[str] = Field(default_factory=list)
    latencies_ms: list[float] = Field(default_factory=list, repr=False)
    job_ids: list[str] = Field(default_factory=list, repr=False)

    @property
    def images_s(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def digits_s(self) -> float:
        return self.digits / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


@dataclass
class _Tally:
    result: LoadResult
    t_end: float  # completions after this do not count (they finish, but outside the window)
    keep_ids: bool = False
    t_begin: float = 0.0  # nor do those before this (the ramp-up: every client's first request at once)

    def record(self, started: float, answer: Answer) -> None:
        now = time.perf_counter()
        if self.keep_ids and answer.job_id:
            self.result.job_ids.append(answer.job_id)
        if not self.t_begin <= now <= self.t_end:
            return
        self.result.done += 1
        self.result.digits += len(answer.digits)
        self.result.failed_items += not answer.ok
        self.result.latencies_ms.append(1000 * (now - started))

    def error(self, e: Exception) -> None:
        if isinstance(e, Refused):
            self.result.refused += 1
            return
        self.result.errors += 1
        if len(self.result.error_examples) < 5:
            self.result.error_examples.append(f"{type(e).__name__}: {e}"[:300])


def _client(url: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections + 4, max_keepalive_connections=connections + 4)
    return httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(60, connect=10), limits=limits)


async def _closed(url: str, target: str, images: list[Image], clients: int, seconds: float | None,
                  total: int | None, keep_ids: bool, progress: Callable[[int], None] | None,
                  ramp_s: float) -> LoadResult:
    read = TARGETS[target]
    result = LoadResult(target=target, mode="closed", clients=clients, seconds=seconds or 0.0)
    start = time.perf_counter()
    ramp_s = ramp_s if seconds else 0.0
    tally = _Tally(result, start + ramp_s + seconds if seconds else float("inf"), keep_ids, start + ramp_s)
    counter = iter(range(10**12))

    async def client(k: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(k)
        while time.perf_counter() < tally.t_end:
            n = next(counter)
            if total is not None and n >= total:
                return
            data, _ = images[rng.randrange(len(images))]
            t0 = time.perf_counter()
            try:
                tally.record(t0, await read(http, data))
                if progress:
                    progress(1)
            except Refused as e:
                tally.error(e)
                await asyncio.sleep(min(e.retry_after_s, 5.0))
            except (Failed, httpx.HTTPError) as e:
                tally.error(e)
                await asyncio.sleep(0.2)

    async with _client(url, clients) as http:
        await asyncio.gather(*(client(k, http) for k in range(clients)))
    if not seconds:
        result.seconds = time.perf_counter() - start
    return result


async def _open(url: str, target: str, images: list[Image], rate: float, seconds: float) -> LoadResult:
    read = TARGETS[target]
    result = LoadResult(target=target, mode="open", rate=rate, seconds=seconds)
    start = time.perf_counter()
    tally = _Tally(result, start + seconds)
    rng = random.Random(0)

    async def one(http: httpx.AsyncClient, data: bytes) -> None:
        t0 = time.perf_counter()
        try:
            tally.record(t0, await read(http, data))
        except (Refused, Failed, httpx.HTTPError) as e:
            tally.error(e)

    async with _client(url, max(16, int(rate * 2))) as http:
        tasks, t_next = [], start
        while t_next < start + seconds:
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
            tasks.append(asyncio.create_task(one(http, images[rng.randrange(len(images))][0])))
            t_next += rng.expovariate(rate)
        # the window's requests that are still running: count them all (queueing delay is the point here)
        tally.t_end = float("inf")
        await asyncio.gather(*tasks)
    return result


def closed_loop(url: str, target: str, images: list[Image], clients: int, seconds: float | None = None,
                total: int | None = None, keep_ids: bool = False,
                progress: Callable[[int], None] | None = None, ramp_s: float | None = None) -> LoadResult:
    """C clients measured for ``seconds`` after a ramp-up (default: a quarter of ``seconds``, at least 2 s,
    during which every client's first request arrives at once and queues), or until ``total`` requests
    have been sent. Requests still running at the end finish but are not counted."""
    ramp = max(2.0, (seconds or 0) / 4) if ramp_s is None else ramp_s
    return asyncio.run(_closed(url, target, images, clients, seconds, total, keep_ids, progress, ramp))


def open_loop(url: str, target: str, images: list[Image], rate: float, seconds: float) -> LoadResult:
    """Poisson arrivals at ``rate`` per second for ``seconds``; every request is waited for and counted."""
    return asyncio.run(_open(url, target, images, rate, seconds))


def line_images(n: int, seed: int = 0) -> list[Image]:
    """Synthetic handwritten phone numbers on one line (canvas drawings and photos of paper), made from
    MNIST *test* digits by ``training.synth``: the same images for every design compared."""
    from training.synth import DigitPool, make_lines

    return [(s.image, s.truth) for s in make_lines(DigitPool("test"), n, seed=seed)]
