"""Backpressure: when the queue is deeper than ``queue_limit``, submissions get 503 with Retry-After.

The check runs twice on purpose. :class:`EarlyRefusal` (ASGI middleware) makes it before a submission's
body is read, so that a flood of uploads during an overload costs neither memory, temporary files nor
parsing time; ``routes.submit`` makes it again just before queueing (the queue may have filled while the
body arrived) unless the early check is less than ``RECHECK_AFTER_S`` old: a small upload (a canvas, one
photo) arrives in the same moment, and the two checks were 11 % of the gateway's busy time per image
in a py-spy profile under load. Both call :func:`check_backlog`, so they cannot disagree. The bound on the queue is
therefore ``queue_limit`` plus the items of the jobs accepted at the same moment (each at most
``max_items``).
"""

from __future__ import annotations

import time

import redis
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import Unavailable, error

BUSY_RETRY_S = 5
SUBMISSIONS = (("POST", "/api/jobs"), ("POST", "/api/recognize"))
RECHECK_AFTER_S = 0.25  # routes.submit checks again when the body took longer than this to arrive
CHECKED_AT = "backlog_checked_at"  # scope["state"] key: when EarlyRefusal found room in the queue


async def check_backlog(svc, scope: Scope | None = None) -> None:
    """Raise :class:`Unavailable` (503, Retry-After) when the queue holds ``queue_limit`` tasks or more.
    With the request's ``scope``: no second look when :class:`EarlyRefusal` looked a moment ago."""
    checked = (scope or {}).get("state", {}).get(CHECKED_AT)
    if checked is not None and time.monotonic() - checked < RECHECK_AFTER_S:
        return
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
                scope.setdefault("state", {})[CHECKED_AT] = time.monotonic()
            except Unavailable as e:
                response = error(503, e.code, e.message, headers={"Retry-After": str(e.retry_after_s)})
                return await response(scope, receive, send)
            except redis.RedisError:
                pass  # the route meets the same outage and answers 503 itself
        await self.app(scope, receive, send)
