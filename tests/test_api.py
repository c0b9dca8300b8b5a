"""Gateway unit tests: the real FastAPI app on fakeredis, with a queue that records what it is asked to send.

They cover the HTTP contract, upload expansion and the bad-input corpus quickly; tests/test_integration.py
runs the same paths against a real Redis, real workers and uvicorn.
"""

from __future__ import annotations

import io
import json
import zipfile

import fakeredis
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from phonereader.config import Settings
from tests.fixtures.images import needing_zip_version, zipped


# --- files ---------------------------------------------------------------------------------------


def png(width: int = 40, height: int = 30, ink: int = 0) -> bytes:
    im = Image.new("L", (width, height), 255)
    im.paste(ink, (5, 5, width - 5, height - 5))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def tiff(frames: int) -> bytes:
    ims = [Image.new("L", (40, 30), 255 - 10 * i) for i in range(frames)]
    buf = io.BytesIO()
    ims[0].save(buf, "TIFF", save_all=True, append_images=ims[1:])
    return buf.getvalue()


def pdf(pages: int) -> bytes:
    ims = [Image.new("RGB", (200, 100), "white") for _ in range(pages)]
    buf = io.BytesIO()
    ims[0].save(buf, "PDF", save_all=True, append_images=ims[1:])
    return buf.getvalue()


# --- the app -------------------------------------------------------------------------------------


