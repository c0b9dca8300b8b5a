"""The FastAPI gateway: ``create_app()`` builds it from the one Settings object.

It holds no state of its own (jobs live in Redis), so any number of gateways can run side by side and
one can restart in the middle of a job. Run it with ``phonereader gateway`` or ``phonereader up``.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from api import corrections, errors, pages
from api.backpressure import EarlyRefusal
from api.events import JobEvents
from api.jobstore import JobStore
from api.metrics import GatewayMetrics, RequestMetrics
from api.queue import TaskQueue
from api.routes import Services, router
from api.security import AccessControl
from phonereader import __version__
from phonereader.config import Settings, get_settings

log = logging.getLogger(__name__)
MULTIPART_OVERHEAD = 1 << 20  # boundaries and part headers on top of the files themselves


def create_app(settings: Settings | None = None, client: aioredis.Redis | None = None,
               queue: TaskQueue | None = None) -> FastAPI:
    """``client`` and ``queue`` are for tests (fakeredis, a recording queue); by default both talk to
    ``settings.redis_url``."""
    settings = settings or get_settings()
    client = client or aioredis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5,
                                               health_check_interval=10, retry_on_timeout=True)
    svc = Services(
        settings=settings,
        redis=client,
        store=JobStore(client, settings.redis_prefix, settings.result_ttl_s),
        queue=queue or TaskQueue(settings, client),
        events=JobEvents(client, f"{settings.redis_prefix}:events"),
        metrics=GatewayMetrics(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc.events.start()
        log.info("gateway ready: Redis %s, queue %r", _safe_url(settings.redis_url), settings.queue_name)
        yield
        await svc.events.stop()
        await client.aclose()

    app = FastAPI(
        title="phonereader",
        version=__version__,
        summary="Reads handwritten phone numbers: canvas boxes, freehand lines and scanned forms.",
        lifespan=lifespan,
    )
    app.state.services = svc
    max_body = settings.max_upload_bytes + MULTIPART_OVERHEAD
    errors.install(app, max_body)
    app.include_router(router)
    app.include_router(corrections.router)
    pages.mount(app)
    # outermost last: metrics see every answer, headers go on every answer, CORS answers preflights,
    # access control refuses unknown keys before a body is read, so does a full queue, the body limit caps
    # what is read
    app.add_middleware(errors.BodyLimit, max_bytes=max_body)
    app.add_middleware(EarlyRefusal)
    app.add_middleware(AccessControl, settings=settings, client=client, metrics=svc.metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=[settings.api_key_header, "Accept", "Content-Type"],
                           expose_headers=["Location", "Retry-After"], max_age=600)
    app.add_middleware(pages.SecurityHeaders)
    app.add_middleware(RequestMetrics, metrics=svc.metrics)
    return app


def _safe_url(url: str) -> str:
    """The Redis URL without its password, for logs."""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
