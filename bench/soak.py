"""``phonereader bench soak``: 20,000 jobs in a row. None lost, no errors, memory flat.

Closed-loop clients send one line image per job, in rounds; after each round the resident memory of the
gateway and the workers (and Redis' own accounting) is recorded, so a leak shows as a rising column.
At the end every accepted job id is read back: each must exist and be finished with a result for every
unit. Redis grows by design (finished jobs are kept for ``result_ttl_s``); the processes must not.

Exits non-zero when a job is lost or unfinished, when any request failed, or when the gateway's or a
worker's memory grew by more than ``max_growth`` between the end of the first round (warm) and the end.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import redis
from rich.table import Table

from api.up import Stack
from bench.load import closed_loop, line_images
from bench.procs import roles_of, rss_by_role
from bench.table import CPU_WORKER_ENV, make_console, progress_bar

SOAK_ENV = {"PHONEREADER_REDIS_PREFIX": "soak", "PHONEREADER_QUEUE_NAME": "soak", **CPU_WORKER_ENV}


async def _verify(url: str, job_ids: list[str], concurrency: int = 32) -> tuple[int, int, int]:
    """(lost, unfinished, incomplete) over all ids: 404, still running, or finished with units missing."""
    lost = unfinished = incomplete = 0
    sem = asyncio.Semaphore(concurrency)

    async def one(http: httpx.AsyncClient, job_id: str) -> None:
        nonlocal lost, unfinished, incomplete
        async with sem:
            r = await http.get(f"/api/jobs/{job_id}", params={"detail": "false"})
        if r.status_code == 404:
            lost += 1
            return
        job = r.json()
        if job["finished_at"] is None:
            unfinished += 1
        elif job["progress"]["done"] != job["progress"]["total"]:
            incomplete += 1

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        await asyncio.gather(*(one(http, j) for j in job_ids))
    return lost, unfinished, incomplete


def run_soak(jobs: int, clients: int, workers: int, rounds: int, max_growth: float, n_images: int) -> bool:
    console = make_console()
    images = line_images(n_images)
    per_round = max(1, jobs // rounds)
    table = Table(title=f"Soak: {jobs:,} jobs, {clients} clients, {workers} worker(s)")
    for col in ("round", "jobs", "images/s", "p99 ms", "errors", "gateway RSS MB", "workers RSS MB", "Redis used MB"):
        table.add_column(col, justify="right")
    all_ids: list[str] = []
    errors = 0
    examples: list[str] = []
    with Stack(workers=workers, port=0, env=SOAK_ENV, quiet=True) as stack:
        roles = roles_of(stack)
        r = redis.Redis.from_url(stack.redis_url)
        start_rss = rss_by_role(roles)
        table.add_row("start", "0", "", "", "", f"{start_rss['gateway']:.0f}", f"{start_rss['workers']:.0f}",
                      f"{r.info('memory')['used_memory'] / 2**20:.1f}")
        warm = None
        with progress_bar(console, f"soak: {jobs:,} jobs", jobs) as (bar, task):
            for k in range(rounds):
                n = per_round if k < rounds - 1 else jobs - per_round * (rounds - 1)
                load = closed_loop(stack.url, "ours", images, clients, total=n, keep_ids=True,
                                   progress=lambda m: bar.advance(task, m))
                all_ids += load.job_ids
                errors += load.errors + load.refused
                examples += load.error_examples
                rss = rss_by_role(roles)
                warm = warm or rss
                table.add_row(str(k + 1), f"{len(all_ids):,}", f"{load.images_s:.1f}", f"{load.pct(99):.0f}",
                              str(load.errors + load.refused), f"{rss['gateway']:.0f}", f"{rss['workers']:.0f}",
                              f"{r.info('memory')['used_memory'] / 2**20:.1f}")
        end = rss_by_role(roles)
        dead = stack.dead()
        t0 = time.perf_counter()
        lost, unfinished, incomplete = asyncio.run(_verify(stack.url, all_ids))
        console.log(f"read back {len(all_ids):,} jobs in {time.perf_counter() - t0:.1f} s")
    console.print(table)
    problems = []
    if len(all_ids) != jobs:
        problems.append(f"{jobs - len(all_ids)} jobs were never accepted or never finished")
    if lost or unfinished or incomplete:
        problems.append(f"lost {lost}, unfinished {unfinished}, incomplete {incomplete}")
    if errors:
        problems.append(f"{errors} requests failed or were refused: {examples[:3]}")
    if dead:
        problems.append(f"{dead.name} died during the run")
    for role in ("gateway", "workers"):
        growth = (end[role] - warm[role]) / max(warm[role], 1.0)
        console.print(f"{role}: {start_rss[role]:.0f} MB at start, {warm[role]:.0f} MB after round 1, "
                      f"{end[role]:.0f} MB at the end ({100 * growth:+.1f} % since round 1)")
        if growth > max_growth:
            problems.append(f"{role} memory grew {100 * growth:.0f} % after warm-up (limit {100 * max_growth:.0f} %)")
    for p in problems:
        console.print(f"[red]FAILED[/red]: {p}")
    if not problems:
        console.print(f"passed: {len(all_ids):,} jobs accepted and finished, none lost, no errors, memory flat")
    return not problems
