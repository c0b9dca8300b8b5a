"""Worker metrics, pushed to Redis so the gateway's ``/metrics`` shows the whole fleet in one place.

Workers come and go on many machines and are not scraped themselves: each keeps a small buffer of
histogram buckets and counters and adds it to one Redis hash (HINCRBYFLOAT) with every heartbeat.
The sums are therefore fleet-wide Prometheus counters. ``api.metrics`` reads the hash and renders it.
"""

from __future__ import annotations

import threading
from collections import defaultdict

# name -> (help, bucket upper bounds); exposed as phonereader_<name> histograms
HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    "batch_size": ("Digit crops per forward pass (the dynamic batcher's batch size).",
                   (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)),
    "batch_requests": ("Items (from any jobs) served by one forward pass.", (1, 2, 4, 8, 16, 32, 64, 128)),
    "batch_wait_seconds": ("Time the first crop of a batch waited for the batch to fill.",
                           (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)),
    "batch_seconds": ("Duration of one forward pass.", (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1)),
    "unit_seconds": ("Worker time to read one unit: decode, crops, batch, digits.",
                     (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
    "item_latency_seconds": ("From job submission to this unit's result being stored.",
                             (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)),
    "job_latency_seconds": ("From job submission to its last result.",
                            (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)),
}
# name -> help; exposed as phonereader_<name>_total counters
COUNTERS: dict[str, str] = {
    "units_succeeded": "Units read successfully.",
    "units_failed": "Units that failed (bad input, or a poison unit after max_attempts).",
    "units_redelivered": "Unit deliveries after the first (a worker died or a task was requeued).",
    "units_requeued": "Units re-queued by the sweeper (their task message was lost).",
    "jobs_finished": "Jobs whose last unit was stored.",
}


def bucket_field(name: str, le: float | str) -> str:
    return f"{name}:le={le}"


class MetricsBuffer:
    """Thread-safe local increments, moved to Redis by :meth:`flush` (kept if Redis is unreachable)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._delta: dict[str, float] = defaultdict(float)

    def observe(self, name: str, value: float) -> None:
        bounds = HISTOGRAMS[name][1]
        le = next((b for b in bounds if value <= b), "+Inf")
        with self._lock:
            self._delta[bucket_field(name, le)] += 1
            self._delta[f"{name}:sum"] += value
            self._delta[f"{name}:count"] += 1

    def inc(self, name: str, amount: float = 1) -> None:
        assert name in COUNTERS, name
        with self._lock:
            self._delta[name] += amount

    def take(self) -> dict[str, float]:
        with self._lock:
            delta, self._delta = dict(self._delta), defaultdict(float)
        return delta

    def give_back(self, delta: dict[str, float]) -> None:
        with self._lock:
            for key, value in delta.items():
                self._delta[key] += value

    def flush(self, client, key: str) -> None:
        """Add the buffered deltas to the Redis hash ``key``; on failure keep them for the next flush."""
        delta = self.take()
        if not delta:
            return
        try:
            with client.pipeline(transaction=False) as p:
                for field, value in delta.items():
                    p.hincrbyfloat(key, field, value)
                p.execute()
        except Exception:
            self.give_back(delta)
            raise
