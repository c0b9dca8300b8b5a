"""The corrections loop end to end, on the real stack (Redis, a worker process, the gateway over HTTP):

submit European-style 1s and 7s (tests/regional.py) that the committed model misreads -> correct them the
three ways the API takes -> export the data set with the admin token -> fine-tune the committed model on
MNIST + the export on a tiny CPU budget -> deploy it where the running worker serves from -> the worker
reloads between batches -> fresh samples of the style now read right, every result names the new model,
and MNIST test accuracy has not dropped.
"""

from __future__ import annotations

import json
import time
import zipfile

import numpy as np
import pytest

from phonereader import ROOT
from tests import regional
from tests.service import copy_model, model_available, running_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "test-admin-token-0123456789"
PER_JOB = 10


def cli(args: list[str]) -> str:
    """Run a phonereader command in this process, as typed; fail the test with its output if it fails."""
    from typer.testing import CliRunner

    from phonereader.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def submit_boxes(svc, inks: list[np.ndarray]) -> str:
    files = [("files", (f"{i + 1}.png", regional.box_png(ink), "image/png")) for i, ink in enumerate(inks)]
    r = svc.client.post("/api/jobs", files=files, data={"kind": "boxes"})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def read_all(svc, samples) -> tuple[list[tuple[str, str, str]], set[str]]:
    """Submit samples as boxes jobs of PER_JOB; -> [(job id, truth, read)], model versions seen."""
    ids = [(submit_boxes(svc, [ink for _, ink in samples[i : i + PER_JOB]]), "".join(l for l, _ in samples[i : i + PER_JOB]))
           for i in range(0, len(samples), PER_JOB)]
    out, versions = [], set()
    for job_id, truth in ids:
        item = svc.wait_for_job(job_id)["items"][0]
        assert item["status"] == "succeeded", item
        versions.add(item["model_version"])
        out.append((job_id, truth, item["digits"]))
    return out, versions


def accuracy(reads, digit: str | None = None) -> float:
    pairs = [(t, r) for _, truth, read in reads for t, r in zip(truth, read) if digit is None or t == digit]
    return sum(t == r for t, r in pairs) / len(pairs)


def test_corrections_teach_the_model_a_regional_style(tmp_path, mnist_dir):
    if not model_available():
        pytest.skip("no committed model")
    from phonereader.config import Settings
    from phonereader.modelcard import load_card
    from training.extra import deploy
    from worker.engine import DigitModel

    serve = tmp_path / "serve" / "default.json"  # the workers serve a copy; models/default.* is never touched
    serve.parent.mkdir()
    paired = [m.card.removesuffix(".json") for m in load_card(ROOT / "models" / "default.json").second_opinion.models]
    for name in ["default", *paired]:  # default.json names its second opinion's cards, which sit beside it
        copy_model(name, serve.parent)
    old_version = DigitModel.serving(Settings(), serve).version  # default+wide+deep+res, with their votes
    corrections = tmp_path / "corrections"
    env = {"PHONEREADER_MODEL_PATH": str(serve), "PHONEREADER_CORRECTIONS_DIR": str(corrections),
           "PHONEREADER_ADMIN_TOKEN": TOKEN, "PHONEREADER_MODEL_RELOAD_S": "0.3"}
    t0 = time.perf_counter()
    with running_service(workers=1, env=env) as svc:
        # 1. the committed model misreads the style (held-out samples: never corrected, never trained on)
        held = regional.samples(40, seed=1001)
        before, versions_before = read_all(svc, held)
        assert accuracy(before, "1") < 0.8, f"the base model already reads European 1s ({accuracy(before, '1'):.0%})"

        # 2. users correct what was misread, in each of the three forms the endpoint takes
        reads, _ = read_all(svc, regional.samples(200, seed=7))
        sent = 0
        for n, (job_id, truth, read) in enumerate(reads):
            wrong = [p for p, (t, r) in enumerate(zip(truth, read)) if t != r]
            if not wrong:
                continue
            url = f"/api/jobs/{job_id}/items/0/corrections"
            if n % 3 == 0:  # what the pages send: one digit at a time
                for p in wrong:
                    r = svc.client.post(url, json={"position": p, "from": read[p], "to": truth[p], "digits": read})
                    assert r.status_code == 201, r.text
            elif n % 3 == 1:
                r = svc.client.post(url, json={"mapping": {str(p): truth[p] for p in wrong}})
                assert r.status_code == 201, r.text
            else:
                r = svc.client.post(url, json={"digits": truth})
                assert r.status_code == 201, r.text
                assert r.json()["item"]["digits"] == truth
            sent += len(wrong)
        assert sent >= 30, f"only {sent} corrections"

        # 3. export the data set (admin only)
        assert svc.client.get("/api/corrections/export").status_code == 401
        r = svc.client.get("/api/corrections/export", headers={"X-Admin-Token": TOKEN})
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        export = tmp_path / "corrections.zip"
        export.write_bytes(r.content)
        with zipfile.ZipFile(export) as zf:
            names = zf.namelist()
        assert sum(n.startswith("training/") for n in names) == sent
        assert sum(n.startswith("originals/") for n in names) == sent and "manifest.jsonl" in names

        # 4. fine-tune the committed model on MNIST + the export, on a tiny budget, as a user would
        t1 = time.perf_counter()
        cli(["train", "--extra", str(export), "--init", str(serve), "--out", str(tmp_path / "new"),
             "--name", "regional", "--steps", "150", "--limit", "20000", "--device", "cpu", "--data", str(mnist_dir)])
        card = tmp_path / "new" / "regional.json"
        tune_s = time.perf_counter() - t1

        # 5. deploy where the worker serves from; it reloads between batches
        deploy(card, serve)
        time.sleep(0.5)
        after, versions_after = read_all(svc, held)

    # The committed model serves with its second opinion; the fine-tuned card names none, so its own
    # reading of a regional 1 is not outvoted by a model that never saw one.
    new_version = load_card(card).version
    printed = cli(["evaluate", str(card), "--extra", str(export), "--baseline", str(ROOT / "models" / "default.json"),
                   "--limit", "2000", "--device", "cpu", "--data", str(mnist_dir)])
    scores = json.loads(printed.strip().splitlines()[-1])
    assert "held-out corrections" in printed and scores["model"]["extra_holdout_n"] > 0
    print(f"\nregional style held out: before {accuracy(before):.1%} (1s {accuracy(before, '1'):.1%}, "
          f"7s {accuracy(before, '7'):.1%}) -> after {accuracy(after):.1%} (1s {accuracy(after, '1'):.1%}, "
          f"7s {accuracy(after, '7'):.1%}); {sent} corrections; fine-tune {tune_s:.1f} s; "
          f"MNIST test[:2000] {scores['baseline']['mnist_test']:.2%} -> {scores['model']['mnist_test']:.2%}; "
          f"total {time.perf_counter() - t0:.0f} s")
    assert versions_before == {old_version} and versions_after == {new_version}
    assert accuracy(after, "1") >= 0.9 and accuracy(after, "7") >= 0.9
    assert scores["mnist_drop_points"] <= 0.5
