"""``phonereader worker-health``: is a worker on this host alive? For container healthchecks.

A worker proves it is alive by renewing its heartbeat key in Redis (``worker.service.Heartbeat``): that
happens only after its model is loaded and Celery consumes, and stops when it hangs or loses Redis.
So the check reads those keys instead of poking the worker process: no remote-control round trip, no
port to open, and the same answer ``/api/ready`` gives, narrowed to this host (one container = one host).
"""

from __future__ import annotations

import json
import socket

import redis

from api.jobstore import Keys
from phonereader.config import Settings


def live_workers_on(settings: Settings, host: str | None = None, timeout_s: float = 3.0) -> list[dict]:
    """Heartbeats of live workers whose host is ``host`` (default: this one)."""
    host = host or socket.gethostname()
    keys = Keys(settings.redis_prefix)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        names = sorted(n.decode() for n in client.smembers(keys.workers))
        beats = client.mget([keys.worker(n) for n in names]) if names else []
    finally:
        client.close()
    live = [json.loads(b) for b in beats if b is not None]
    return [w for w in live if w.get("host") == host]


def check(settings: Settings) -> tuple[bool, str]:
    try:
        mine = live_workers_on(settings)
    except redis.RedisError as e:
        return False, f"Redis is unreachable: {e}"
    if not mine:
        return False, f"no live worker heartbeat from host {socket.gethostname()}"
    return True, ", ".join(f"{w['name']} ({w.get('model_version', '?')} on {w.get('device', '?')})" for w in mine)
