"""The safety net that makes delivery at-least-once, whatever happens to a task message.

Acks-late plus the visibility timeout bring back the tasks of a worker that died. One gap remains in
kombu's Redis transport: a message is popped from the queue (BRPOP) and *then* recorded as unacked,
in a second command; if Redis dies between the two, the message is gone. The job store still knows
which units have no result, so the sweeper, run by one worker at a time from its heartbeat thread,
re-queues them when both of these hold:

- nothing is waiting in the queue: a unit without a result is then either being read right now (which
  shows as activity) or lost;
- the job has had no activity (a unit started or stored) for longer than the visibility timeout, by
  which time Redis has handed back every task a dead worker held.

Re-queued units are harmless even if the original task turns up after all: results are stored once.
"""

from __future__ import annotations

import logging
import time

from api.jobstore import now
from worker.celery_app import LOW, publish, queue_keys

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, store, app, settings, name: str, metrics=None):
        self.store, self.app, self.settings, self.name, self.metrics = store, app, settings, name, metrics
        self.stall_s = 1.5 * settings.visibility_timeout_s
        self.every_s = max(2.0, settings.visibility_timeout_s / 4)
        self._next = 0.0

    def maybe_sweep(self) -> int:
        """Sweep if it is time and no other worker holds the sweeper lock; returns units re-queued."""
        if time.monotonic() < self._next:
            return 0
        self._next = time.monotonic() + self.every_s
        r, keys = self.store.r, self.store.keys
        if not r.set(keys.sweeper, self.name, nx=True, px=int(self.every_s * 1000)):
            return 0
        return self.sweep()

    def sweep(self) -> int:
        r, keys = self.store.r, self.store.keys
        if sum(r.llen(k) for k in queue_keys(self.settings)):
            return 0
        resent = 0
        for raw in r.zrangebyscore(keys.active, "-inf", now() - self.stall_s, start=0, num=100):
            job_id = raw.decode()
            missing = self.store.missing_units(job_id)
            if not missing:  # gone, or finished a moment ago
                r.zrem(keys.active, job_id)
                continue
            log.warning("job %s: no activity for %.0f s and nothing queued; re-queueing %d unit(s)",
                        job_id, self.stall_s, len(missing))
            publish(self.app, self.settings, job_id, missing, LOW)
            r.zadd(keys.active, {job_id: now()}, xx=True)
            if self.metrics is not None:
                self.metrics.inc("units_requeued", len(missing))
            resent += len(missing)
        return resent
