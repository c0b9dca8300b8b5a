"""The gateway may face the internet: API keys and job ownership, rate limits, CORS, unguessable ids,
security headers on pages, and no path from request input to the filesystem.

The gateway's own code is all that is under test here, so it runs in-process on fakeredis with a queue
that only records tasks (as in tests/test_api.py).
"""

from __future__ import annotations

import base64
import io
import sys
import zipfile

import fakeredis
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from api.jobstore import new_job_id
from api.security import parse_keys
from phonereader import ROOT
from phonereader.config import Settings

ALICE, ALICE_2, BOB = "alice-key-0123456789abcdef", "alice-key-rotated-0123456789", "bob-key-0123456789abcdef0"
KEYS = [f"alice:{ALICE}", f"alice:{ALICE_2}", f"bob:{BOB}"]


def png() -> bytes:
    im = Image.new("L", (60, 30), 255)
    im.paste(0, (10, 5, 20, 25))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


class RecordingQueue:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[int]]] = []

    async def depth(self) -> dict[str, int]:
        return {"high": 0, "bulk": 0}

    async def send(self, job_id: str, units: list[int]) -> int:
        self.sent.append((job_id, units))
        return len(units)


@pytest.fixture
def make_client():
    clients = []

    def make(**overrides) -> TestClient:
        settings = Settings(redis_prefix="sec", _env_file=None, **overrides)
        app = create_app(settings, client=fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), queue=RecordingQueue())
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def submit(client: TestClient, key: str | None = None, files=None):
    headers = {"X-API-Key": key} if key else {}
    return client.post("/api/jobs", files=files or [("files", ("a.png", png()))], headers=headers)


# --- API keys and ownership -------------------------------------------------------------------------------


def test_without_keys_the_job_api_needs_none(make_client):
    client = make_client()
    r = submit(client)
    assert r.status_code == 202
    assert client.get(r.headers["location"]).status_code == 200


