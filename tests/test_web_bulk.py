"""The bulk page (`/bulk`) in headless Chromium, against the real gateway and a real worker.

A zip of handwritten phone numbers (MNIST test digits composed into lines by training/synth.py, plus
one corrupt entry) is chosen with the file picker and a loose image is dropped onto the page. The
progress bar must reach 100 %, the table must hold one row per item showing exactly what the job
says, the corrupt entry must fail alone, and the CSV and JSON downloads must match the job.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import zipfile

import pytest

from tests.service import service_fixture
from tests.webtest import DESKTOP, Console, chromium, needs_chromium, screenshot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.integration, needs_chromium]

service = service_fixture(scope="module", workers=1)
LINES = 8
JOB_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def upload(mnist_dir):
    """The zip (LINES numbers + a corrupt entry), one loose image, and the truth in upload order."""
    from training.synth import DigitPool, make_lines

    samples = make_lines(DigitPool("test", mnist_dir), LINES + 1, seed=7, touch_p=0.0, break_p=0.0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, s in enumerate(samples[:LINES]):
            zf.writestr(f"scans/number-{i:02d}.{'jpg' if s.style == 'photo' else 'png'}", s.image)
        zf.writestr("scans/corrupt.png", b"\x89PNG\r\n\x1a\n this is not an image")
    loose = samples[LINES]
    return {
        "zip": buf.getvalue(),
        "loose_name": "loose." + ("jpg" if loose.style == "photo" else "png"),
        "loose": loose.image,
        "truth": [s.truth for s in samples[:LINES]] + [None, loose.truth],
    }


def drop_file(page, name: str, data: bytes) -> None:
    """Drag a file onto the drop zone, as a person would from their file manager."""
    transfer = page.evaluate_handle(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name));
            return dt;
        }""",
        [name, base64.b64encode(data).decode()],
    )
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event("#dropzone", event, {"dataTransfer": transfer})


def download(page, button: str) -> str:
    with page.expect_download() as info:
        page.locator(button).click()
    return open(info.value.path(), encoding="utf-8").read()


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def open_bulk(chromium, service):
    context = chromium.new_context(base_url=service.url, accept_downloads=True, **DESKTOP)
    page = context.new_page()
    console = Console.watch(page)
    page.goto("/bulk")
    page.wait_for_selector("body[data-ready]")
    return page, console


def choose_zip(page, data: bytes) -> None:
    page.set_input_files("#file-input", [{"name": "numbers.zip", "mimeType": "application/zip", "buffer": data}])


def run_job(page) -> None:
    page.locator("#start").click()
    # (locator waits: the page's CSP forbids the eval that wait_for_function needs)
    page.locator("#status[data-tone]:not([data-busy])").wait_for(timeout=JOB_TIMEOUT_MS)


