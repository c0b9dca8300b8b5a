"""A dynamic batcher in the manner of Triton's: many callers, one forward pass.

Task threads of a worker (they belong to different jobs) each hand in the digit crops of their item
and wait. One batcher thread takes the first waiting request, keeps gathering until the batch holds
``max_size`` crops or ``max_delay_s`` has passed since that first request arrived, runs the model once
on the concatenation and hands every caller its own rows back. While the model runs, new requests
queue up, so under load the batches fill by themselves and the delay is rarely waited out.

Why not celery-batches: it batches whole tasks (not crops), flushes on a repeating timer rather than
"delay since the first request", and runs decode, cut and model in one sequential call; here decoding
and cutting run in the task threads while the model works on the previous batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Request:
    crops: np.ndarray
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What one forward pass looked like; handed to ``on_batch`` (metrics)."""

    size: int  # crops in the pass
    requests: int  # callers served by it
    wait_s: float  # from the first request's arrival to the start of the pass
    run_s: float  # the forward pass itself


class DynamicBatcher:
    """``predict`` maps (N,28,28) float32 crops to (N,10) probabilities; it is only ever called from one thread."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_size: int, max_delay_s: float,
                 on_batch: Callable[[BatchStats], None] | None = None):
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.predict_fn, self.max_size, self.max_delay_s = predict, max_size, max_delay_s
        self.on_batch = on_batch
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._stopped = False
        self._thread.start()

    def submit(self, crops: np.ndarray) -> Future:
        """Queue crops (n,28,28); the future resolves to their (n,10) probabilities."""
        if self._stopped:
            raise RuntimeError("the batcher is stopped")
        request = _Request(np.asarray(crops, dtype=np.float32).reshape(-1, 28, 28))
        if len(request.crops) == 0:  # nothing to run: answer at once, do not hold up a batch
            request.future.set_result(np.zeros((0, 10), np.float32))
        else:
            self._queue.put(request)
        return request.future

    def predict(self, crops: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """Blocking form of :meth:`submit`, for task threads."""
        return self.submit(crops).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is queued, then end the thread."""
        self._stopped = True
        self._queue.put(None)
        self._thread.join(timeout)

    # --- the batcher thread --------------------------------------------------------------------

    def _loop(self) -> None:
        pending: _Request | None = None  # a request that did not fit into the previous batch
        while True:
            first = pending or self._queue.get()
            pending = None
            if first is None:
                return
            batch, size = [first], len(first.crops)
            deadline = first.arrived + self.max_delay_s
            stop = False
            while size < self.max_size:
                try:
                    wait = deadline - time.perf_counter()
                    nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if size + len(nxt.crops) > self.max_size:
                    pending = nxt  # starts the next batch; a request is never split across passes
                    break
                batch.append(nxt)
                size += len(nxt.crops)
            self._run(batch, size)
            if stop:
                self._drain()
                return

    def _drain(self) -> None:
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if request is not None:
                self._run([request], len(request.crops))

    def _run(self, batch: list[_Request], size: int) -> None:
        started = time.perf_counter()
        try:
            crops = batch[0].crops if len(batch) == 1 else np.concatenate([r.crops for r in batch])
            probs = self._forward(crops)
        except Exception as e:  # a model failure fails these callers, never the thread
            log.exception("forward pass over %d crops failed", size)
            for r in batch:
                r.future.set_exception(e)
            return
        run_s = time.perf_counter() - started
        start = 0
        for r in batch:
            r.future.set_result(probs[start : start + len(r.crops)])
            start += len(r.crops)
        if self.on_batch is not None:
            try:
                self.on_batch(BatchStats(size, len(batch), started - batch[0].arrived, run_s))
            except Exception:
                log.exception("on_batch callback failed")

    def _forward(self, crops: np.ndarray) -> np.ndarray:
        """One pass, or a few of at most max_size when a single caller brought more crops than that."""
        if len(crops) <= self.max_size:
            return self.predict_fn(crops)
        return np.concatenate([self.predict_fn(crops[i : i + self.max_size]) for i in range(0, len(crops), self.max_size)])
