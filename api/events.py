"""Waiting for a job without polling Redis in a tight loop.

Workers publish a job's id on ``P:events`` when its last unit is stored. One subscriber per gateway
process wakes the requests waiting on that id (``/api/recognize``, ``GET /api/jobs/{id}?wait=``).
Pub/sub is fire-and-forget, so a waiter also re-checks the store every ``recheck_s``: a message lost
while Redis restarted costs at most that much latency, never a hang. A message itself needs no re-check:
only the save that completes a job publishes (worker.results).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis

log = logging.getLogger(__name__)


class JobEvents:
    def __init__(self, client: aioredis.Redis, channel: str, recheck_s: float = 1.0):
        self.client, self.channel, self.recheck_s = client, channel, recheck_s
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="job-events")

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Cancel the listener, waiting for it a bounded time: a pub/sub connection that does not honour
        the cancellation at once (seen with fakeredis, now and then) must not hang the gateway's shutdown."""
        if self._task:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=timeout_s)

    @contextmanager
    def watching(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set when the job's message arrives. Register it *before* looking at the job: a job
        that finishes between the look and the wait is then not missed (it would cost a ``recheck_s``)."""
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        try:
            yield event
        finally:
            self._waiters[job_id].discard(event)
            if not self._waiters[job_id]:
                self._waiters.pop(job_id, None)

    async def wait(self, job_id: str, is_finished, timeout_s: float) -> bool:
        """Wait until ``await is_finished()`` is true, the job's message arrives, or ``timeout_s`` passes;
        True when the job finished."""
        with self.watching(job_id) as event:
            return await self.wait_on(event, is_finished, timeout_s)

    async def wait_on(self, event: asyncio.Event, is_finished, timeout_s: float, finished: bool | None = None) -> bool:
        """:meth:`wait` with an event from :meth:`watching`. ``finished``: the caller's own answer, made
        after the event was registered, so the first check is not asked again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if finished is None:
                finished = await is_finished()
            if finished:
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(event.wait(), min(left, self.recheck_s))
                return True  # the save that finished the job announced it
            except asyncio.TimeoutError:
                finished = None  # re-check: a message may have been lost

    async def _listen(self) -> None:
        while True:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as ps:
                    await ps.subscribe(self.channel)
                    async for message in ps.listen():
                        job_id = message["data"].decode() if isinstance(message["data"], bytes) else str(message["data"])
                        for event in self._waiters.get(job_id, ()):
                            event.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis restarted: waiters fall back on re-checking; resubscribe soon
                log.debug("job events: %s; resubscribing", e)
                await asyncio.sleep(1.0)
