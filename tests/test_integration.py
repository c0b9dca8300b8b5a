"""The real service over HTTP: a Redis server, two real `phonereader worker` processes and the gateway
under uvicorn (tests/service.py), fed with images made from MNIST test digits.

Every reading the service returns must equal what the recognition library reads offline from the same
bytes (same model, one process, no queue): so batching across jobs and workers, chunking and ordering
change nothing. The truth (the MNIST labels) is checked too, loosely, since the model is not perfect.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.images import zipped
from tests.service import service_fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]
service = service_fixture(scope="module", workers=2, env={"PHONEREADER_MAX_UPLOAD_BYTES": str(4 * 2**20)})


# --- images from MNIST test digits ---------------------------------------------------------------------


class Digits:
    """The first MNIST test image of each digit (deterministic), drawn as people would submit them."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, rng_seed: int = 0):
        self.images, self.labels = images, labels
        self.rng = np.random.default_rng(rng_seed)

    def glyph(self, d: str) -> np.ndarray:
        candidates = np.flatnonzero(self.labels == int(d))[:5]
        return self.images[self.rng.choice(candidates)]

    def box_png(self, d: str, transparent: bool = False) -> bytes:
        """A 50x50 canvas box, black ink; on a transparent background when asked (as canvases send it)."""
        ink = np.asarray(Image.fromarray(self.glyph(d)).resize((44, 44), Image.BILINEAR))
        a = np.zeros((50, 50), np.uint8)
        a[3:47, 3:47] = ink
        if transparent:
            rgba = np.zeros((50, 50, 4), np.uint8)
            rgba[..., 3] = a
            return _png(Image.fromarray(rgba, "RGBA"))
        return _png(Image.fromarray(255 - a, "L"))

    def line_png(self, number: str) -> bytes:
        """The number written on one line: dark ink on light paper, a little irregular spacing."""
        h, w = 40, 34 * len(number) + 30
        canvas = np.zeros((h, w), np.uint8)
        x = 15
        for d in number:
            y = int(self.rng.integers(4, 9))
            canvas[y : y + 28, x : x + 28] = np.maximum(canvas[y : y + 28, x : x + 28], self.glyph(d))
            x += 30 + int(self.rng.integers(0, 6))
        im = Image.fromarray(235 - (canvas.astype(np.float32) * 0.85).astype(np.uint8), "L")
        return _png(im.resize((w * 2, h * 2), Image.BILINEAR))


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


NUMBERS = ["2025550143", "4155550199", "6175550123", "3125550166", "7185550177", "2065550188"]


@pytest.fixture(scope="module")
def digits(mnist_test_sample) -> Digits:
    return Digits(*mnist_test_sample)


@pytest.fixture(scope="module")
def offline():
    """The recognition library on its own: what the service must reproduce."""
    from phonereader.config import get_settings
    from phonereader.imageio import load_page
    from worker.engine import DigitModel
    from worker.recognition import Recognizer

    settings = get_settings()
    model = DigitModel.serving(settings, device="cpu", runtime="onnx")
    rec = Recognizer(model, settings)

    def read(files: list[bytes], kind: str, region: str = "US"):
        inks = [load_page(data, f"{i}.png", 0, settings) for i, data in enumerate(files)]
        fields = [rec.cut_boxes(inks)] if kind == "boxes" else [f for ink in inks for f in rec.cut(ink, kind)]
        return [rec.read(f, model.predict_proba(f.crops), region) for f in fields]

    return read


def assert_same_reading(item: dict, reading) -> None:
    assert item["status"] == "succeeded", item
    assert item["digits"] == reading.digits
    assert item["formatted"] == reading.formatted and item["valid"] == reading.valid
    assert item["confidence"] == pytest.approx(reading.confidence, abs=1e-3)
    assert [d["digit"] for d in item["digits_detail"]] == [d.digit for d in reading.digits_detail]