def test_zip_and_dropped_image_fill_the_table_and_download(chromium, service, upload):
    page, console = open_bulk(chromium, service)
    choose_zip(page, upload["zip"])
    drop_file(page, upload["loose_name"], upload["loose"])
    assert page.locator("#file-list li").count() == 2
    run_job(page)
    total = len(upload["truth"])
    assert page.locator("#progress-text").inner_text() == f"{total} / {total} items (100%)"
    assert page.eval_on_selector("#progress", "p => [p.value, p.max]") == [total, total]
    rows = page.locator("#results tbody tr")
    assert rows.count() == total

    job = json.loads(download(page, "#download-json"))
    assert job == service.client.get(f"/api/jobs/{job['id']}").json() | {"updated_at": job["updated_at"]}
    assert job["status"] == "partial" and job["progress"] == {"done": total, "total": total}
    items = job["items"]
    assert [i["source"] for i in items] == (
        [f"numbers.zip/scans/number-{i:02d}.{n.split('.')[-1]}" for i, n in
         enumerate(zipfile.ZipFile(io.BytesIO(upload["zip"])).namelist()[:LINES])]
        + ["numbers.zip/scans/corrupt.png", upload["loose_name"]]
    )

    # Every row shows exactly its item: digits, formatted number, review flag, error.
    for item, row in zip(items, rows.all()):
        cells = row.locator("td").all_inner_texts()
        assert cells[2] == item["source"]
        if item["status"] == "failed":
            assert row.get_attribute("data-status") == "failed" and cells[7] == "failed"
            assert item["error"]["message"] in cells[8]
        else:
            assert cells[3] == item["digits"] and cells[4] == (item["formatted"] or "")
            flag = "⚠ review" if item["needs_review"] else "⚠ invalid" if item["valid"] is False else "✓ ok"
            assert cells[7] == flag
    failed = [i["source"] for i in items if i["status"] == "failed"]
    assert failed == ["numbers.zip/scans/corrupt.png"]

    # The readings are the handwriting, not noise: most digits right across the batch.
    pairs = [(t, i["digits"]) for t, i in zip(upload["truth"], items) if t is not None]
    errors = sum(edit_distance(t, d or "") for t, d in pairs)
    assert errors / sum(len(t) for t, _ in pairs) < 0.15, pairs

    rows_csv = list(csv.DictReader(io.StringIO(download(page, "#download-csv"))))
    assert [r["digits"] for r in rows_csv] == [i["digits"] or "" for i in items]
    assert [r["source"] for r in rows_csv] == [i["source"] for i in items]

    # Thumbnails: every readable image (zip entries and the dropped file) is cropped client-side.
    for row in rows.all():
        row.scroll_into_view_if_needed()
    page.locator("#results canvas.thumb").nth(total - 2).wait_for(timeout=10_000)
    assert page.locator("#results canvas.thumb").count() == total - 1  # all but the corrupt entry
    page.locator("#results").scroll_into_view_if_needed()
    screenshot(page, "bulk-results")

    page.locator("#only-review").check()
    flagged = sum(1 for i in items if i["status"] == "failed" or i["needs_review"] or i["valid"] is False)
    assert sum(1 for r in rows.all() if r.is_visible()) == flagged
    page.locator("#only-review").uncheck()

    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), "the page is wider than a phone"
    screenshot(page, "bulk-results-phone")
    console.assert_clean()


def test_refused_upload_shows_the_servers_reason(chromium, service):
    """A file the gateway refuses (here: not an image at all) gets its 4xx message on the page."""
    page, console = open_bulk(chromium, service)
    page.set_input_files("#file-input", [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"call me"}])
    run_job(page)
    text = page.locator("#status").inner_text()
    assert "notes.txt" in text, text
    assert page.locator("#start").is_enabled()
    screenshot(page, "bulk-refused")
    console.assert_clean(allow=r"/api/jobs")


def test_a_person_corrects_a_row_and_the_job_and_downloads_follow(chromium, service, upload):
    """Press an item's digits, type the true number, Enter: the row, the job on the server and the CSV all
    carry the correction, and the model's reading is kept beside it."""
    page, console = open_bulk(chromium, service)
    choose_zip(page, upload["zip"])
    run_job(page)

    job_id = json.loads(download(page, "#download-json"))["id"]
    item = next(i for i in service.client.get(f"/api/jobs/{job_id}").json()["items"] if i["status"] == "succeeded")
    read = item["digits"]
    truth = upload["truth"][item["index"]]
    # the true number when it has as many digits as were read, else the reading with its last digit changed
    fixed = truth if len(truth) == len(read) and truth != read else read[:-1] + str((int(read[-1]) + 1) % 10)
    row = page.locator(f'#results tbody tr[data-index="{item["index"]}"]')

    # a wrong count is refused on the page, naming what is wrong, and nothing is sent
    row.locator("button.digits-button").click()
    row.locator("input.digits-edit").fill(read[:-1])
    row.locator("input.digits-edit").press("Enter")
    assert f"exactly {len(read)} digits" in page.locator("#status").inner_text()
    assert row.locator("button.digits-button").inner_text() == read

    row.locator("button.digits-button").click()
    row.locator("input.digits-edit").fill(fixed)
    row.locator("input.digits-edit").press("Enter")
    page.locator("#status[data-tone=ok]").wait_for(timeout=10_000)
    assert "saved" in page.locator("#status").inner_text()
    assert row.locator("button.digits-button").inner_text() == fixed
    assert row.locator(".corrected-mark").inner_text() == "corrected"
    screenshot(page, "bulk-corrected")

    server = service.client.get(f"/api/jobs/{job_id}").json()["items"][item["index"]]
    assert server["digits"] == fixed and server["model_digits"] == read
    assert server["user_corrected"] == [p for p, (a, b) in enumerate(zip(read, fixed)) if a != b]
    assert server["needs_review"] is False
    rows_csv = list(csv.DictReader(io.StringIO(download(page, "#download-csv"))))
    assert rows_csv[item["index"]]["digits"] == fixed and rows_csv[item["index"]]["model_digits"] == read
    console.assert_clean()
