"""``GET /metrics``: the gateway's own counters plus the fleet's, read from Redis at scrape time.

- Gateway: requests and their latency by route, jobs and units accepted, requests refused.
- Queue: depth (tasks waiting, by priority) and live workers, read when scraped.
- Workers: batch sizes, batch wait and run time, unit and end-to-end latencies, unit outcomes, as pushed
  by every worker into one Redis hash (see ``worker.metrics``).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.metrics import COUNTERS, HISTOGRAMS, bucket_field

NS = "phonereader"
disable_created_metrics()  # *_created series are noise here


class FleetCollector:
    """Renders the last snapshot taken by :meth:`GatewayMetrics.refresh` (scrape handlers are sync)."""

    def __init__(self) -> None:
        self.queue: dict[str, int] = {}
        self.workers: list[dict] = []
        self.pushed: dict[str, float] = {}

    def collect(self):
        depth = GaugeMetricFamily(f"{NS}_queue_depth", "Tasks waiting in the queue (not yet taken by a worker).",
                                  labels=["priority"])
        for priority, n in self.queue.items():
            depth.add_metric([priority], n)
        yield depth
        workers = GaugeMetricFamily(f"{NS}_workers", "Workers with a live heartbeat, by model version.",
                                    labels=["model_version"])
        versions: dict[str, int] = {}
        for w in self.workers:
            versions[w.get("model_version", "?")] = versions.get(w.get("model_version", "?"), 0) + 1
        for version, n in versions.items():
            workers.add_metric([version], n)
        yield workers
        for name, (help_text, bounds) in HISTOGRAMS.items():
            buckets, running = [], 0.0
            for le in [*bounds, "+Inf"]:
                running += self.pushed.get(bucket_field(name, le), 0.0)
                buckets.append((str(float(le)) if le != "+Inf" else "+Inf", running))
            yield HistogramMetricFamily(f"{NS}_{name}", help_text, buckets=buckets,
                                        sum_value=self.pushed.get(f"{name}:sum", 0.0))
        for name, help_text in COUNTERS.items():
            yield CounterMetricFamily(f"{NS}_{name}", help_text, value=self.pushed.get(name, 0.0))


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(f"{NS}_http_requests", "HTTP requests by route and status.",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram(f"{NS}_http_request_seconds", "HTTP request latency by route.", ["route"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=r)
        self.jobs = Counter(f"{NS}_jobs_created", "Jobs accepted, by kind.", ["kind"], registry=r)
        self.units = Counter(f"{NS}_units_submitted", "Units (images, pages, entries) accepted.", registry=r)
        self.refused = Counter(f"{NS}_jobs_refused", "Submissions refused, by reason.", ["reason"], registry=r)
        self.fleet = FleetCollector()
        r.register(self.fleet)

    def refresh(self, queue: dict[str, int], workers: list[dict], pushed: dict[str, float]) -> None:
        self.fleet.queue, self.fleet.workers, self.fleet.pushed = queue, workers, pushed


class RequestMetrics:
    """ASGI middleware: count and time every request by its route template (not its raw path, which
    would make one series per job id)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("/static" if scope["path"].startswith("/static/") else "other")
            self.metrics.requests.labels(scope["method"], path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)
