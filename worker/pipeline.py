"""What a worker does with a task, as a row of named steps: decode, crops, batch, logits, digits, result.

:class:`Reader` owns the worker's one loaded model (the only process-wide state a worker has). A task
brings a job id and a few unit numbers; for each unit the task thread decodes the uploaded bytes into
ink maps and cuts them into digit crops, then hands all its crops to the shared
:class:`~worker.batcher.DynamicBatcher`, which runs them through the model together with the crops of
whatever other jobs' tasks are waiting, and finally turns probabilities into readings and stores them.

A unit fails alone: bad input (``InputError``) or an unexpected error while reading one unit stores a
failed result for that unit and the rest of the task goes on. Only infrastructure errors (Redis gone)
escape, so that Celery requeues the task.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from api.jobstore import failed_result, now
from phonereader.config import Settings
from phonereader.imageio import InputError, load_page
from worker.batcher import BatchStats, DynamicBatcher
from worker.crops import unit_crops
from worker.metrics import MetricsBuffer
from worker.reload import ModelWatcher
from worker.results import JobInfo, ResultStore

log = logging.getLogger(__name__)


@dataclass
class Work:
    """One unit on its way through the steps."""

    unit: int
    started: float = field(default_factory=time.perf_counter)
    descriptor: dict | None = None  # what was uploaded for it (P:job:J:units), read when the unit is claimed
    fields: list[Any] = field(default_factory=list)  # recognition Fields, once cut
    inks: list[np.ndarray] = field(default_factory=list)  # decoded pages (original crops for corrections)
    probs: np.ndarray | None = None  # the unit's rows of the batch
    rows: list[list[int | None]] = field(default_factory=list)  # per field, the crop row of each digit read
    result: dict | None = None  # set when the unit is settled (a failure, or its readings)


class Reader:
    def __init__(self, settings: Settings, model, recognizer, store: ResultStore, metrics: MetricsBuffer | None = None):
        self.settings, self.model, self.recognizer, self.store = settings, model, recognizer, store
        self.metrics = metrics or MetricsBuffer()
        self.models = ModelWatcher(model, self._load_model if hasattr(model, "card_path") else None,
                                   settings.model_reload_s, self._swapped)  # new model between batches
        self.batcher = DynamicBatcher(
            self.models.predict, settings.batch_max_size, settings.batch_max_delay_ms / 1000, self._on_batch
        )
        self.name = f"{socket.gethostname()}-{os.getpid()}"

    @classmethod
    def setup(cls, settings: Settings, client=None) -> "Reader":
        """Load the model once per process (ONNX Runtime on CPU, torch on CUDA; see worker.engine)."""
        from worker.engine import DigitModel
        from worker.recognition import Recognizer

        model = DigitModel.serving(settings, threads=settings.worker_model_threads or None)
        client = client or redis.Redis.from_url(settings.redis_url, health_check_interval=10)
        store = ResultStore(client, settings.redis_prefix, settings.result_ttl_s)
        return cls(settings, model, Recognizer(model, settings), store)

    def _load_model(self):
        from worker.engine import DigitModel

        s = self.settings
        return DigitModel.serving(s, self.model.card_path, threads=s.worker_model_threads or None)

    def _swapped(self, model) -> None:
        self.model = model
        if hasattr(self.recognizer, "_model"):
            self.recognizer._model = model

    def info(self) -> dict:
        """What the heartbeat says about this worker (``/api/ready`` shows it)."""
        return {"name": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                "model_version": self.model.version, "runtime": getattr(self.model, "runtime", "?"),
                "device": getattr(self.model, "device", "?"), "batch_max_size": self.batcher.max_size,
                "batch_max_delay_ms": self.batcher.max_delay_s * 1000}

    def close(self) -> None:
        self.batcher.stop()

    # --- the task body ---------------------------------------------------------------------------

    def run(self, job_id: str, units: list[int], count_delivery: bool = True, redelivered: bool = False) -> None:
        """The task body: read these units of one job and store their results. Idempotent: units already
        stored are skipped, so a redelivered task only does what is left. ``count_delivery`` is False
        when the task re-runs after a Redis outage (same delivery, not a crash). ``redelivered``: the
        broker says this message came back (its worker died holding it, perhaps before it began)."""
        job, done = self.store.job_and_done(job_id, units)
        if job is None:  # deleted (or expired) while queued: nothing to do
            log.info("job %s is gone; dropping units %s", job_id, units)
            return
        works = self.claim(job, units, count_delivery, done, redelivered)
        for w in works:
            if w.result is None:
                with self.alone(w, "crops"):
                    w.inks = self.decode(job, w.unit, w.descriptor)
                    w.fields = self.crops(job, w.inks)
        live = [w for w in works if w.result is None]
        for w, probs in zip(live, self.batch(job, live)):
            with self.alone(w, "digits"):
                w.probs = probs
                w.result = self.digits(job, w, probs)
        for w in works:
            self.result(job, w)

    def claim(self, job: JobInfo, units: list[int], count_delivery: bool, done: set[int], redelivered: bool = False) -> list[Work]:
        """The units still to do (not in ``done``, those already stored), each with its delivery counted:
        a unit whose deliveries keep killing workers (a decoder crash, out of memory) is failed after
        ``max_attempts`` instead of looping."""
        todo = sorted(set(units) - done)
        works = []
        for u in todo:
            begun = self.store.begin(job.id, u, count=count_delivery)
            if begun is None:
                return []
            attempts, descriptor = begun
            work = Work(u, descriptor=descriptor)
            if count_delivery and (attempts > 1 or redelivered):
                self.metrics.inc("units_redelivered")
            if attempts > self.settings.max_attempts:
                work.result = failed_result(
                    "worker_crashed", f"reading this item stopped a worker {attempts - 1} times; it was given up")
            works.append(work)
        return works

    @contextmanager
    def alone(self, work: Work, step: str):
        """A step for one unit: its failure becomes that unit's result, not the task's."""
        try:
            yield
        except redis.RedisError:  # not the item's fault: the task waits for Redis (worker.tasks)
            raise
        except InputError as e:
            work.result = failed_result(e.code, e.message)
        except MemoryError:
            work.result = failed_result("too_large", "the item is too large to read")
        except Exception as e:
            log.exception("unit %d failed in %s", work.unit, step)
            work.result = failed_result("internal_error", f"reading this item failed ({type(e).__name__}: {e})"[:300])

    # --- the named steps ----------------------------------------------------------------------------

    def decode(self, job: JobInfo, u: int, unit: dict | None) -> list[np.ndarray]:
        """Uploaded bytes -> ink maps (one per page the unit refers to; boxes have many). ``unit``: the
        unit's descriptor, read when the unit was claimed (None: it is missing)."""
        if unit is None:
            raise InputError("missing_unit", f"item {u} of the job is missing", 422)
        inks = []
        for ref in unit["refs"]:
            data = self.store.blob(job.id, ref["file"], cache=ref.get("pages", 1) > 1)
            if data is None:
                raise InputError("missing_upload", f"{ref['name']}: the uploaded bytes are gone", 422)
            inks.append(load_page(data, ref["name"], ref["page"], self.settings))
        return inks

    def crops(self, job: JobInfo, inks: list[np.ndarray]) -> list[Any]:
        """Ink maps -> fields of digit crops. Boxes make one field; a form page may hold several."""
        if job.kind == "boxes":
            return [self.recognizer.cut_boxes(inks)]
        return [f for ink in inks for f in self.recognizer.cut(ink, job.kind)]

    def batch(self, job: JobInfo, works: list[Work]) -> list[np.ndarray]:
        """All crops of this task, as one request to the batcher, which merges it with the crops of other
        jobs' tasks into one forward pass (logits -> calibrated probabilities inside the model). Returns
        each unit's rows. If the model itself fails, every unit of the task fails with it."""
        sizes = [sum(len(f.crops) for f in w.fields) for w in works]
        crops = [f.crops for w in works for f in w.fields]
        try:
            probs = self.batcher.predict(np.concatenate(crops)) if sum(sizes) else np.zeros((0, 10), np.float32)
        except Exception as e:
            log.exception("the model failed on job %s", job.id)
            for w in works:
                w.result = failed_result("model_error", f"the model failed on this item ({type(e).__name__})")
            return []
        return np.split(probs, np.cumsum(sizes)[:-1])

    def digits(self, job: JobInfo, work: Work, probs: np.ndarray) -> dict:
        """Probabilities -> readings (digits, confidence, alternatives, phone rules), one per field."""
        readings, work.rows, start = [], [], 0
        for f in work.fields:
            n = len(f.crops)
            reading, rows = self.recognizer.read_with_rows(f, probs[start : start + n], job.region)
            readings.append(reading.model_dump(mode="json"))
            work.rows.append(rows)
            start += n
        version = getattr(probs, "model_version", "") or self.model.version  # the model that made these probs
        for r in readings:
            r["model_version"] = version
        return {"status": "succeeded", "readings": readings, "error": None, "finished_at": now()}

    def result(self, job: JobInfo, work: Work) -> None:
        """Store the unit's result (once, whatever happens), with its crops, and record how long it took."""
        stored = self.store.save(job.id, work.unit, {**work.result, "worker": self.name}, self.keep_crops(job, work))
        if not stored.stored:
            return
        self.metrics.inc("units_failed" if work.result["status"] == "failed" else "units_succeeded")
        self.metrics.observe("unit_seconds", time.perf_counter() - work.started)
        self.metrics.observe("item_latency_seconds", max(0.0, now() - job.created_at))
        if stored.finished:
            self.metrics.inc("jobs_finished")
            self.metrics.observe("job_latency_seconds", max(0.0, now() - job.created_at))

    def keep_crops(self, job: JobInfo, work: Work) -> dict[str, bytes] | None:
        """The digits' crop records, stored beside the result (job TTL) so corrections can become training
        samples. Best effort: a unit's result never depends on it. Nothing is kept when corrections are off."""
        if not self.settings.corrections_enabled or work.result["status"] != "succeeded" or work.probs is None:
            return None
        try:
            return unit_crops(work.unit, job.kind, work.inks, work.fields, work.rows, work.result["readings"])
        except Exception:
            log.warning("unit %d of job %s: crops not kept for corrections", work.unit, job.id, exc_info=True)
            return None

    def _on_batch(self, stats: BatchStats) -> None:
        self.metrics.observe("batch_size", stats.size)
        self.metrics.observe("batch_requests", stats.requests)
        self.metrics.observe("batch_wait_seconds", stats.wait_s)
        self.metrics.observe("batch_seconds", stats.run_s)
