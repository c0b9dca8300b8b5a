"""The baseline we compare against: the design the tutorials built, with today's model and cutter.

One synchronous FastAPI endpoint holds the model in-process and serves each request alone: decode,
cut, one forward pass over *this* image's crops, read, answer. No queue, no Redis, no cross-request
batching, one process. It is as generous to the baseline as that design allows (the model is loaded
once, not per digit; the same ONNX model, cutter and phone rules as our workers), so the benchmark
measures the architecture, not a handicap.

Run it with ``python -m uvicorn bench.naive:create_app --factory`` (``bench.table`` does).
"""

from __future__ import annotations

import threading

from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import JSONResponse

from phonereader.config import get_settings
from phonereader.imageio import InputError, load_page


def create_app() -> FastAPI:
    from worker.engine import DigitModel
    from worker.recognition import Recognizer

    settings = get_settings()
    model = DigitModel.load(settings.model_path, "cpu", "onnx", threads=settings.worker_model_threads or None)
    recognizer = Recognizer(model, settings)
    one_at_a_time = threading.Lock()  # the tutorials' single global model, used by one request at a time
    app = FastAPI(title="phonereader naive baseline")

    @app.get("/health")
    def health():
        return {"status": "ok", "model_version": model.version}

    @app.post("/recognize")
    def recognize(file: UploadFile = File(...), kind: str = Form("line"), region: str = Form("US")):
        data = file.file.read(settings.max_upload_bytes + 1)
        try:
            with one_at_a_time:
                ink = load_page(data, file.filename or "upload", 0, settings)
                fields = recognizer.cut(ink, kind)
                readings = [recognizer.read(f, model.predict_proba(f.crops), region) for f in fields]
        except InputError as e:
            return JSONResponse({"error": e.code, "message": e.message}, status_code=e.status)
        return {"digits": "".join(r.digits for r in readings),
                "readings": [r.model_dump(mode="json") for r in readings]}

    return app