def test_with_keys_a_missing_or_wrong_key_gets_401_before_the_body_is_read(make_client):
    client = make_client(api_keys=KEYS)
    r = submit(client)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert "X-API-Key" in r.json()["message"] and r.headers["www-authenticate"]
    assert submit(client, "alice-key-0123456789abcdeX").status_code == 401
    assert client.get(f"/api/jobs/{new_job_id()}").status_code == 401
    # an anonymous oversized upload is refused as unauthorized, not read and measured
    r = client.post("/api/jobs", content=b"x" * (2 * 2**20), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 401


def test_a_job_is_visible_only_to_the_key_that_created_it(make_client):
    client = make_client(api_keys=KEYS)
    r = submit(client, ALICE)
    assert r.status_code == 202
    url = r.headers["location"]
    assert client.get(url, headers={"X-API-Key": ALICE}).status_code == 200
    assert client.get(url, headers={"X-API-Key": ALICE_2}).status_code == 200, "two keys of one client share its jobs"
    foreign = client.get(url, headers={"X-API-Key": BOB})
    unknown = client.get(f"/api/jobs/{new_job_id()}", headers={"X-API-Key": BOB})
    assert foreign.status_code == unknown.status_code == 404, "404, not 403: a job's existence is not revealed"
    assert foreign.json()["error"] == unknown.json()["error"] == "not_found"
    assert client.get(url, params={"wait": 5}, headers={"X-API-Key": BOB}).status_code == 404
    assert client.delete(url, headers={"X-API-Key": BOB}).status_code == 404
    assert client.get(url, headers={"X-API-Key": ALICE}).status_code == 200, "bob's delete did nothing"
    assert client.delete(url, headers={"X-API-Key": ALICE}).status_code == 204


def test_open_endpoints_need_no_key(make_client):
    client = make_client(api_keys=KEYS)
    for path in ("/api/health", "/metrics", "/", "/bulk", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    assert client.get("/api/ready").status_code in (200, 503)


def test_keys_are_checked_at_startup():
    with pytest.raises(ValueError, match="shorter"):
        parse_keys(["alice:short"])
    with pytest.raises(ValueError, match="client name"):
        parse_keys(["al ice:0123456789abcdef0123"])
    bare = parse_keys(["0123456789abcdef0123"])
    assert list(bare.values())[0].startswith("key-") and "0123456789abcdef" not in list(bare.values())[0]


def test_keys_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PHONEREADER_API_KEYS", f"alice:{ALICE}, bob:{BOB}")
    monkeypatch.setenv("PHONEREADER_RATE_LIMITS", "alice:5,bob:7")
    monkeypatch.setenv("PHONEREADER_CORS_ORIGINS", "https://a.example, https://b.example")
    s = Settings(_env_file=None)
    assert parse_keys(s.api_keys) == {ALICE: "alice", BOB: "bob"}
    assert s.rate_limits == {"alice": 5, "bob": 7}
    assert s.cors_origins == ["https://a.example", "https://b.example"]


# --- rate limits --------------------------------------------------------------------------------------------------


def test_each_key_has_its_own_rate_limit(make_client):
    client = make_client(api_keys=KEYS, rate_limit_per_minute=3, rate_limits={"bob": 5})
    answers = [submit(client, ALICE).status_code for _ in range(4)]
    assert answers == [202, 202, 202, 429]
    r = client.get(f"/api/jobs/{new_job_id()}", headers={"X-API-Key": ALICE_2})  # same client, other key
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert [submit(client, BOB).status_code for _ in range(6)] == [202] * 5 + [429]
    assert client.get("/api/health").status_code == 200, "health checks are never limited"


def test_without_keys_the_limit_is_per_address(make_client):
    client = make_client(rate_limit_per_minute=2)
    assert [submit(client).status_code for _ in range(3)] == [202, 202, 429]


# --- CORS --------------------------------------------------------------------------------------------------


def test_cors_allows_only_configured_origins(make_client):
    client = make_client(cors_origins=["https://forms.example"], api_keys=KEYS)
    pre = client.options("/api/jobs", headers={"Origin": "https://forms.example", "Access-Control-Request-Method": "POST",
                                               "Access-Control-Request-Headers": "x-api-key"})
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://forms.example"
    assert "x-api-key" in pre.headers["access-control-allow-headers"].lower()
    evil = client.options("/api/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in evil.headers
    r = client.post("/api/jobs", files=[("files", ("a.png", png()))],
                    headers={"X-API-Key": ALICE, "Origin": "https://forms.example"})
    assert r.status_code == 202 and r.headers["access-control-allow-origin"] == "https://forms.example"
    assert "location" in r.headers.get("access-control-expose-headers", "").lower()
    r = client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_without_a_cors_list_no_origin_is_allowed(make_client):
    client = make_client()
    r = client.get("/api/health", headers={"Origin": "https://forms.example"})
    assert "access-control-allow-origin" not in r.headers


# --- job ids -------------------------------------------------------------------------------------------------


def id_bits(job_id: str) -> np.ndarray:
    raw = base64.urlsafe_b64decode(job_id + "=" * (-len(job_id) % 4))
    return np.unpackbits(np.frombuffer(raw, np.uint8))


def test_job_ids_carry_at_least_122_random_bits(make_client):
    ids = [new_job_id() for _ in range(4000)]
    assert len(set(ids)) == len(ids)
    bits = np.stack([id_bits(i) for i in ids])
    assert bits.shape[1] >= 122
    # every bit position is a fair coin (no counter, no timestamp, no fixed version bits): 4000 draws of a
    # fair coin land within 43..57 % with overwhelming probability; a constant bit would be 0 or 100 %
    share = bits.mean(axis=0)
    assert share.min() > 0.43 and share.max() < 0.57, (share.min(), share.max())
    client = make_client()
    served = submit(client).json()["id"]
    assert id_bits(served).size >= 122 and len(served) == len(ids[0])


# --- security headers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/bulk"])
def test_pages_carry_security_headers(make_client, path):
    r = make_client().get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "unsafe-eval" not in csp and "script-src 'self'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_api_answers_and_static_files_are_not_sniffed(make_client):
    client = make_client()
    for path in ("/api/health", f"/api/jobs/{new_job_id()}"):
        assert client.get(path).headers["x-content-type-options"] == "nosniff"
    static = sorted(p.name for p in (ROOT / "web" / "static").glob("*.js"))
    if static:
        r = client.get(f"/static/{static[0]}")
        assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"


# --- no path from request input to the filesystem -------------------------------------------------------------


class FileAudit:
    """Records every file the process opens or creates while active (sys.audit hooks cannot be removed,
    so one hook is installed for the session and switched on and off)."""

    installed = False
    active = False
    events: list[tuple[str, str]] = []

    @classmethod
    def hook(cls, event: str, args) -> None:
        if cls.active and event in ("open", "os.mkdir", "os.rename", "os.symlink", "os.link", "shutil.copyfile",
                                    "os.remove", "os.truncate", "os.chmod"):
            cls.events.append((event, str(args[0]) if args else ""))

    def __enter__(self):
        if not FileAudit.installed:
            sys.addaudithook(FileAudit.hook)
            FileAudit.installed = True
        FileAudit.events = []
        FileAudit.active = True
        return self

    def __exit__(self, *exc):
        FileAudit.active = False


HOSTILE = ["../../../tmp/pwned-a.png", "/tmp/pwned-b.png", "..\\..\\pwned-c.png", "a/../../pwned-d.png",
           "C:\\pwned-e.png", "./../pwned-f.png"]


def test_archive_entry_names_never_become_paths(make_client, tmp_path, monkeypatch):
    client = make_client()
    monkeypatch.chdir(tmp_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in HOSTILE:
            zf.writestr(name, png())
    with FileAudit():
        r = client.post("/api/jobs", files=[("files", ("../../upload-pwned.zip", buf.getvalue()))])
        job = client.get(r.headers["location"]).json()
    assert r.status_code == 202, r.text
    touched = [(e, p) for e, p in FileAudit.events if "pwned" in p]
    assert not touched, f"request input reached the filesystem: {touched}"
    assert [i["source"] for i in job["items"]] == [f"../../upload-pwned.zip/{n}" for n in HOSTILE], "names are labels"
    assert not list(tmp_path.rglob("*pwned*")) and not any(p.name.startswith("pwned") for p in (tmp_path.parent).iterdir())


def test_the_worker_decodes_from_memory_whatever_the_name(tmp_path):
    from phonereader.imageio import load_page

    with FileAudit():
        ink = load_page(png(), "../../../tmp/pwned-worker.png", 0, Settings(_env_file=None))
    assert ink.ndim == 2
    assert not [p for _, p in FileAudit.events if "pwned" in p]


@pytest.mark.parametrize("path", ["/static/../pyproject.toml", "/static/%2e%2e/pyproject.toml",
                                  "/static/..%2fpyproject.toml", "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                                  "/static//etc/passwd", "/static/....//pyproject.toml"])
def test_static_files_cannot_leave_their_folder(make_client, path):
    r = make_client().get(path)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert b"[project]" not in r.content and b"root:" not in r.content


def test_no_code_unpacks_archives_to_disk():
    """Belt and braces for the audit test: nothing in the gateway or the worker calls extract()."""
    for package in ("api", "worker", "phonereader"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert ".extractall(" not in text and ".extract(" not in text, f"{path} unpacks an archive to disk"