class RecordingQueue:
    """Stands in for Celery: records the tasks a job would get; ``waiting`` sets the reported backlog."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[int]]] = []
        self.waiting = 0

    async def depth(self) -> dict[str, int]:
        return {"high": self.waiting, "bulk": 0}

    async def send(self, job_id: str, units: list[int]) -> int:
        self.sent.extend((job_id, [u]) for u in units)
        return len(units)


@pytest.fixture
def server():
    return fakeredis.FakeServer()


@pytest.fixture
def make_client(server):
    clients = []

    def make(**overrides):
        settings = Settings(redis_prefix="t", **overrides)
        queue = RecordingQueue()
        app = create_app(settings, client=fakeredis.FakeAsyncRedis(server=server), queue=queue)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        client.queue, client.settings = queue, settings
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def post_job(client, files, **form):
    return client.post("/api/jobs", files=[("files", f) for f in files], data=form)


def assert_error(response, status: int, code: str | None = None, mentions: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message"}, body
    if code:
        assert body["error"] == code, body
    if mentions:
        assert mentions in body["message"], body
    return body


# --- submitting and polling -----------------------------------------------------------------------


def test_post_job_returns_202_with_location_and_queues_one_task_per_item(client):
    r = post_job(client, [("a.png", png()), ("b.png", png())], kind="line")
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"id", "status", "status_url", "items_total"}
    assert body["status"] == "queued" and body["items_total"] == 2
    assert r.headers["location"] == body["status_url"] == f"/api/jobs/{body['id']}"
    assert len(body["id"]) >= 22  # >= 128 bits of randomness
    assert client.queue.sent == [(body["id"], [0]), (body["id"], [1])]

    job = client.get(body["status_url"])
    assert job.status_code == 200
    assert job.headers["retry-after"] == "1"
    j = job.json()
    assert j["status"] == "queued" and j["kind"] == "line" and j["region"] == "US"
    assert j["progress"] == {"done": 0, "total": 2}
    assert [(i["index"], i["source"], i["status"]) for i in j["items"]] == [(0, "a.png", "queued"), (1, "b.png", "queued")]
    assert set(j) >= {"id", "status", "created_at", "updated_at", "progress", "items"}
    assert set(j["items"][0]) >= {"index", "source", "status", "digits", "formatted", "valid", "confidence",
                                  "needs_review", "digits_detail", "error"}


def test_zip_expands_in_order_skips_junk_and_fails_bad_entries_alone(client):
    archive = zipped([
        ("scans/", b""),
        ("scans/first.png", png()),
        ("__MACOSX/scans/._first.png", b"junk"),
        ("scans/.DS_Store", b"junk"),
        ("scans/notes.txt", b"hello, not an image"),
        ("scans/inner.zip", zipped([("x.png", png())])),
        ("scans/empty.png", b""),
        ("scans/second.png", png()),
    ])
    buf = io.BytesIO(archive)  # a nameless entry (a damaged directory record; the fuzz run found it) is skipped
    with zipfile.ZipFile(buf, "a") as zf:
        zf.writestr(zipfile.ZipInfo(""), b"no name")
    archive = buf.getvalue()
    r = post_job(client, [("batch.zip", archive)])
    assert r.status_code == 202, r.text
    assert r.json()["items_total"] == 5
    job = client.get(r.json()["status_url"]).json()
    items = [(i["source"], i["status"], (i["error"] or {}).get("code")) for i in job["items"]]
    assert items == [
        ("batch.zip/scans/first.png", "queued", None),
        ("batch.zip/scans/notes.txt", "failed", "unsupported_type"),
        ("batch.zip/scans/inner.zip", "failed", "nested_archive"),
        ("batch.zip/scans/empty.png", "failed", "empty_file"),
        ("batch.zip/scans/second.png", "queued", None),
    ]
    assert job["status"] == "running" and job["progress"] == {"done": 3, "total": 5}
    assert [units for _, units in client.queue.sent] == [[0], [4]]  # failed entries get no task


def test_a_big_bulk_job_is_one_task_per_item_and_reads_back_in_order(client):
    r = post_job(client, [("big.zip", zipped([(f"{i:03d}.png", png()) for i in range(150)]))], kind="line")
    assert r.status_code == 202 and r.json()["items_total"] == 150
    job = client.get(r.json()["status_url"], params={"detail": "false"}).json()
    assert [i["source"] for i in job["items"]] == [f"big.zip/{i:03d}.png" for i in range(150)]
    assert sorted(u for _, (u,) in client.queue.sent) == list(range(150))


def test_tiff_frames_and_pdf_pages_become_items(client):
    r = post_job(client, [("scan.tif", tiff(3)), ("doc.pdf", pdf(2)), ("one.pdf", pdf(1))], kind="form")
    assert r.status_code == 202, r.text
    sources = [i["source"] for i in client.get(r.json()["status_url"]).json()["items"]]
    assert sources == ["scan.tif#1", "scan.tif#2", "scan.tif#3", "doc.pdf#1", "doc.pdf#2", "one.pdf"]


def test_boxes_make_one_item_of_all_files(client):
    r = post_job(client, [(f"{i}.png", png()) for i in range(1, 4)], kind="boxes")
    assert r.status_code == 202 and r.json()["items_total"] == 1
    assert client.get(r.json()["status_url"]).json()["items"][0]["source"] == "1.png … 3.png"
    assert len(client.queue.sent) == 1


def test_a_job_whose_only_item_failed_at_upload_is_finished_at_once(client):
    r = post_job(client, [("broken.zip", b"PK\x03\x04 this is not really a zip")])
    assert r.status_code == 202
    assert r.json()["status"] == "failed"
    job = client.get(r.json()["status_url"])
    assert "retry-after" not in job.headers
    assert job.json()["status"] == "failed" and job.json()["items"][0]["error"]["code"] == "bad_archive"
    assert client.queue.sent == []


def test_a_zip_of_a_version_python_cannot_read_is_a_bad_archive(client):
    """zipfile raises NotImplementedError (not BadZipFile) for a central directory that needs a newer
    zip version; found by the zip fuzz test ("zip file version 6.4")."""
    r = post_job(client, [("new.zip", needing_zip_version(zipped([("a.png", png())])))])
    assert r.status_code == 202 and r.json()["status"] == "failed"
    error = client.get(r.json()["status_url"]).json()["items"][0]["error"]
    assert error["code"] == "bad_archive" and "new.zip" in error["message"] and "6.4" in error["message"]


def test_unknown_and_malformed_ids_are_404_json(client):
    assert_error(client.get("/api/jobs/" + "A" * 24), 404, "not_found")
    assert_error(client.get("/api/jobs/../../etc"), 404)
    assert_error(client.get("/api/jobs/%00"), 404)
    assert_error(client.delete("/api/jobs/" + "B" * 24), 404, "not_found")
    assert_error(client.get("/no/such/page"), 404, "not_found")


def test_delete_removes_every_key_of_the_job(client, server):
    r = post_job(client, [("a.png", png())])
    job_id = r.json()["id"]
    sync = fakeredis.FakeRedis(server=server)
    assert sync.keys(f"t:job:{job_id}*")
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert sync.keys(f"t:job:{job_id}*") == []
    assert_error(client.get(f"/api/jobs/{job_id}"), 404)


# --- bad input: always a 4xx JSON error that names the problem, never a 500 ---------------------------


def test_missing_files_field(client):
    assert_error(client.post("/api/jobs", data={"kind": "line"}), 422, "missing_field", "files")


def test_wrong_kind(client):
    assert_error(post_job(client, [("a.png", png())], kind="banana"), 422, "invalid_field", "kind")


def test_wrong_region(client):
    assert_error(post_job(client, [("a.png", png())], region="XX"), 422, "invalid_field", "region")


def test_unsupported_type_names_the_file(client):
    assert_error(post_job(client, [("a.png", png()), ("report.docx", b"\xd0\xcf\x11\xe0 word")]), 415,
                 "unsupported_type", "report.docx")


def test_empty_file(client):
    assert_error(post_job(client, [("blank.png", b"")]), 422, "empty_file", "blank.png")


def test_too_large_upload(make_client):
    c = make_client(max_upload_bytes=10_000)
    assert_error(post_job(c, [("a.png", png()), ("big.png", png() + b"\0" * 20_000)]), 413, "too_large")
    # far over the limit: refused from Content-Length before the body is read
    assert_error(post_job(c, [("huge.png", b"\0" * 3_000_000)]), 413, "too_large")


def test_too_many_files(make_client):
    c = make_client(max_files=3)
    assert_error(post_job(c, [(f"{i}.png", png()) for i in range(5)]), 413, "too_many_files")


def test_too_many_archive_entries(make_client):
    c = make_client(max_archive_entries=3)
    archive = zipped([(f"{i}.png", png()) for i in range(4)])
    assert_error(post_job(c, [("a.zip", archive)]), 413, "too_many_entries", "a.zip")


def test_zip_bomb_is_capped(make_client):
    c = make_client(max_archive_bytes=100_000)
    bomb = zipped([("bomb.png", b"\0" * 5_000_000)])  # ~5 KB compressed
    assert len(bomb) < 20_000
    assert_error(post_job(c, [("bomb.zip", bomb)]), 413, "archive_too_large", "bomb.zip")


def test_too_many_pages(make_client):
    c = make_client(max_pages=2)
    assert_error(post_job(c, [("scan.tif", tiff(3))]), 413, "too_many_pages", "scan.tif")


def test_garbage_requests_never_get_a_500(client):
    attempts = [
        client.post("/api/jobs", content=b"\x00\x01garbage", headers={"content-type": "multipart/form-data; boundary=zz"}),
        client.post("/api/jobs", content=b"--zz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n\r\n",
                    headers={"content-type": "multipart/form-data; boundary=zz"}),
        client.post("/api/jobs", json={"files": ["a.png"]}),
        client.post("/api/jobs", content=b"files=a.png", headers={"content-type": "application/x-www-form-urlencoded"}),
        client.post("/api/jobs", data={"files": "not a file"}),
        client.post("/api/jobs", files=[("files", ("x", b"\xff\xd8\xff truncated jpeg"))]),
        client.post("/api/jobs", files=[("files", ("", png()))]),
        client.post("/api/recognize", content=b"garbage", headers={"content-type": "multipart/form-data"}),
        client.post("/api/recognize", json={"1.png": "x"}),
        client.get("/api/jobs/" + "x" * 5000),
        client.get("/api/jobs/" + "A" * 24, params={"wait": "-1"}),
        client.get("/api/jobs/" + "A" * 24, params={"wait": "abc"}),
        client.put("/api/jobs"),
    ]
    for r in attempts:
        assert 400 <= r.status_code < 500 or r.status_code == 202, (r.request.url, r.status_code, r.text)
        body = r.json()
        if r.status_code != 202:
            assert body["error"] and body["message"], body


# --- the tutorial's endpoint -----------------------------------------------------------------------


def boxes_form(names):
    return [(name, (name, png(), "image/png")) for name in names]


def test_recognize_rejects_gaps_bad_names_and_nothing(client):
    assert_error(client.post("/api/recognize", files=boxes_form(["1.png", "3.png"])), 422, "missing_box", "2.png")
    assert_error(client.post("/api/recognize", files=boxes_form(["first.png"])), 422, "bad_field_name", "first.png")
    assert_error(client.post("/api/recognize", data={"note": "hi"}), 422, "no_files")
    assert_error(client.post("/api/recognize", files=boxes_form(["0.png", "1.png"])), 422, "missing_box", "0.png")


def test_recognize_times_out_with_504_and_the_job_id(make_client):
    c = make_client(sync_timeout_s=0.3)  # no worker runs in this test
    r = c.post("/api/recognize", files=boxes_form(["1.png", "2.png"]) + [("3.png", (None, "data:image/png;base64,"
               + __import__("base64").b64encode(png()).decode()))])
    body = assert_error(r, 504, "timeout")
    assert r.headers["location"] == f"/api/jobs/{body['id']}"
    job = c.get(f"/api/jobs/{body['id']}").json()
    assert job["kind"] == "boxes" and job["items"][0]["source"] == "1.png … 3.png"


# --- backpressure, Redis down, readiness, metrics, pages -----------------------------------------------


def test_full_queue_answers_503_with_retry_after(make_client):
    c = make_client(queue_limit=10)
    c.queue.waiting = 10
    r = post_job(c, [("a.png", png())])
    assert_error(r, 503, "queue_full")
    assert int(r.headers["retry-after"]) > 0
    c.queue.waiting = 9
    assert post_job(c, [("a.png", png())]).status_code == 202


def test_redis_down_answers_503_with_retry_after():
    import redis.asyncio as aioredis

    settings = Settings(redis_url="redis://127.0.0.1:1/0")
    app = create_app(settings, client=aioredis.Redis(port=1, socket_connect_timeout=0.2), queue=RecordingQueue())
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/jobs/" + "A" * 24)
        assert_error(r, 503, "unavailable")
        assert r.headers["retry-after"]
        assert c.get("/api/ready").status_code == 503
        assert c.get("/api/health").status_code == 200


def test_ready_needs_a_worker_heartbeat(client, server):
    r = client.get("/api/ready")
    assert r.status_code == 503 and r.json()["ready"] is False and r.json()["redis"] is True
    sync = fakeredis.FakeRedis(server=server)
    sync.set("t:worker:w1", json.dumps({"name": "w1", "model_version": "default-123"}), ex=5)
    sync.sadd("t:workers", "w1", "gone")
    r = client.get("/api/ready")
    assert r.status_code == 200 and r.json()["workers"][0]["model_version"] == "default-123"
    assert sync.smembers("t:workers") == {b"w1"}  # the stale name was pruned


def test_metrics_show_queue_depth_batches_and_latency(client, server):
    client.queue.waiting = 7
    sync = fakeredis.FakeRedis(server=server)
    sync.hincrbyfloat("t:metrics", "batch_size:le=64", 3)
    sync.hincrbyfloat("t:metrics", "batch_size:sum", 150)
    sync.hincrbyfloat("t:metrics", "batch_size:count", 3)
    client.get("/api/health")
    text = client.get("/metrics").text
    assert 'phonereader_queue_depth{priority="high"} 7.0' in text
    assert 'phonereader_batch_size_bucket{le="64.0"} 3.0' in text
    assert "phonereader_batch_size_count 3.0" in text
    assert "phonereader_job_latency_seconds_bucket" in text
    assert 'phonereader_http_requests_total{method="GET",route="/api/health",status="200"}' in text


def test_pages_are_served_with_security_headers(client):
    for path in ("/", "/bulk"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
    assert client.get("/docs").status_code == 200
    assert "/api/jobs" in client.get("/openapi.json").json()["paths"]
