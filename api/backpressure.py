"""Backpressure: when the queue is deeper than ``queue_limit``, submissions get 503 with Retry-After.

The check runs twice on purpose. :class:`EarlyRefusal` (ASGI middleware) makes it before a submission's
body is read, so that a flood of uploads during an overload costs neither memory, temporary files nor
parsing time; ``routes.submit`` makes it again just before queueing (the queue may have filled while the
body arrived). Both call :func:`check_backlog`, so they cannot disagree. The bound on the queue is
therefore ``queue_limit`` plus the items of the jobs accepted at the same moment (each at most
``max_items``).
"""

from __future__ import annotations

import redis
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import Unavailable, error

BUSY_RETRY_S = 5
SUBMISSIONS = (("POST", "/api/jobs"), ("POST", "/api/recognize"))


async def check_backlog(svc) -> None:
    """Raise :class:`Unavailable` (503, Retry-After) when the queue holds ``queue_limit`` tasks or more."""
    depth = sum((await svc.queue.depth()).values())
    if depth >= svc.settings.queue_limit:
        svc.metrics.refused.labels("queue_full").inc()
        raise Unavailable("queue_full", f"{depth} tasks are waiting (limit {svc.settings.queue_limit}); "
                          "try again later", BUSY_RETRY_S)


class EarlyRefusal:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"].rstrip("/")) in SUBMISSIONS:
            try:
                await check_backlog(scope["app"].state.services)
            except Unavailable as e:
                response = error(503, e.code, e.message, headers={"Retry-After": str(e.retry_after_s)})
                return await response(scope, receive, send)
            except redis.RedisError:
                pass  # the route meets the same outage and answers 503 itself
        await self.app(scope, receive, send)
