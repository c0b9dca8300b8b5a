"""The gateway's view of the task queue: send a job's tasks through Celery, measure the backlog."""

from __future__ import annotations

import redis.asyncio as aioredis
from celery import Celery
from starlette.concurrency import run_in_threadpool

from phonereader.config import Settings
from worker.celery_app import HIGH, LOW, PRIORITY_STEPS, make_celery, publish, queue_keys


class TaskQueue:
    def __init__(self, settings: Settings, client: aioredis.Redis, celery: Celery | None = None):
        self.settings, self.r = settings, client
        self.celery = celery or make_celery(settings)
        self._keys = queue_keys(settings)

    async def depth(self) -> dict[str, int]:
        """Tasks waiting (not yet reserved by a worker), by priority: 'high' for small jobs, 'bulk'."""
        async with self.r.pipeline(transaction=False) as p:
            for key in self._keys:
                p.llen(key)
            sizes = await p.execute()
        names = {HIGH: "high", LOW: "bulk"}
        return {names[pri]: int(n) for pri, n in zip(PRIORITY_STEPS, sizes)}

    def priority(self, units: int) -> int:
        """Small jobs (a canvas, a few images) go ahead of bulk units."""
        return HIGH if units <= self.settings.priority_max_items else LOW

    async def send(self, job_id: str, units: list[int]) -> int:
        """Queue the units of a job (Celery's client is blocking, so off the event loop)."""
        return await run_in_threadpool(publish, self.celery, self.settings, job_id, units, self.priority(len(units)))
