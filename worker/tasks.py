"""The one Celery task. Its body is ``Reader.run``; this module only ties it to Celery's delivery rules.

The worker process builds its :class:`~worker.pipeline.Reader` (and loads the model) before it starts
consuming, and :func:`bind` hands it over here.

When Redis goes away mid-task (a restart), the task neither acks nor rejects its message (both would
need the Redis that is gone): it waits for Redis and runs again, which is safe because ``Reader.run``
is idempotent. The message stays unacknowledged in Redis' AOF all along, so even if this worker dies
meanwhile, another one gets the task after the visibility timeout.
"""

from __future__ import annotations

import logging
import time

import redis
from celery import shared_task
from celery.exceptions import Reject

from worker.celery_app import READ_TASK

log = logging.getLogger(__name__)
_reader = None  # the worker's one loaded model and pipeline (set by bind())


def bind(reader) -> None:
    global _reader
    _reader = reader


@shared_task(bind=True, name=READ_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def read_units(self, job_id: str, units: list[int]) -> None:
    """Read some units of one job and store their results (idempotent: safe to run twice)."""
    if _reader is None:  # never ack work we cannot do: put it back for a worker that has a model
        raise Reject("this process has no model loaded", requeue=True)
    units = [int(u) for u in units]
    patience = _reader.settings.visibility_timeout_s / 2  # past that, the message may be redelivered anyway
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))  # set by kombu on a restored message
    started, delay, first = time.monotonic(), 0.25, True
    while True:
        try:
            return _reader.run(job_id, units, count_delivery=first, redelivered=redelivered)
        except redis.RedisError as e:
            if time.monotonic() - started > patience:
                log.error("job store unavailable for %.0f s; giving job %s back to the queue", patience, job_id)
                raise Reject(str(e), requeue=True) from e
            if first:
                log.warning("job store unavailable (%s); job %s waits for it", e, job_id)
            first = False
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