def digit_accuracy(pairs) -> float:
    hits = total = 0
    for got, want in pairs:
        total += len(want)
        hits += sum(a == b for a, b in zip(got or "", want))
    return hits / total


def submit(service, files, kind="auto", **form):
    r = service.client.post("/api/jobs", files=[("files", f) for f in files], data={"kind": kind, **form})
    assert r.status_code == 202, r.text
    return r.json()


# --- the tests ---------------------------------------------------------------------------------------------


def test_ready_lists_both_workers_with_their_model(service):
    r = service.client.get("/api/ready")
    assert r.status_code == 200
    workers = r.json()["workers"]
    assert len(workers) == 2 and all(w["model_version"] for w in workers)


def test_boxes_job(service, digits, offline):
    number = "2025550143"
    files = [digits.box_png(d, transparent=i % 2 == 0) for i, d in enumerate(number)]
    created = submit(service, [(f"{i + 1}.png", f) for i, f in enumerate(files)], kind="boxes")
    assert created["items_total"] == 1
    job = service.wait_for_job(created["id"])
    assert job["status"] == "succeeded" and job["progress"] == {"done": 1, "total": 1}
    [item] = job["items"]
    assert_same_reading(item, offline(files, "boxes")[0])
    assert len(item["digits_detail"]) == 10
    assert digit_accuracy([(item["digits"], number)]) >= 0.8


def test_line_job(service, digits, offline):
    files = [digits.line_png(n) for n in NUMBERS[:3]]
    created = submit(service, [(f"line{i}.png", f) for i, f in enumerate(files)], kind="line")
    job = service.wait_for_job(created["id"])
    assert job["status"] == "succeeded"
    assert [i["source"] for i in job["items"]] == ["line0.png", "line1.png", "line2.png"]
    for item, data in zip(job["items"], files):
        assert_same_reading(item, offline([data], "line")[0])
    assert digit_accuracy([(i["digits"], n) for i, n in zip(job["items"], NUMBERS)]) >= 0.8


def test_zip_bulk_job_shared_by_two_workers_with_one_bad_item(service, digits, offline):
    numbers = [NUMBERS[i % len(NUMBERS)] for i in range(40)]
    lines = [digits.line_png(n) for n in numbers]
    entries = [(f"scans/{i:03d}.png", data) for i, data in enumerate(lines)]
    entries.insert(7, ("scans/007b.png", b"\x89PNG\r\n\x1a\n this is not really a png"))
    created = submit(service, [("batch.zip", zipped(entries))], kind="line")
    assert created["items_total"] == 41

    first = service.client.get(created["status_url"])
    assert first.status_code == 200 and first.headers.get("retry-after")  # unfinished: poll again later
    job = service.wait_for_job(created["id"])
    assert "retry-after" not in service.client.get(created["status_url"]).headers

    assert job["status"] == "partial"
    assert job["progress"] == {"done": 41, "total": 41}
    bad = job["items"][7]
    assert bad["source"] == "batch.zip/scans/007b.png" and bad["status"] == "failed"
    assert bad["error"]["code"] and "007b.png" in bad["error"]["message"]
    good = [i for i in job["items"] if i["index"] != 7]
    assert [i["source"] for i in good] == [f"batch.zip/scans/{i:03d}.png" for i in range(40)]
    for item, data in zip(good, lines):
        assert_same_reading(item, offline([data], "line")[0])
    assert digit_accuracy([(i["digits"], n) for i, n in zip(good, numbers)]) >= 0.8

    # two workers share the queue: both read some of the items, each item was stored exactly once
    import json

    results = service.redis().hgetall(f"{service.prefix}:job:{created['id']}:results")
    assert len(results) == 41
    readers = {json.loads(r).get("worker") for r in results.values()} - {None}
    assert len(readers) == 2, readers


