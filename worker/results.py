"""The worker's side of the job store (see ``api.jobstore`` for the key layout).

Everything a worker writes is idempotent: a unit's result is stored with HSETNX (the first write wins,
a redelivered task's second write is a no-op), progress is the number of stored results, and the job
hash itself is never written by workers, so a job deleted mid-flight cannot be resurrected by a late
write (stray keys are removed straight after, and carry the job's TTL anyway).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

import redis

from api.jobstore import Keys, now


@dataclass(frozen=True)
class JobInfo:
    id: str
    kind: str
    region: str
    created_at: float
    total: int


@dataclass(frozen=True)
class Stored:
    """What :meth:`ResultStore.save` did: ``stored`` is False when the unit already had a result
    (or the job is gone); ``finished`` is True for exactly one save per job, the one that completed it."""

    stored: bool
    done: int
    total: int
    finished: bool


class ResultStore:
    def __init__(self, client: redis.Redis, prefix: str, result_ttl_s: int, blob_cache_bytes: int = 64 * 2**20):
        self.r, self.keys, self.ttl = client, Keys(prefix), result_ttl_s
        self._blobs = _BlobCache(blob_cache_bytes)

    def blob(self, job_id: str, file_no: int, cache: bool = False) -> bytes | None:
        """The raw bytes of one uploaded file. ``cache`` for multi-page files: 300 units read one PDF."""
        key = (job_id, file_no)
        data = self._blobs.get(key) if cache else None
        if data is None:
            data = self.r.hget(self.keys.blobs(job_id), str(file_no))
            if data is not None and cache:
                self._blobs.put(key, data)
        return data

    def job_and_done(self, job_id: str, units: list[int]) -> tuple[JobInfo | None, set[int]]:
        """The job (None when it is gone) and which of ``units`` already have a result, in one round trip:
        a task's first look at its job."""
        with self.r.pipeline(transaction=False) as p:
            p.hgetall(self.keys.job(job_id))
            for u in units:
                p.hexists(self.keys.results(job_id), str(u))
            meta, *done = p.execute()
        if not meta:
            return None, set()
        m = {k.decode(): v.decode() for k, v in meta.items()}
        job = JobInfo(job_id, m["kind"], m["region"], float(m["created_at"]), int(m["total"]))
        return job, {u for u, d in zip(units, done) if d}

    def begin(self, job_id: str, u: int, count: bool = True) -> tuple[int, dict | None] | None:
        """Count one more delivery of a unit (``count``; else only read the count) and read the unit's
        descriptor, in one round trip: (deliveries, descriptor or None), or None when the job is gone
        (deleted while queued)."""
        k = self.keys
        with self.r.pipeline(transaction=count) as p:
            p.exists(k.job(job_id))
            if count:
                p.hincrby(k.attempts(job_id), str(u), 1)
                p.expire(k.attempts(job_id), self.ttl)
                p.zadd(k.active, {job_id: now()}, xx=True)  # activity (xx: never re-adds a finished job)
            else:
                p.hget(k.attempts(job_id), str(u))
            p.lindex(k.units(job_id), u)
            exists, attempts, *_, raw = p.execute()
        if not exists:
            if count:
                self.r.unlink(k.attempts(job_id))
            return None
        return int(attempts or 0), None if raw is None else json.loads(raw)

    def save(self, job_id: str, u: int, result: dict, crops: dict[str, bytes] | None = None) -> Stored:
        """Store a unit's result once, with its digits' crops for corrections (``crops``, see
        worker.crops: HSETNX per crop, so like the result the first delivery's crops win and a redelivery
        cannot swap them), in one MULTI. The save that completes the job refreshes the TTL of every key,
        drops the uploaded bytes (no longer needed) and announces the job on the events channel."""
        k = self.keys
        with self.r.pipeline(transaction=True) as p:
            if crops:
                for name, data in crops.items():
                    p.hsetnx(k.crops(job_id), name, data)
                p.expire(k.crops(job_id), self.ttl)
            p.hsetnx(k.results(job_id), str(u), json.dumps(result))
            p.hlen(k.results(job_id))
            p.hget(k.job(job_id), "total")
            p.expire(k.results(job_id), self.ttl)
            p.zadd(k.active, {job_id: now()}, xx=True)
            stored, done, total, _, _ = p.execute()[-5:]
        if total is None:  # deleted while we worked: remove what we just recreated
            with self.r.pipeline(transaction=True) as p:
                p.unlink(k.results(job_id), k.attempts(job_id), k.crops(job_id))
                p.zrem(k.active, job_id)
                p.execute()
            return Stored(False, int(done), 0, False)
        total = int(total)
        finished = bool(stored) and int(done) == total
        if finished:
            with self.r.pipeline(transaction=True) as p:
                for key in (k.job(job_id), k.units(job_id), k.results(job_id), k.attempts(job_id), k.crops(job_id)):
                    p.expire(key, self.ttl)
                p.unlink(k.blobs(job_id))
                p.zrem(k.active, job_id)
                p.publish(k.events, job_id)
                p.execute()
            self._blobs.drop_job(job_id)
        return Stored(bool(stored), int(done), total, finished)

    def missing_units(self, job_id: str) -> list[int] | None:
        """Units of an unfinished job that have no result yet; None when the job is gone."""
        with self.r.pipeline(transaction=False) as p:
            p.hget(self.keys.job(job_id), "total")
            p.hkeys(self.keys.results(job_id))
            total, done = p.execute()
        if total is None:
            return None
        done_set = {int(u) for u in done}
        return [u for u in range(int(total)) if u not in done_set]

    def heartbeat(self, name: str, info: dict, ttl_s: float) -> None:
        with self.r.pipeline(transaction=False) as p:
            p.set(self.keys.worker(name), json.dumps({**info, "seen_at": now()}), px=int(ttl_s * 1000))
            p.sadd(self.keys.workers, name)
            p.execute()

    def goodbye(self, name: str) -> None:
        with self.r.pipeline(transaction=False) as p:
            p.delete(self.keys.worker(name))
            p.srem(self.keys.workers, name)
            p.execute()


class _BlobCache:
    """A small LRU of uploaded files by bytes, shared by the task threads of one worker."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.size = max_bytes, 0
        self._items: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key, data: bytes) -> None:
        if len(data) > self.max_bytes // 4:  # a huge single file would evict everything else
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = data
            self.size += len(data)
            while self.size > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.size -= len(old)

    def drop_job(self, job_id: str) -> None:
        with self._lock:
            for key in [key for key in self._items if key[0] == job_id]:
                self.size -= len(self._items.pop(key))
