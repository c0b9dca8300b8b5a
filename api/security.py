"""Who is calling the job API, and are they allowed to right now? (optional API keys, per-client rate limits)

The gateway may face the internet. With ``api_keys`` set, every request to the job API (``/api/jobs*``,
``/api/recognize``) must carry a known key in the ``api_key_header`` header; the key's *name* becomes
the job's owner, and a job is visible only to its owner: another key gets 404, exactly as for an id
that does not exist, so a key cannot even learn that someone else's job exists. Pages, ``/api/health``,
``/api/ready``, ``/metrics`` and ``/docs`` stay open (health checks and scrapers carry no key).

This is ASGI middleware rather than a FastAPI dependency so that a missing key or an exhausted limit is
answered *before* the request body is read: an anonymous 50 MB upload costs nothing.

Rate limits count job-API requests per client (a key's name, or the remote address when keys are
off) in fixed one-minute windows kept in Redis, so every gateway shares one count. A fixed window
is one round trip (INCR + EXPIRE in a pipeline); its known weakness, up to twice the limit across a
window boundary, is acceptable for abuse control.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import UNAVAILABLE_RETRY_S, error
from phonereader.config import Settings

PROTECTED = ("/api/jobs", "/api/recognize")
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_KEY_CHARS = 16
WINDOW_S = 60


@dataclass(frozen=True)
class Caller:
    """Who made a request: ``owner`` is stored with the jobs it creates ("" when keys are off)."""

    name: str
    owner: str


def parse_keys(entries: list[str]) -> dict[str, str]:
    """``name:key`` entries -> {key: name}. A bare key gets a name derived from its hash (never the key
    itself, which must not reach logs or Redis). Short keys are refused at startup, not at request time."""
    keys: dict[str, str] = {}
    for entry in entries:
        name, sep, key = entry.strip().rpartition(":")
        if not sep:
            key, name = entry.strip(), "key-" + hashlib.sha256(entry.strip().encode()).hexdigest()[:8]
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"api_keys: the key for {name!r} is shorter than {MIN_KEY_CHARS} characters")
        if not NAME_RE.match(name):
            raise ValueError(f"api_keys: {name!r} is not a valid client name (letters, digits, _.@-, at most 64)")
        keys[key] = name
    return keys


def caller_of(scope: Scope) -> Caller:
    """The caller the middleware identified (routes use this; it is always set on the job API)."""
    return scope.get("state", {}).get("caller") or Caller("anonymous", "")


class RateLimiter:
    def __init__(self, client: aioredis.Redis, prefix: str, default: int, overrides: dict[str, int]):
        self.r, self.prefix, self.default, self.overrides = client, prefix, default, overrides

    def limit(self, name: str) -> int:
        return self.overrides.get(name, self.default)

    async def hit(self, name: str) -> int:
        """Count one request; returns 0 when allowed, else the seconds until the window ends."""
        limit = self.limit(name)
        if limit <= 0:
            return 0
        now = time.time()
        window = int(now // WINDOW_S)
        key = f"{self.prefix}:rate:{name}:{window}"
        async with self.r.pipeline(transaction=False) as p:
            p.incr(key)
            p.expire(key, WINDOW_S + 5)
            count, _ = await p.execute()
        if count <= limit:
            return 0
        return max(1, int((window + 1) * WINDOW_S - now + 0.999))


class AccessControl:
    """ASGI middleware: identify the caller of the job API, enforce its rate limit, remember it in
    ``scope["state"]["caller"]`` for the routes (which stamp and check job owners)."""

    def __init__(self, app: ASGIApp, settings: Settings, client: aioredis.Redis, metrics=None):
        self.app = app
        self.keys = parse_keys(settings.api_keys)
        self.header = settings.api_key_header.lower().encode("latin-1")
        self.header_name = settings.api_key_header
        self.limiter = RateLimiter(client, settings.redis_prefix, settings.rate_limit_per_minute, settings.rate_limits)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or not scope["path"].startswith(PROTECTED):
            return await self.app(scope, receive, send)
        caller = self.identify(scope)
        if caller is None:
            self._refused("unauthorized")
            missing = not any(name == self.header for name, _ in scope.get("headers", []))
            message = (f"{self.header_name}: an API key is required" if missing
                       else f"{self.header_name}: the API key is not valid")
            response = error(401, "unauthorized", message, headers={"WWW-Authenticate": self.header_name})
            return await response(scope, receive, send)
        try:
            wait_s = await self.limiter.hit(caller.name)
        except redis.RedisError:
            response = error(503, "unavailable", "the job store is unavailable; try again shortly",
                             headers={"Retry-After": str(UNAVAILABLE_RETRY_S)})
            return await response(scope, receive, send)
        if wait_s:
            self._refused("rate_limited")
            limit = self.limiter.limit(caller.name)
            response = error(429, "rate_limited", f"more than {limit} requests a minute from {caller.name}; "
                             f"try again in {wait_s} s", headers={"Retry-After": str(wait_s)})
            return await response(scope, receive, send)
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)

    def identify(self, scope: Scope) -> Caller | None:
        """The key's owner; None for a missing or unknown key. Without configured keys everyone is
        allowed and is told apart (for rate limits only) by address."""
        if not self.keys:
            client = scope.get("client")
            return Caller(f"addr:{client[0]}" if client else "addr:unknown", "")
        sent = next((v for k, v in scope.get("headers", []) if k == self.header), None)
        if sent is None:
            return None
        sent_key = sent.decode("latin-1").strip()
        name = None
        for key, owner in self.keys.items():  # compare with every key in constant time: no early exit
            if hmac.compare_digest(key.encode(), sent_key.encode()):
                name = owner
        return Caller(name, name) if name else None

    def _refused(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.refused.labels(reason).inc()