def test_tutorial_recognize_endpoint(service, digits, offline):
    number = "6175550123"
    files = [digits.box_png(d) for d in number]
    form = [(f"{i + 1}.png", (f"{i + 1}.png", data, "image/png")) for i, data in enumerate(files)]
    expected = offline(files, "boxes")[0]

    text = service.client.post("/api/recognize", files=form)
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert text.text == expected.digits

    js = service.client.post("/api/recognize", files=form, headers={"Accept": "application/json"})
    assert js.status_code == 200
    assert js.json()["digits"] == expected.digits and js.json()["id"]

    late = service.client.post("/api/recognize", files=form, params={"timeout": 0.001})
    assert late.status_code == 504
    body = late.json()
    assert body["error"] == "timeout" and body["id"] and late.headers["location"] == body["status_url"]
    assert service.wait_for_job(body["id"])["items"][0]["digits"] == expected.digits  # the job still finishes


def test_unknown_job_is_404(service):
    r = service.client.get("/api/jobs/" + "x" * 24)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_bad_input_corpus_gets_4xx_json_never_500(service, digits):
    png = digits.box_png("3")
    c = service.client
    cases = [
        (c.post("/api/jobs", data={"kind": "line"}), 422, "files"),
        (c.post("/api/jobs", files=[("files", ("a.png", png))], data={"kind": "letters"}), 422, "kind"),
        (c.post("/api/jobs", files=[("files", ("a.png", png))], data={"region": "ZZ"}), 422, "region"),
        (c.post("/api/jobs", files=[("files", ("notes.txt", b"call me maybe"))]), 415, "notes.txt"),
        (c.post("/api/jobs", files=[("files", ("empty.png", b""))]), 422, "empty.png"),
        (c.post("/api/jobs", content=b"--x\r\ngarbage", headers={"content-type": "multipart/form-data; boundary=x"}), (400, 422), None),
        (c.post("/api/jobs", json={"files": []}), 422, "files"),
        (c.post("/api/recognize", files=[("1.png", ("1.png", png)), ("3.png", ("3.png", png))]), 422, "2.png"),
        (c.post("/api/recognize", files=[("photo.jpg", ("photo.jpg", png))]), 422, "photo.jpg"),
        (c.post("/api/recognize", data={"x": "y"}), 422, None),
        (c.post("/api/jobs", content=b"\0" * (6 * 2**20), headers={"content-type": "multipart/form-data; boundary=x"}), 413, None),
        (c.post("/api/jobs", files=[("files", ("big.png", png + b"\0" * (4 * 2**20)))]), 413, None),
        (c.get("/api/jobs/" + "%2e%2e%2f" * 10), 404, None),
    ]
    for r, status, mentions in cases:
        assert r.status_code in (status if isinstance(status, tuple) else (status,)), (r.request.url, r.status_code, r.text)
        body = r.json()
        assert body["error"] and body["message"]
        if mentions:
            assert mentions in body["message"], body


def test_delete_cancels_and_removes(service, digits):
    lines = [digits.line_png(NUMBERS[i % len(NUMBERS)]) for i in range(150)]
    created = submit(service, [("many.zip", zipped([(f"{i}.png", d) for i, d in enumerate(lines)]))], kind="line")
    assert service.client.delete(created["status_url"]).status_code == 204
    assert service.client.get(created["status_url"]).status_code == 404
    assert service.client.delete(created["status_url"]).status_code == 404
    # the tasks still queued for it are dropped by the workers, and leave nothing behind
    r = service.redis()
    deadline = time.monotonic() + 60
    while sum(r.llen(k) for k in (service.queue, f"{service.queue}\x06\x169")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    assert r.keys(f"{service.prefix}:job:{created['id']}*") == []


def test_metrics_show_queue_batches_and_latencies(service):
    time.sleep(2.5)  # workers push their metrics with each heartbeat
    text = service.client.get("/metrics").text
    assert "phonereader_queue_depth{" in text
    count = [line for line in text.splitlines() if line.startswith("phonereader_batch_size_count")]
    assert count and float(count[0].split()[-1]) > 0
    assert "phonereader_job_latency_seconds_bucket" in text and "phonereader_workers{" in text
