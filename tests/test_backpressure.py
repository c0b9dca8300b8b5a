"""Backpressure in the gateway alone (fakeredis, a queue that reports a backlog). The real-process version,
with paused workers, a flood of uploads and memory figures, is in tests/test_faults.py."""

from __future__ import annotations

import io

import fakeredis
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import api.routes
from api.app import create_app
from phonereader.config import Settings


class BackloggedQueue:
    def __init__(self, waiting: int) -> None:
        self.waiting, self.sent = waiting, []

    async def depth(self) -> dict[str, int]:
        return {"high": 0, "bulk": self.waiting}

    async def send(self, job_id: str, units: list[int]) -> int:
        self.sent.append(job_id)
        return len(units)


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (40, 20), 255).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def client_with(monkeypatch):
    read = []
    original = api.routes.read_uploads

    async def spy(files, settings):
        read.append(len(files))
        return await original(files, settings)

    monkeypatch.setattr(api.routes, "read_uploads", spy)

    def make(waiting: int, limit: int = 10):
        queue = BackloggedQueue(waiting)
        app = create_app(Settings(queue_limit=limit, _env_file=None), client=fakeredis.FakeAsyncRedis(), queue=queue)
        return TestClient(app, raise_server_exceptions=False), queue, read

    return make


def test_a_full_queue_refuses_before_the_upload_is_read(client_with):
    client, queue, read = client_with(waiting=10)
    r = client.post("/api/jobs", files=[("files", ("a.png", png()))])
    assert r.status_code == 503 and r.json()["error"] == "queue_full"
    assert int(r.headers["retry-after"]) > 0
    assert read == [] and queue.sent == [], "the body was read or a task queued for a refused submission"
    r = client.post("/api/recognize", files=[("1.png", ("1.png", png()))])
    assert r.status_code == 503 and "retry-after" in r.headers
    metrics = client.get("/metrics").text
    assert 'phonereader_jobs_refused_total{reason="queue_full"} 2.0' in metrics


def test_below_the_limit_submissions_are_accepted(client_with):
    client, queue, read = client_with(waiting=9)
    r = client.post("/api/jobs", files=[("files", ("a.png", png()))])
    assert r.status_code == 202 and read == [1] and len(queue.sent) == 1
