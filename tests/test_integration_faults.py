"""Faults during a job, on the real stack: a worker killed with SIGKILL, Redis killed and restarted
(AOF on). In both cases every accepted unit ends with exactly one result and the job completes.

The visibility timeout is lowered to 10 s here so that tasks held by a dead worker come back quickly;
in production it is PHONEREADER_VISIBILITY_TIMEOUT_S (120 s by default).
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
import zipfile

import pytest
from PIL import Image

from tests.service import service_fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]
service = service_fixture(scope="module", workers=2, env={"PHONEREADER_VISIBILITY_TIMEOUT_S": "10"})


def line_zip(n: int) -> bytes:
    """n small images with a few strokes each: cheap to read, so the test is about delivery, not OCR."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            im = Image.new("L", (160, 40), 255)
            for k in range(1 + i % 5):
                im.paste(0, (10 + 30 * k, 8, 16 + 30 * k, 32))
            data = io.BytesIO()
            im.save(data, "PNG")
            zf.writestr(f"{i:04d}.png", data.getvalue())
    return buf.getvalue()


def start_bulk(service, n: int) -> str:
    r = service.client.post("/api/jobs", files=[("files", ("bulk.zip", line_zip(n)))], data={"kind": "line"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 30
    while service.client.get(f"/api/jobs/{job_id}", params={"detail": "false"}).json()["progress"]["done"] < 10:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return job_id


def assert_complete_once(service, job_id: str, n: int) -> None:
    job = service.wait_for_job(job_id, timeout_s=120)
    assert job["status"] == "succeeded" and job["progress"] == {"done": n, "total": n}
    assert [i["unit"] for i in job["items"]] == list(range(n))
    results = service.redis().hgetall(f"{service.prefix}:job:{job_id}:results")
    assert sorted(int(u) for u in results) == list(range(n))  # one stored result per unit
    assert all(json.loads(r)["status"] == "succeeded" for r in results.values())


def test_worker_killed_with_sigkill_mid_job(service):
    n = 300
    job_id = start_bulk(service, n)
    victim = next(c for c in service.stack.children if c.name.startswith("worker"))
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(10)
    service.stack.children.remove(victim)
    assert_complete_once(service, job_id, n)
    service.add_worker()  # leave two workers for the next test


def test_redis_killed_and_restarted_mid_job(service):
    n = 300
    job_id = start_bulk(service, n)
    redis_child = next(c for c in service.stack.children if c.name == "redis")
    redis_child.proc.send_signal(signal.SIGKILL)  # no shutdown save: only the AOF (fsync every second) remains
    redis_child.proc.wait(10)
    service.stack.children.remove(redis_child)
    time.sleep(1.5)  # accepted before the kill: at least a second old, so on disk

    down = service.client.get(f"/api/jobs/{job_id}")
    assert down.status_code == 503 and int(down.headers["retry-after"]) > 0
    assert down.json()["error"] == "unavailable"
    assert service.client.get("/api/ready").status_code == 503

    service.stack.start_redis(port=int(service.redis_url.rsplit(":", 1)[1].split("/")[0]))
    assert_complete_once(service, job_id, n)
    deadline = time.monotonic() + 30
    while service.client.get("/api/ready").status_code != 200:  # workers heartbeat again by themselves
        assert time.monotonic() < deadline
        time.sleep(0.2)
    r = service.client.post("/api/jobs", files=[("files", ("again.zip", line_zip(3)))], data={"kind": "line"})
    assert r.status_code == 202 and service.wait_for_job(r.json()["id"])["status"] == "succeeded"
