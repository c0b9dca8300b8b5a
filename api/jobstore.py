"""The job store: every job lives in Redis, so any gateway can answer for it and any worker can finish it.

Key layout (``P`` is ``settings.redis_prefix``, ``J`` a job id)::

    P:job:J            hash   id, kind, region, created_at, total, owner (written once, by the gateway)
    P:job:J:units      list   one JSON descriptor per unit (what was uploaded: an image, a page, a zip entry)
    P:job:J:blobs      hash   file number -> raw bytes (deleted when the job finishes)
    P:job:J:results    hash   unit index -> JSON result; written with HSETNX, so a unit is stored once
    P:job:J:attempts   hash   unit index -> deliveries so far (a unit that keeps killing workers fails)
    P:job:J:crops      hash   "unit.field.pos" -> 784 bytes uint8 model input + the original crop's raw
                              pixels (kept for corrections, see worker.crops; absent when corrections are off)
    P:job:J:corrections hash  "unit.field.pos" -> the user's label (one per crop; see api.corrections)
    P:active           zset   unfinished job ids, scored by their last activity (see worker.sweeper)
    P:worker:NAME      string a live worker's heartbeat (JSON, expires unless renewed)
    P:workers          set    worker names that have heartbeated (pruned when their key is gone)
    P:metrics          hash   counters and histogram buckets pushed by workers
    P:events           pubsub a job id is published here when its last unit is stored

A *unit* is what the gateway expands an upload into: one image, one page of a TIFF/PDF, one zip entry,
or (kind ``boxes``) the whole set of boxes. A unit usually gives one item, but a form page gives one
item per field it holds; the job view flattens units into items (see :func:`items_of`). Progress is
counted in units (``done`` = stored results), so a task that runs twice cannot count twice.

The gateway uses :class:`JobStore` (redis.asyncio); workers write through ``worker.results`` with
the same :class:`Keys`.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from starlette.concurrency import run_in_threadpool

from phonereader import phone

ID_RE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


def new_job_id() -> str:
    """144 random bits, URL-safe: ids are capabilities, so they must not be guessable."""
    return secrets.token_urlsafe(18)


def now() -> float:
    return round(time.time(), 3)


@dataclass(frozen=True)
class Keys:
    prefix: str

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def units(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:units"

    def blobs(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:blobs"

    def results(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:results"

    def attempts(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:attempts"

    def crops(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:crops"

    def corrections(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:corrections"

    def all_of(self, job_id: str) -> list[str]:
        return [self.job(job_id), self.units(job_id), self.blobs(job_id), self.results(job_id), self.attempts(job_id),
                self.crops(job_id), self.corrections(job_id)]

    def worker(self, name: str) -> str:
        return f"{self.prefix}:worker:{name}"

    @property
    def active(self) -> str:
        return f"{self.prefix}:active"

    @property
    def sweeper(self) -> str:
        return f"{self.prefix}:sweeper"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def metrics(self) -> str:
        return f"{self.prefix}:metrics"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"


def failed_result(code: str, message: str) -> dict:
    """A unit that could not be read: one failed item that says why."""
    return {"status": "failed", "readings": [], "error": {"code": code, "message": message}, "finished_at": now()}


def job_status(done: int, total: int, failed: int, started: bool) -> str:
    if done < total:
        return "running" if (done or started) else "queued"
    if failed == 0:
        return "succeeded"
    return "failed" if failed == total else "partial"


def items_of(units: list[dict], results: dict[int, dict], attempts: dict[int, int], detail: bool = True) -> list[dict]:
    """Flatten units into items, in upload order: a unit read as k fields becomes k items.

    An unread unit shows as one ``queued``/``running`` item; ``index`` is the item's position in this list,
    so it is final once every earlier unit is done. ``unit`` and ``field`` identify an item for good.
    """
    items: list[dict] = []
    for u, unit in enumerate(units):
        base = {"unit": u, "field": None, "source": unit["source"]}
        result = results.get(u)
        if result is None:
            items.append(_item(base, "running" if attempts.get(u) else "queued"))
        elif result["status"] == "failed":
            items.append(_item(base, "failed", error=result.get("error")))
        elif not result["readings"]:  # a page with no field on it: an empty result, never invented digits
            items.append(_item(base, "succeeded", digits="", needs_review=True))
        else:
            many = len(result["readings"]) > 1
            for f, reading in enumerate(result["readings"]):
                items.append(_item({**base, "field": f if many else None}, "succeeded", reading=reading, detail=detail))
    for i, item in enumerate(items):
        item["index"] = i
    return items


def _item(base: dict, status: str, reading: dict | None = None, error: dict | None = None,
          detail: bool = True, **extra: Any) -> dict:
    item = {
        "index": 0, **base, "status": status,
        "digits": None, "formatted": None, "valid": None, "confidence": None, "needs_review": None,
        "digits_detail": [], "error": error,
        "kind": None, "e164": None, "international": None, "region": None, "corrected": None,
        "raw_digits": None, "model_version": None, "model_digits": None, "user_corrected": [],
    }
    if reading is not None:
        for key in item:
            if key in reading:
                item[key] = reading[key]
        if not detail:
            item["digits_detail"] = []
    item.update(extra)
    return item


def corrected(item: dict, labels: dict[int, str], region: str) -> dict:
    """The item as the user corrected it: digits, details and phone checks follow the user's digits.

    ``model_digits`` keeps what the service read, so a reviewer (and the training set) still sees both.
    """
    model = item.get("model_digits") or item["digits"] or ""
    digits = list(item["digits"] or "")
    for pos, label in labels.items():
        if 0 <= pos < len(digits):
            digits[pos] = label
    details = [dict(d) for d in item["digits_detail"]]
    glyphs = [d for d in details if not d.get("empty")]
    for pos, label in labels.items():
        if pos < len(glyphs):
            glyphs[pos]["digit"] = label
            glyphs[pos]["needs_review"] = False
    # a number read with a leading "+" formats as "+digits"; that is how we know which rule applied
    plus = bool(model) and item.get("e164") == "+" + model
    info = phone.info("".join(digits), (item.get("region") or region) if plus else region, plus)
    done = sorted({*item["user_corrected"], *labels})
    # a person has looked at the number and said what it is: it needs no more review
    return {**item, "digits": "".join(digits), "digits_detail": details, "model_digits": model,
            "user_corrected": done, "needs_review": False, "valid": info.valid, "e164": info.e164, "formatted": info.formatted,
            "international": info.international}


def _labels(raw: dict) -> dict[tuple[int, int], dict[int, str]]:
    """The corrections hash ("unit.field.pos" -> digit) grouped per item."""
    out: dict[tuple[int, int], dict[int, str]] = {}
    for key, label in raw.items():
        unit, field, pos = (int(x) for x in key.decode().split("."))
        out.setdefault((unit, field), {})[pos] = label.decode()
    return out


def job_view(job_id: str, meta: dict, raw_units: list, raw_results: dict, raw_attempts: dict, detail: bool,
             raw_corrections: dict | None = None) -> dict:
    """The API's view of a job from its raw Redis hashes, with the users' corrections applied."""
    meta = {key.decode(): value.decode() for key, value in meta.items()}
    units = [json.loads(u) for u in raw_units]
    results = {int(u): json.loads(r) for u, r in raw_results.items()}
    attempts = {int(u): int(n) for u, n in raw_attempts.items()}
    total, created = int(meta["total"]), float(meta["created_at"])
    failed = sum(1 for r in results.values() if r["status"] == "failed")
    # workers never write the job hash (see worker.results), so the times come from the results
    updated = max([created, *(r.get("finished_at") or created for r in results.values())])
    items = items_of(units, results, attempts, detail=detail)
    fixes = _labels(raw_corrections or {})
    if fixes:
        region = meta.get("region") or ""
        items = [corrected(i, fixes[key], region) if (key := (i["unit"], i["field"] or 0)) in fixes
                 and i["status"] == "succeeded" else i for i in items]
    return {
        "id": job_id,
        "kind": meta.get("kind"),
        "region": meta.get("region"),
        "status": job_status(len(results), total, failed, bool(attempts)),
        "created_at": created,
        "updated_at": updated,
        "finished_at": updated if len(results) == total else None,
        "progress": {"done": len(results), "total": total},
        "items": items,
    }


class JobStore:
    """The gateway's side of the job store (async). Every method is a handful of Redis round trips."""

    def __init__(self, client: aioredis.Redis, prefix: str, result_ttl_s: int):
        self.r, self.keys, self.ttl = client, Keys(prefix), result_ttl_s

    async def create(self, job_id: str, kind: str, region: str, units: list[dict], blobs: list[bytes],
                     prefailed: dict[int, dict], owner: str = "") -> bool:
        """Write a job atomically (MULTI): a crash halfway leaves nothing, so a half-made job is never seen.

        Returns True when every unit is already settled (all of them failed at upload), i.e. no task is needed.
        """
        k, t = self.keys, now()
        meta = {"id": job_id, "kind": kind, "region": region, "created_at": t, "total": len(units), "owner": owner}
        finished = len(prefailed) == len(units)
        async with self.r.pipeline(transaction=True) as p:
            p.hset(k.job(job_id), mapping=meta)
            p.rpush(k.units(job_id), *[json.dumps(u) for u in units])
            if blobs and not finished:
                p.hset(k.blobs(job_id), mapping={str(i): b for i, b in enumerate(blobs)})
            if prefailed:
                p.hset(k.results(job_id), mapping={str(u): json.dumps(r) for u, r in prefailed.items()})
            for key in k.all_of(job_id):
                p.expire(key, self.ttl)
            if not finished:
                p.zadd(k.active, {job_id: t})
            await p.execute()
        return finished

    async def exists(self, job_id: str) -> bool:
        return bool(ID_RE.match(job_id)) and bool(await self.r.exists(self.keys.job(job_id)))

    async def owner(self, job_id: str) -> str | None:
        """Who created the job ("" with API keys off), or None when it does not exist."""
        if not ID_RE.match(job_id):
            return None
        owner = await self.r.hget(self.keys.job(job_id), "owner")
        if owner is None:
            return None if not await self.r.exists(self.keys.job(job_id)) else ""
        return owner.decode()

    async def owner_and_progress(self, job_id: str) -> tuple[str, tuple[int, int]] | None:
        """:meth:`owner` and :meth:`progress` in one round trip; None when the job does not exist."""
        if not ID_RE.match(job_id):
            return None
        async with self.r.pipeline(transaction=False) as p:
            p.hmget(self.keys.job(job_id), "owner", "total")
            p.hlen(self.keys.results(job_id))
            (owner, total), done = await p.execute()
        if total is None:  # every job hash has a total: no total, no job
            return None
        return (owner or b"").decode(), (int(done), int(total))

    async def progress(self, job_id: str) -> tuple[int, int] | None:
        """(done, total) in units, or None for an unknown job. Cheap: for waiting loops."""
        if not ID_RE.match(job_id):
            return None
        async with self.r.pipeline(transaction=False) as p:
            p.hget(self.keys.job(job_id), "total")
            p.hlen(self.keys.results(job_id))
            total, done = await p.execute()
        return None if total is None else (int(done), int(total))

    async def get(self, job_id: str, detail: bool = True) -> dict | None:
        """The job as the API shows it, or None when it does not exist (never guessed from Celery)."""
        if not ID_RE.match(job_id):
            return None
        k = self.keys
        async with self.r.pipeline(transaction=False) as p:
            p.hgetall(k.job(job_id))
            p.lrange(k.units(job_id), 0, -1)
            p.hgetall(k.results(job_id))
            p.hgetall(k.attempts(job_id))
            p.hgetall(k.corrections(job_id))
            meta, raw_units, raw_results, raw_attempts, raw_fixes = await p.execute()
        if not meta:
            return None
        args = (job_id, meta, raw_units, raw_results, raw_attempts, detail, raw_fixes)
        if len(raw_units) > 100:  # parsing thousands of results would stall every other request
            return await run_in_threadpool(job_view, *args)
        return job_view(*args)

    async def delete(self, job_id: str) -> bool:
        """Remove every key of the job. Queued tasks for it find no job and are dropped by the worker."""
        if not ID_RE.match(job_id):
            return False
        async with self.r.pipeline(transaction=True) as p:
            p.unlink(*self.keys.all_of(job_id))
            p.zrem(self.keys.active, job_id)
            removed, _ = await p.execute()
        return bool(removed)

    async def live_workers(self) -> list[dict]:
        """Workers whose heartbeat has not expired; names whose key is gone are pruned from the set."""
        names = sorted(n.decode() for n in await self.r.smembers(self.keys.workers))
        if not names:
            return []
        beats = await self.r.mget([self.keys.worker(n) for n in names])
        gone = [n for n, b in zip(names, beats) if b is None]
        if gone:
            await self.r.srem(self.keys.workers, *gone)
        return [json.loads(b) for b in beats if b is not None]

    async def metrics(self) -> dict[str, float]:
        raw = await self.r.hgetall(self.keys.metrics)
        return {key.decode(): float(value) for key, value in raw.items()}
