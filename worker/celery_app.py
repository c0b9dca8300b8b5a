"""The Celery application, shared by the gateway (which only sends tasks) and the workers.

It imports nothing heavy, so the gateway can build it without numpy, onnxruntime or torch.
The settings that make the queue safe:

- ``acks_late`` + ``reject_on_worker_lost``: a task is acknowledged only after its results are stored,
  so a worker that dies (even ``kill -9``) leaves its tasks unacknowledged; Redis hands them to another
  worker once ``visibility_timeout_s`` has passed (a worker that shuts down cleanly requeues at once).
  Result writes are idempotent (``worker.results``), so running a task twice does no harm.
- Two priorities on one queue: small jobs (canvas, a few images) are taken before bulk units, so a
  100,000-page upload does not stall the person drawing on the canvas page.
- No result backend: results live in the job store, never in Celery's (``PENDING`` means nothing).
"""

from __future__ import annotations

import contextlib

from celery import Celery

from phonereader.config import Settings

READ_TASK = "phonereader.read_units"
HIGH, LOW = 0, 9  # Redis priorities: 0 is taken first
PRIORITY_STEPS = [HIGH, LOW]


def make_celery(settings: Settings) -> Celery:
    app = Celery("phonereader", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for Redis to come back rather than exit
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 4)),
            "unacked_restore_throttle": 1,  # sweep for abandoned tasks every interval, not every 10th
            "priority_steps": PRIORITY_STEPS,
            "queue_order_strategy": "priority",
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "health_check_interval": 10,
        },
        task_default_queue=settings.queue_name,
        task_default_priority=HIGH,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,  # a task that raised has stored its failures already
        worker_prefetch_multiplier=settings.worker_prefetch_multiplier,
        worker_hijack_root_logger=False,
        # No remote control (pidbox): its pub/sub channel is where kombu 5.7 turns a Redis restart into an
        # "Unrecoverable error" that stops the worker. /api/ready and /metrics show the fleet instead.
        worker_enable_remote_control=False,
        worker_send_task_events=settings.worker_task_events,  # for Flower; off by default (Redis traffic)
        task_send_sent_event=settings.worker_task_events,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_create_missing_queues=True,
    )
    return app


def queue_keys(settings: Settings) -> list[str]:
    """The Redis lists that hold the queue's waiting tasks, one per priority (kombu's layout)."""
    sep = "\x06\x16"
    return [settings.queue_name if p == 0 else f"{settings.queue_name}{sep}{p}" for p in PRIORITY_STEPS]


def publish(app: Celery, settings: Settings, job_id: str, units: list[int], priority: int) -> int:
    """Queue ``units`` of a job as tasks of ``task_chunk_size`` units each (pipelined when kombu can);
    returns the number of tasks."""
    size = settings.task_chunk_size
    chunks = [units[i : i + size] for i in range(0, len(units), size)]
    if not chunks:
        return 0
    with app.producer_or_acquire() as producer:
        batch = getattr(producer, "batch", None)  # kombu >= 5.7: one round trip per 1,000 tasks
        with batch() if batch else contextlib.nullcontext():
            for chunk in chunks:
                app.send_task(READ_TASK, args=[job_id, chunk], queue=settings.queue_name, priority=priority,
                              producer=producer)
    return len(chunks)
