"""Worker unit tests: the dynamic batcher, idempotent result writes, and a job's whole life on fakeredis
(gateway creates it, the worker's pipeline reads it, redelivery and cancellation do no harm).

The model and recogniser here are small stand-ins whose answer is known from the image (a stripe's gray
level is its digit), so the tests check the plumbing: that every unit gets back exactly its own
probabilities however the batcher mixes them. tests/test_integration.py runs the real model.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass

import fakeredis
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from api.jobstore import Keys, failed_result
from phonereader.config import Settings
from phonereader.imageio import InputError
from phonereader.schemas import DigitDetail, Reading
from worker.batcher import DynamicBatcher
from worker.metrics import MetricsBuffer
from worker.pipeline import Reader
from worker.results import ResultStore


# --- stand-ins for the model and the recogniser ---------------------------------------------------------


def stripes_png(digits: str) -> bytes:
    """One 10-px column per digit; its gray level encodes the digit (ink = (d + 1) / 11)."""
    a = np.full((20, 10 * len(digits)), 255, np.uint8)
    for i, d in enumerate(digits):
        a[:, 10 * i : 10 * i + 10] = round(255 * (1 - (int(d) + 1) / 11))
    buf = io.BytesIO()
    Image.fromarray(a, "L").save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Field:
    crops: np.ndarray


class StripeModel:
    version = "stripes-1"
    runtime, device = "numpy", "cpu"

    def __init__(self):
        self.batches: list[int] = []

    def predict_proba(self, crops: np.ndarray) -> np.ndarray:
        self.batches.append(len(crops))
        d = np.clip(np.rint(crops.reshape(len(crops), -1).mean(axis=1) * 11 - 1), 0, 9).astype(int)
        return np.eye(10, dtype=np.float32)[d]


class StripeRecognizer:
    """cut: one crop per 10-px column. A 'form' image cuts into two fields (left and right halves)."""

    def cut(self, ink: np.ndarray, kind: str):
        cols = [ink[:, i : i + 10].mean() for i in range(0, ink.shape[1], 10)]
        crops = np.stack([np.full((28, 28), c, np.float32) for c in cols])
        if ink.mean() > 0.999:
            raise InputError("poison", "a test image that always fails", 422)
        if kind == "form":
            half = len(crops) // 2
            return [Field(crops[:half]), Field(crops[half:])]
        return [Field(crops)]

    def cut_boxes(self, inks):
        return Field(np.concatenate([self.cut(ink, "boxes")[0].crops for ink in inks]))

    def read_with_rows(self, field, probs, region) -> tuple[Reading, list[int]]:
        digits = "".join(str(int(p.argmax())) for p in probs)
        detail = [DigitDetail(digit=c, confidence=1.0, box=(0, 0, 1, 1)) for c in digits]
        reading = Reading(kind="line", digits=digits, confidence=1.0, needs_review=False, digits_detail=detail,
                          region=region, model_version="stripes-1")
        return reading, list(range(len(digits)))  # one crop per digit, in order


# --- the batcher ----------------------------------------------------------------------------------------


def test_batcher_merges_concurrent_requests_and_returns_each_its_rows():
    model = StripeModel()
    batcher = DynamicBatcher(model.predict_proba, max_size=64, max_delay_s=0.05)
    results, errors = {}, []

    def caller(i):
        digits = f"{i % 10}{(i * 3) % 10}{(i * 7) % 10}"
        crops = np.stack([np.full((28, 28), (int(d) + 1) / 11, np.float32) for d in digits])
        try:
            results[i] = ("".join(str(p.argmax()) for p in batcher.predict(crops, timeout=5)), digits)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.stop()
    assert not errors
    assert all(got == want for got, want in results.values()) and len(results) == 20
    assert sum(model.batches) == 60
    assert max(model.batches) > 3, model.batches  # requests were merged
    assert max(model.batches) <= 64


def test_batcher_respects_max_size_and_splits_an_oversized_request():
    model = StripeModel()
    batcher = DynamicBatcher(model.predict_proba, max_size=8, max_delay_s=0.0)
    probs = batcher.predict(np.zeros((20, 28, 28), np.float32), timeout=5)
    assert probs.shape == (20, 10) and model.batches == [8, 8, 4]
    assert batcher.predict(np.zeros((0, 28, 28), np.float32), timeout=1).shape == (0, 10)
    batcher.stop()


def test_batcher_waits_at_most_max_delay_for_company():
    batcher = DynamicBatcher(StripeModel().predict_proba, max_size=1000, max_delay_s=0.05)
    t0 = time.perf_counter()
    batcher.predict(np.zeros((2, 28, 28), np.float32), timeout=5)
    elapsed = time.perf_counter() - t0
    batcher.stop()
    assert 0.04 <= elapsed < 1.0


def test_a_failing_model_fails_its_callers_not_the_batcher():
    calls = []

    def predict(x):
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return np.zeros((len(x), 10), np.float32)

    batcher = DynamicBatcher(predict, max_size=8, max_delay_s=0)
    with pytest.raises(RuntimeError):
        batcher.predict(np.zeros((2, 28, 28), np.float32), timeout=5)
    assert batcher.predict(np.zeros((2, 28, 28), np.float32), timeout=5).shape == (2, 10)
    batcher.stop()


# --- result store -----------------------------------------------------------------------------------------


def test_metrics_buffer_keeps_deltas_when_redis_is_away():
    m = MetricsBuffer()
    m.observe("batch_size", 40)
    m.inc("units_succeeded", 2)

    class Down:
        def pipeline(self, transaction=False):
            raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        m.flush(Down(), "k")
    r = fakeredis.FakeRedis()
    m.flush(r, "k")
    assert float(r.hget("k", "batch_size:le=64")) == 1 and float(r.hget("k", "units_succeeded")) == 2
    assert float(r.hget("k", "batch_size:sum")) == 40


# --- a job's life: gateway -> worker pipeline -> gateway, on one fake Redis ------------------------------------


class RecordingQueue:
    def __init__(self):
        self.sent = []

    async def depth(self):
        return {"high": 0, "bulk": 0}

    async def send(self, job_id, units):
        self.sent.append((job_id, units))
        return 1


@pytest.fixture
def stack():
    """(gateway client, reader, queue, sync redis) sharing one fake Redis server."""
    server = fakeredis.FakeServer()
    settings = Settings(redis_prefix="w", batch_max_size=32, batch_max_delay_ms=1, max_attempts=2)
    queue = RecordingQueue()
    app = create_app(settings, client=fakeredis.FakeAsyncRedis(server=server), queue=queue)
    sync = fakeredis.FakeRedis(server=server)
    model = StripeModel()
    reader = Reader(settings, model, StripeRecognizer(), ResultStore(sync, "w", settings.result_ttl_s))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, reader, queue, sync
    reader.close()


def run_all(reader, queue):
    for job_id, units in queue.sent:
        reader.run(job_id, units)


def submit(client, files, kind="line"):
    r = client.post("/api/jobs", files=[("files", f) for f in files], data={"kind": kind})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_units_of_many_jobs_are_read_and_stored_in_order(stack):
    client, reader, queue, _ = stack
    a = submit(client, [("a1.png", stripes_png("0123")), ("a2.png", stripes_png("98765"))])
    b = submit(client, [("b.png", stripes_png("5550100"))])
    # run the tasks concurrently, as a worker's threads would, so the batcher mixes the jobs
    threads = [threading.Thread(target=reader.run, args=args) for args in queue.sent]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ja, jb = client.get(f"/api/jobs/{a}").json(), client.get(f"/api/jobs/{b}").json()
    assert ja["status"] == jb["status"] == "succeeded"
    assert [i["digits"] for i in ja["items"]] == ["0123", "98765"]
    assert jb["items"][0]["digits"] == "5550100" and jb["items"][0]["model_version"] == "stripes-1"
    assert ja["progress"] == {"done": 2, "total": 2} and ja["finished_at"] is not None
    assert "retry-after" not in client.get(f"/api/jobs/{a}").headers


def test_a_redelivered_task_does_not_count_twice(stack):
    client, reader, queue, sync = stack
    job = submit(client, [("a.png", stripes_png("12")), ("b.png", stripes_png("34"))])
    run_all(reader, queue)
    first = client.get(f"/api/jobs/{job}").json()
    run_all(reader, queue)  # every task delivered a second time
    reader.store.save(job, 0, failed_result("late", "a late duplicate write"))  # and a stray duplicate write
    again = client.get(f"/api/jobs/{job}").json()
    assert again["progress"] == {"done": 2, "total": 2}
    assert again["items"] == first["items"]


def test_a_message_the_broker_redelivers_counts_its_units_even_if_never_begun(stack):
    """A worker killed while holding prefetched tasks never began them; the broker flags them redelivered."""
    client, reader, queue, _ = stack
    job = submit(client, [("a.png", stripes_png("12")), ("b.png", stripes_png("34"))])
    reader.metrics.take()
    (job_id, units), = queue.sent
    reader.run(job_id, units, redelivered=True)
    assert reader.metrics.take().get("units_redelivered") == len(units) == 2
    assert client.get(f"/api/jobs/{job}").json()["progress"] == {"done": 2, "total": 2}


def test_boxes_are_one_number_and_a_form_gives_one_item_per_field(stack):
    client, reader, queue, _ = stack
    boxes = submit(client, [("1.png", stripes_png("4")), ("2.png", stripes_png("2"))], kind="boxes")
    form = submit(client, [("page.png", stripes_png("123456")), ("other.png", stripes_png("77"))], kind="form")
    run_all(reader, queue)
    assert client.get(f"/api/jobs/{boxes}").json()["items"][0]["digits"] == "42"
    items = client.get(f"/api/jobs/{form}").json()["items"]
    assert [(i["index"], i["unit"], i["field"], i["source"], i["digits"]) for i in items] == [
        (0, 0, 0, "page.png", "123"), (1, 0, 1, "page.png", "456"), (2, 1, 0, "other.png", "7"), (3, 1, 1, "other.png", "7")]


def test_one_bad_item_fails_alone_and_the_job_is_partial(stack):
    client, reader, queue, _ = stack
    blank = io.BytesIO()
    Image.new("L", (30, 20), 0).save(blank, "PNG")  # all ink: the stand-in recogniser refuses it
    truncated = stripes_png("99")[:40]  # header intact, pixel data cut off
    job = submit(client, [("good.png", stripes_png("31")), ("poison.png", blank.getvalue()), ("cut.png", truncated)])
    run_all(reader, queue)
    j = client.get(f"/api/jobs/{job}").json()
    assert j["status"] == "partial"
    assert [(i["status"], (i["error"] or {}).get("code")) for i in j["items"]][:2] == [
        ("succeeded", None), ("failed", "poison")]
    assert j["items"][2]["status"] == "failed" and j["items"][2]["error"]["code"] in ("truncated", "not_an_image")
    assert "cut.png" in j["items"][2]["error"]["message"]


def test_a_unit_that_keeps_killing_workers_is_given_up(stack):
    client, reader, queue, sync = stack
    job = submit(client, [("a.png", stripes_png("1"))])
    for _ in range(2):  # two deliveries that died before storing anything
        assert reader.store.begin(job, 0) is not None
    run_all(reader, queue)
    item = client.get(f"/api/jobs/{job}").json()["items"][0]
    assert item["status"] == "failed" and item["error"]["code"] == "worker_crashed"


def test_deleted_job_is_dropped_and_late_writes_leave_no_keys(stack):
    client, reader, queue, sync = stack
    job = submit(client, [("a.png", stripes_png("1")), ("b.png", stripes_png("2"))])
    assert client.delete(f"/api/jobs/{job}").status_code == 204
    run_all(reader, queue)  # its tasks were still queued
    reader.store.save(job, 1, {"status": "succeeded", "readings": [], "error": None})  # a write racing the delete
    assert sync.keys(f"w:job:{job}*") == []
    assert client.get(f"/api/jobs/{job}").status_code == 404


def test_finishing_a_job_drops_its_uploads_and_keeps_results_for_the_ttl(stack):
    client, reader, queue, sync = stack
    job = submit(client, [("a.png", stripes_png("5"))])
    keys = Keys("w")
    assert sync.exists(keys.blobs(job))
    pubsub = sync.pubsub()
    pubsub.subscribe(keys.events)
    run_all(reader, queue)
    assert not sync.exists(keys.blobs(job))
    assert 0 < sync.ttl(keys.results(job)) <= 86_400 and 0 < sync.ttl(keys.job(job)) <= 86_400
    messages = [m for m in iter(lambda: pubsub.get_message(timeout=0.2), None) if m["type"] == "message"]
    assert [m["data"] for m in messages] == [job.encode()]


def test_worker_metrics_reach_the_gateway(stack):
    client, reader, queue, sync = stack
    submit(client, [("a.png", stripes_png("123"))])
    run_all(reader, queue)
    reader.metrics.flush(sync, Keys("w").metrics)
    text = client.get("/metrics").text
    assert 'phonereader_batch_size_bucket{le="4.0"} 1.0' in text
    assert "phonereader_units_succeeded_total 1.0" in text
    assert "phonereader_jobs_finished_total 1.0" in text


# --- the sweeper: lost task messages -----------------------------------------------------------------------


def test_sweeper_requeues_units_whose_task_message_was_lost(stack, monkeypatch):
    from worker import sweeper as sweeper_mod
    from worker.celery_app import queue_keys

    client, reader, queue, sync = stack
    job = submit(client, [(f"{i}.png", stripes_png(str(i))) for i in range(3)])
    assert queue.sent == [(job, [0, 1, 2])]
    reader.run(job, [0, 2])  # unit 1's message "vanished" between BRPOP and the unacked record
    assert client.get(f"/api/jobs/{job}").json()["progress"]["done"] == 2

    resent = []
    monkeypatch.setattr(sweeper_mod, "publish", lambda app, settings, job_id, units, pri: resent.append((job_id, units)))
    sw = sweeper_mod.Sweeper(reader.store, None, reader.settings, "w1", reader.metrics)

    assert sw.sweep() == 0  # the job was active a moment ago: its unit may still be in a worker's hands
    sw.stall_s = 0
    sync.lpush(queue_keys(reader.settings)[1], b"a waiting task")
    assert sw.sweep() == 0  # something is still queued: the unit may be in there
    sync.delete(queue_keys(reader.settings)[1])

    assert sw.sweep() == 1 and resent == [(job, [1])]
    reader.run(*resent[0])
    assert client.get(f"/api/jobs/{job}").json()["status"] == "succeeded"
    assert sw.sweep() == 0 and sync.zcard("w:active") == 0  # finished jobs leave the active set


def test_sweeper_runs_on_one_worker_at_a_time(stack, monkeypatch):
    from worker import sweeper as sweeper_mod

    _, reader, _, _ = stack
    monkeypatch.setattr(sweeper_mod.Sweeper, "sweep", lambda self: 1)
    a = sweeper_mod.Sweeper(reader.store, None, reader.settings, "a")
    b = sweeper_mod.Sweeper(reader.store, None, reader.settings, "b")
    assert a.maybe_sweep() == 1 and b.maybe_sweep() == 0


def test_a_model_failure_fails_the_task_units_but_not_the_worker(stack):
    client, reader, queue, _ = stack

    def broken(crops):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    reader.batcher.predict_fn = broken
    job = submit(client, [("a.png", stripes_png("12"))])
    run_all(reader, queue)
    item = client.get(f"/api/jobs/{job}").json()["items"][0]
    assert item["status"] == "failed" and item["error"]["code"] == "model_error"
    reader.batcher.predict_fn = StripeModel().predict_proba
    again = submit(client, [("b.png", stripes_png("34"))])
    reader.run(again, [0])
    assert client.get(f"/api/jobs/{again}").json()["items"][0]["digits"] == "34"
