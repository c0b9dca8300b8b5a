"""Corrections endpoint and export on the real stack: what a good correction stores, and the 4xx every
malformed or unwelcome one gets. Gateways with other settings (corrections off, no admin token) run
in-process against the same Redis, so they see the same jobs."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from phonereader.config import Settings
from tests import regional
from tests.service import model_available, running_service

pytestmark = [pytest.mark.integration]
TOKEN = "validation-admin-token-42"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    if not model_available():
        pytest.skip("no committed model")
    folder = tmp_path_factory.mktemp("corrections")
    env = {"PHONEREADER_CORRECTIONS_DIR": str(folder), "PHONEREADER_ADMIN_TOKEN": TOKEN}
    with running_service(workers=1, env=env) as s:
        s.folder = folder
        yield s


def boxes_job(svc, n: int = 4, seed: int = 3) -> tuple[str, dict]:
    files = [("files", (f"{i + 1}.png", regional.box_png(ink), "image/png"))
             for i, (_, ink) in enumerate(regional.samples(n, seed))]
    job_id = svc.client.post("/api/jobs", files=files, data={"kind": "boxes"}).json()["id"]
    return job_id, svc.wait_for_job(job_id)["items"][0]


def other(d: str) -> str:
    return str((int(d) + 1) % 10)


def test_a_correction_becomes_a_training_sample(svc):
    job_id, item = boxes_job(svc)
    read = item["digits"]
    assert len(read) == 4 and item["model_version"]
    r = svc.client.post(f"/api/jobs/{job_id}/items/0/corrections",
                        json={"position": 2, "from": read[2], "to": other(read[2]), "digits": read})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["item"]["digits"] == read[:2] + other(read[2]) + read[3:]
    assert [d["digit"] for d in body["item"]["digits_detail"]][2] == other(read[2])
    (saved,) = body["saved"]
    assert saved["file"] == f"training/{other(read[2])}/{job_id}-0-2.png"
    png = svc.folder / saved["file"]
    from PIL import Image

    assert Image.open(png).size == (28, 28)
    assert (svc.folder / "originals" / other(read[2]) / f"{job_id}-0-2.png").is_file()
    line = json.loads((svc.folder / "manifest.jsonl").read_text().splitlines()[-1])
    assert line["job"] == job_id and line["position"] == 2 and line["label"] == other(read[2])
    assert line["from"] == read[2] and line["model_version"] == item["model_version"] and line["time"] > 0
    # the same crop again: 409, whatever the form
    again = svc.client.post(f"/api/jobs/{job_id}/items/0/corrections", json={"mapping": {"2": read[2] if read[2] != other(read[2]) else "0"}})
    assert again.status_code in (409, 422)
    dup = svc.client.post(f"/api/jobs/{job_id}/items/0/corrections", json={"mapping": {"2": other(other(read[2]))}})
    assert dup.status_code == 409 and dup.json()["error"] == "duplicate", dup.text
    # other positions are still open
    ok = svc.client.post(f"/api/jobs/{job_id}/items/0/corrections", json={"mapping": {"0": other(read[0])}})
    assert ok.status_code == 201, ok.text
    assert ok.json()["saved"][0]["from"] == read[0]

    # the job itself now shows what the user said, and what the service read
    shown = svc.client.get(f"/api/jobs/{job_id}").json()["items"][0]
    fixed = other(read[0]) + read[1] + other(read[2]) + read[3:]
    assert shown["digits"] == fixed and shown["model_digits"] == read and shown["user_corrected"] == [0, 2]
    assert [d["digit"] for d in shown["digits_detail"] if not d.get("empty")] == list(fixed)
    assert shown["needs_review"] is False
    glyphs = [d for d in shown["digits_detail"] if not d.get("empty")]
    assert not glyphs[0]["needs_review"] and not glyphs[2]["needs_review"], "a digit a person gave needs no look"
    brief = svc.client.get(f"/api/jobs/{job_id}", params={"detail": "false"}).json()["items"][0]
    assert brief["digits"] == fixed and brief["digits_detail"] == []


@pytest.mark.parametrize("body, status, code", [
    ({"digits": "12a4"}, 422, "invalid_digits"),
    ({"digits": "١٢٣٤"}, 422, "invalid_digits"),  # Arabic-Indic digits are digits to Python, not to us
    ({"digits": "123"}, 422, "wrong_count"),
    ({"digits": "12345"}, 422, "wrong_count"),
    ({"mapping": {"9": "1"}}, 422, "position_out_of_range"),
    ({"mapping": {"-1": "1"}}, 422, "invalid_position"),
    ({"mapping": {"0": "x"}}, 422, "invalid_digits"),
    ({"mapping": {"0": "12"}}, 422, "invalid_digits"),
    ({"mapping": {}}, 422, "missing_field"),
    ({"position": 7, "to": "1"}, 422, "position_out_of_range"),
    ({"position": 0}, 422, "missing_field"),
    ({}, 422, "missing_field"),
    ({"digits": "1234", "evil": "../../x"}, 422, "invalid_field"),
])
def test_malformed_corrections_get_a_4xx_naming_the_problem(svc, body, status, code):
    job_id, _ = boxes_job(svc, seed=11)
    r = svc.client.post(f"/api/jobs/{job_id}/items/0/corrections", json=body)
    assert r.status_code == status and r.json()["error"] == code, r.text
    assert r.json()["message"]


def test_unknown_job_item_and_failed_item(svc):
    r = svc.client.post("/api/jobs/" + "A" * 24 + "/items/0/corrections", json={"digits": "1"})
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    job_id, item = boxes_job(svc, seed=12)
    r = svc.client.post(f"/api/jobs/{job_id}/items/3/corrections", json={"digits": "1"})
    assert r.status_code == 404 and r.json()["error"] == "item_not_found"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.png", regional.box_png(regional.draw("1", np.random.default_rng(0))))
        zf.writestr("b.png", b"\x89PNG\r\n\x1a\n this is not really a png")
    bad = svc.client.post("/api/jobs", files=[("files", ("batch.zip", archive.getvalue(), "application/zip"))])
    job = svc.wait_for_job(bad.json()["id"])
    failed = next(i for i in job["items"] if i["status"] == "failed")
    r = svc.client.post(f"/api/jobs/{job['id']}/items/{failed['index']}/corrections", json={"digits": "1"})
    assert r.status_code == 409 and r.json()["error"] == "item_failed", r.text
    r = svc.client.post(f"/api/jobs/{job_id}/items/0/corrections", json={"digits": item["digits"]})
    assert r.status_code == 422 and r.json()["error"] == "no_change"


def test_export_needs_the_admin_token(svc):
    assert svc.client.get("/api/corrections/export").status_code == 401
    r = svc.client.get("/api/corrections/export", headers={"X-Admin-Token": "wrong"})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = svc.client.get("/api/corrections/export", headers={"X-Admin-Token": TOKEN})
    assert r.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert "manifest.jsonl" in names and any(n.startswith("training/") for n in names)


def _gateway(svc, **settings) -> TestClient:
    s = Settings(redis_url=svc.redis_url, redis_prefix=svc.prefix, queue_name=svc.queue, **settings)
    return TestClient(create_app(s))


def test_corrections_off_refuse_and_write_nothing(svc, tmp_path):
    job_id, item = boxes_job(svc, seed=13)
    with _gateway(svc, corrections_enabled=False, corrections_dir=tmp_path) as client:
        r = client.post(f"/api/jobs/{job_id}/items/0/corrections", json={"mapping": {"0": other(item["digits"][0])}})
        assert r.status_code == 403 and r.json()["error"] == "corrections_disabled"
    assert not any(tmp_path.iterdir())


def test_export_without_a_configured_token_is_off(svc):
    with _gateway(svc, admin_token="") as client:
        r = client.get("/api/corrections/export", headers={"X-Admin-Token": ""})
        assert r.status_code == 403 and r.json()["error"] == "admin_disabled"


def test_workers_keep_no_crops_when_corrections_are_off(tmp_path):
    if not model_available():
        pytest.skip("no committed model")
    with running_service(workers=1, env={"PHONEREADER_CORRECTIONS_ENABLED": "false",
                                         "PHONEREADER_CORRECTIONS_DIR": str(tmp_path)}) as s:
        job_id, item = boxes_job(s, seed=14)
        assert item["model_version"]
        assert not s.redis().exists(f"{s.prefix}:job:{job_id}:crops")
        r = s.client.post(f"/api/jobs/{job_id}/items/0/corrections", json={"mapping": {"0": other(item["digits"][0])}})
        assert r.status_code == 403
    assert not any(tmp_path.iterdir())
