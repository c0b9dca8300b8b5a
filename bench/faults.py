"""Faults on purpose, against the real processes: each scenario breaks one part mid-run and checks the promise.

- :func:`worker_kill`: a worker gets ``kill -9`` during a bulk job; the job still completes and every
  item has exactly one result (its tasks come back after the visibility timeout).
- :func:`redis_restart`: Redis is killed and restarted (AOF) while clients keep submitting; no accepted
  job is lost, the gateway answers 503 + Retry-After while Redis is down and recovers by itself.
- :func:`gateway_restart`: the gateway is killed and started again while a client polls a job; polling
  resumes and the job completes.
- :func:`backpressure`: with the workers paused, the queue fills to its limit; every further submission
  gets 429/503 + Retry-After, leaves nothing behind in Redis, and memory stays put; after the workers
  resume, submissions are accepted again.

Each returns a :class:`Outcome` (figures plus a list of broken promises). ``phonereader bench faults``
runs them at full size and exits non-zero on any problem; ``tests/test_faults.py`` runs smaller ones.
Every scenario uses a private Redis (``api.up.Stack``), never a shared one.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import redis
from PIL import Image, ImageDraw

from api.up import Child, Stack
from bench.procs import cpu_seconds, rss_mb

FINISHED = {"succeeded", "partial", "failed"}


@dataclass
class Outcome:
    name: str
    figures: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def expect(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return ok


# --- inputs ----------------------------------------------------------------------------------------------


def stroke_png(i: int) -> bytes:
    """A small line of 3 to 7 strokes: cheap to read, so fault runs test delivery, not recognition."""
    im = Image.new("L", (200, 48), 255)
    d = ImageDraw.Draw(im)
    for k in range(3 + i % 5):
        x = 12 + 26 * k
        d.line([(x, 10), (x + 4 * (k % 3), 38)], fill=0, width=4)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def zip_of(images: list[bytes], n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"{i:05d}.png", images[i % len(images)])
    return buf.getvalue()


# --- helpers ----------------------------------------------------------------------------------------------


def redis_client(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.redis_url, socket_timeout=5)


def prefix_of(stack: Stack) -> str:
    return stack.env.get("PHONEREADER_REDIS_PREFIX", "phonereader")


def post(client: httpx.Client, files: list[tuple[str, bytes]], kind: str = "line") -> httpx.Response:
    return client.post("/api/jobs", files=[("files", f) for f in files], data={"kind": kind})


def wait_done(client: httpx.Client, job_id: str, timeout_s: float, on_poll: Callable[[dict], None] | None = None,
              tolerate: bool = False, every_s: float = 0.0) -> dict | None:
    """Poll until the job is finished: long polls, or plain polls ``every_s`` apart. ``tolerate``: ride
    out refused connections and 5xx answers (a restarting gateway) by retrying after Retry-After, as a
    well-behaved client does."""
    deadline = time.monotonic() + timeout_s
    params = {"detail": "false", **({} if every_s else {"wait": 2})}
    while time.monotonic() < deadline:
        time.sleep(every_s)
        try:
            r = client.get(f"/api/jobs/{job_id}", params=params)
        except httpx.HTTPError:
            if not tolerate:
                raise
            time.sleep(0.2)
            continue
        if r.status_code != 200:
            if tolerate and r.status_code >= 500:
                time.sleep(float(r.headers.get("retry-after", "0.5")))
                continue
            raise AssertionError(f"GET job {job_id}: {r.status_code} {r.text[:200]}")
        job = r.json()
        if on_poll:
            on_poll(job)
        if job["status"] in FINISHED:
            return job
    return None


def check_once(out: Outcome, stack: Stack, job: dict | None, n: int) -> None:
    """Every unit of the job has exactly one stored result and appears exactly once in the items."""
    if not out.expect(job is not None, "the job did not finish in time"):
        return
    out.expect(job["progress"] == {"done": n, "total": n}, f"progress is {job['progress']}, expected {n}/{n}")
    units = Counter(i["unit"] for i in job["items"])
    out.expect(sorted(units) == list(range(n)), f"items cover units {min(units, default=None)}..{max(units, default=None)} "
               f"({len(units)} distinct), expected 0..{n - 1}")
    out.expect(all(i["status"] in ("succeeded", "failed") for i in job["items"]), "some items are not finished")
    results = redis_client(stack).hgetall(f"{prefix_of(stack)}:job:{job['id']}:results")
    out.expect(sorted(int(u) for u in results) == list(range(n)), f"{len(results)} stored results for {n} units")
    crashed = [u for u, r in results.items() if (json.loads(r).get("error") or {}).get("code") == "worker_crashed"]
    out.expect(not crashed, f"{len(crashed)} units were given up as poison after the kill")
    out.figures["items_failed"] = sum(i["status"] == "failed" for i in job["items"])


def fleet_counter(stack: Stack, name: str) -> float:
    raw = redis_client(stack).hget(f"{prefix_of(stack)}:metrics", name)
    return float(raw or 0)


def job_keys(stack: Stack) -> int:
    r = redis_client(stack)
    return sum(1 for _ in r.scan_iter(match=f"{prefix_of(stack)}:job:*", count=1000))


def redis_port(stack: Stack) -> int:
    return int(stack.redis_url.rsplit(":", 1)[1].split("/")[0])


def child(stack: Stack, prefix: str) -> Child:
    return next(c for c in stack.children if c.name.startswith(prefix) and c.alive)


def busiest_worker(stack: Stack, window_s: float = 0.3) -> Child:
    """The live worker that used the most CPU over a short window: the one reading units now, so that
    killing it hits work in flight (the first worker may sit between tasks while the other holds them)."""
    workers = [c for c in stack.children if c.name.startswith("worker") and c.alive]
    before = {c.name: cpu_seconds(c.proc.pid) for c in workers}
    time.sleep(window_s)
    return max(workers, key=lambda c: cpu_seconds(c.proc.pid) - before[c.name])


# --- the scenarios ------------------------------------------------------------------------------------------


def worker_kill(stack: Stack, images: list[bytes], n: int = 500, timeout_s: float = 240) -> Outcome:
    """Needs >= 2 workers and a short visibility timeout (the dead worker's tasks return after it)."""
    out = Outcome(f"worker kill -9 during a {n}-item bulk job")
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        r = post(c, [("bulk.zip", zip_of(images, n))])
        if not out.expect(r.status_code == 202, f"bulk upload: {r.status_code} {r.text[:200]}"):
            return out
        job_id = r.json()["id"]
        t0 = time.monotonic()
        while c.get(f"/api/jobs/{job_id}", params={"detail": "false"}).json()["progress"]["done"] < n // 10:
            time.sleep(0.05)
        victim = busiest_worker(stack)
        redelivered0 = fleet_counter(stack, "units_redelivered")
        done_at_kill = c.get(f"/api/jobs/{job_id}", params={"detail": "false"}).json()["progress"]["done"]
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
        stack.children.remove(victim)
        job = wait_done(c, job_id, timeout_s)
        out.figures.update(killed_at=f"{done_at_kill}/{n}", seconds=round(time.monotonic() - t0, 1))
        check_once(out, stack, job, n)
        time.sleep(stack_heartbeat(stack) + 0.5)
        redelivered = fleet_counter(stack, "units_redelivered") - redelivered0
        out.figures["units_redelivered"] = int(redelivered)
        out.expect(redelivered > 0, "no unit was redelivered: the kill did not hit work in flight")
    return out


def stack_heartbeat(stack: Stack) -> float:
    return float(stack.env.get("PHONEREADER_HEARTBEAT_S", 2.0))


class Submitter(threading.Thread):
    """Clients that keep submitting one-image jobs (without waiting for them) and record every answer."""

    def __init__(self, url: str, images: list[bytes], clients: int = 4):
        super().__init__(daemon=True)
        self.url, self.images, self.clients = url, images, clients
        self.accepted: list[str] = []
        self.answers: Counter = Counter()  # status code (or 'conn') -> count
        self.refusals_without_retry_after = 0
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        threads = [threading.Thread(target=self._client, args=(k,), daemon=True) for k in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _client(self, k: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            i = k
            while not self.stop_event.is_set():
                i += self.clients
                try:
                    r = post(c, [("line.png", self.images[i % len(self.images)])])
                except httpx.HTTPError:
                    with self.lock:
                        self.answers["conn"] += 1
                    time.sleep(0.1)
                    continue
                with self.lock:
                    self.answers[r.status_code] += 1
                    if r.status_code == 202:
                        self.accepted.append(r.json()["id"])
                    elif r.status_code in (429, 503) and "retry-after" not in r.headers:
                        self.refusals_without_retry_after += 1
                if r.status_code != 202:
                    time.sleep(0.1)
                else:
                    time.sleep(0.02)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(60)


def redis_restart(stack: Stack, images: list[bytes], before_s: float = 3.0, down_s: float = 3.0,
                  after_s: float = 3.0, kill: bool = True, timeout_s: float = 180) -> Outcome:
    """Clients submit all along; Redis is killed (or stopped), stays down, and comes back on its AOF."""
    out = Outcome(f"Redis {'killed (-9)' if kill else 'stopped'} and restarted under load")
    load = Submitter(stack.url, images)
    load.start()
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        time.sleep(before_s)
        accepted_before = len(load.accepted)
        old = child(stack, "redis")
        old.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        old.proc.wait(20)
        stack.children.remove(old)
        t_down = time.monotonic()
        time.sleep(min(1.0, down_s / 2))
        probes = {"POST /api/jobs": post(c, [("probe.png", images[0])]),
                  "GET /api/jobs/{id}": c.get(f"/api/jobs/{load.accepted[0]}") if load.accepted else None,
                  "GET /api/ready": c.get("/api/ready")}
        for what, r in probes.items():
            if r is None:
                out.problems.append("no job was accepted before Redis went down")
                continue
            out.expect(r.status_code == 503 and r.headers.get("retry-after", "").isdigit(),
                       f"{what} while Redis is down: {r.status_code} {r.headers.get('retry-after')!r}, "
                       "expected 503 with Retry-After")
        time.sleep(max(0.0, down_s - (time.monotonic() - t_down)))
        stack.start_redis(port=redis_port(stack))
        t_up = time.monotonic()
        recovered = None
        while time.monotonic() - t_up < 60:
            if c.get("/api/ready").status_code == 200:
                recovered = time.monotonic() - t_up
                break
            time.sleep(0.2)
        out.expect(recovered is not None, "the gateway was not ready again within 60 s of Redis coming back")
        time.sleep(after_s)
        load.stop()
        lost, unfinished = [], []
        deadline = time.monotonic() + timeout_s
        for job_id in load.accepted:
            r = c.get(f"/api/jobs/{job_id}", params={"detail": "false"})
            if r.status_code == 404:
                lost.append(job_id)
                continue
            job = wait_done(c, job_id, max(1.0, deadline - time.monotonic()))
            if job is None:
                unfinished.append(job_id)
        out.figures.update(accepted=len(load.accepted), accepted_before_fault=accepted_before,
                           answers=dict(sorted(load.answers.items(), key=str)), ready_again_s=round(recovered or -1, 1))
        out.expect(not lost, f"{len(lost)} accepted jobs were lost (404 after the restart)")
        out.expect(not unfinished, f"{len(unfinished)} accepted jobs did not finish within {timeout_s:.0f} s")
        out.expect(load.answers.get(500, 0) == 0, f"{load.answers.get(500)} answers were 500")
        out.expect(load.refusals_without_retry_after == 0,
                   f"{load.refusals_without_retry_after} refusals came without Retry-After")
        out.expect(load.answers.get(503, 0) > 0, "no submission was refused with 503 while Redis was down")
        r = post(c, [("after.png", images[1 % len(images)])])
        out.expect(r.status_code == 202, f"a submission after recovery got {r.status_code}")
    return out


def gateway_restart(stack: Stack, images: list[bytes], n: int = 300, down_s: float = 1.0,
                    timeout_s: float = 180) -> Outcome:
    """The client polls through a gateway crash (kill -9) and a fresh start on the same port."""
    out = Outcome(f"gateway kill -9 and restart while a {n}-item job is polled")
    seen: list[int] = []
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        r = post(c, [("bulk.zip", zip_of(images, n))])
        if not out.expect(r.status_code == 202, f"bulk upload: {r.status_code}"):
            return out
        job_id = r.json()["id"]
        result: dict = {}

        def poll() -> None:
            result["job"] = wait_done(c, job_id, timeout_s, on_poll=lambda j: seen.append(j["progress"]["done"]),
                                      tolerate=True, every_s=0.2)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        while not seen or seen[-1] < n // 10:
            time.sleep(0.05)
        gateway = child(stack, "gateway")
        os.kill(gateway.proc.pid, signal.SIGKILL)
        gateway.proc.wait(10)
        stack.children.remove(gateway)
        polls_before = len(seen)
        done_at_kill = seen[-1]
        out.expect(done_at_kill < n, "the job finished before the gateway was killed: use more items")
        time.sleep(down_s)
        stack.start_gateway()
        poller.join(timeout_s + 10)
        job = result.get("job")
        out.figures.update(killed_at=f"{done_at_kill}/{n}", polls_before=polls_before,
                           polls_after=len(seen) - polls_before)
        out.expect(len(seen) > polls_before, "polling did not resume after the restart")
        out.expect(all(a <= b for a, b in zip(seen, seen[1:])), "progress went backwards across the restart")
        check_once(out, stack, job, n)
    return out


def backpressure(stack: Stack, images: list[bytes], limit: int, hammer: int = 300,
                 upload_bytes: int = 2 * 2**20, timeout_s: float = 180) -> Outcome:
    """Needs PHONEREADER_QUEUE_LIMIT=``limit``. Workers are paused (SIGSTOP) so the queue cannot drain."""
    out = Outcome(f"backpressure at a queue limit of {limit}")
    workers = [c for c in stack.children if c.name.startswith("worker") and c.alive]
    r_client = redis_client(stack)
    try:
        for w in workers:
            os.kill(w.proc.pid, signal.SIGSTOP)
        with httpx.Client(base_url=stack.url, timeout=60) as c:
            r = post(c, [("backlog.zip", zip_of(images, limit + 10))])
            out.expect(r.status_code == 202, f"the backlog job was refused: {r.status_code}")
            backlog = r.json().get("id")
            gateway = child(stack, "gateway")
            rss0, mem0, keys0 = rss_mb(gateway.proc.pid), r_client.info("memory")["used_memory"], job_keys(stack)
            padding = b"\0" * upload_bytes  # a big upload: refusing it must not cost its size in memory
            answers: Counter = Counter()
            no_retry = 0
            big = zip_of(images, 5) + padding
            for i in range(hammer):
                files = [("big.zip", big)] if i % 2 else [("line.png", images[i % len(images)])]
                r = post(c, files)
                answers[r.status_code] += 1
                no_retry += r.status_code in (429, 503) and "retry-after" not in r.headers
            rss1, mem1, keys1 = rss_mb(gateway.proc.pid), r_client.info("memory")["used_memory"], job_keys(stack)
            depth = sum(r_client.llen(k) for k in queue_keys(stack))
            out.figures.update(answers=dict(answers), gateway_rss_mb=f"{rss0:.0f} -> {rss1:.0f}",
                               redis_used_mb=f"{mem0 / 2**20:.1f} -> {mem1 / 2**20:.1f}", queue_depth=depth)
            out.expect(answers.get(202, 0) == 0, f"{answers.get(202)} submissions were accepted past the limit")
            out.expect(set(answers) <= {429, 503}, f"answers other than 429/503: {dict(answers)}")
            out.expect(no_retry == 0, f"{no_retry} refusals came without Retry-After")
            out.expect(keys1 == keys0, f"refused submissions left {keys1 - keys0} job keys in Redis")
            out.expect(rss1 - rss0 < 50, f"gateway memory grew by {rss1 - rss0:.0f} MB while refusing")
            out.expect(mem1 - mem0 < 5 * 2**20, f"Redis memory grew by {(mem1 - mem0) / 2**20:.1f} MB while refusing")
            for w in workers:
                os.kill(w.proc.pid, signal.SIGCONT)
            workers = []
            job = wait_done(c, backlog, timeout_s) if backlog else None
            out.expect(job is not None, "the backlog job did not finish after the workers resumed")
            r = post(c, [("after.png", images[0])])
            out.expect(r.status_code == 202, f"a submission after the queue drained got {r.status_code}")
    finally:
        for w in workers:
            os.kill(w.proc.pid, signal.SIGCONT)
    return out


def queue_keys(stack: Stack) -> list[str]:
    from phonereader.config import Settings
    from worker.celery_app import queue_keys as keys

    return keys(Settings(queue_name=stack.env.get("PHONEREADER_QUEUE_NAME", "phonereader")))


# --- running them all -----------------------------------------------------------------------------------------


def fault_env(**extra: str) -> dict[str, str]:
    return {"PHONEREADER_REDIS_PREFIX": "faults", "PHONEREADER_QUEUE_NAME": "faults",
            "PHONEREADER_VISIBILITY_TIMEOUT_S": "10", "PHONEREADER_DEVICE": "cpu", "PHONEREADER_RUNTIME": "onnx",
            **extra}


def run_faults(items: int, images: list[bytes], queue_limit: int, which: list[str], log=print) -> list[Outcome]:
    """Each scenario on a fresh stack (private Redis, 2 workers unless noted)."""
    outcomes = []
    plans = {
        "worker": (2, {}, lambda s: worker_kill(s, images, items)),
        "redis": (2, {}, lambda s: redis_restart(s, images)),
        "gateway": (2, {}, lambda s: gateway_restart(s, images, items)),
        "backpressure": (1, {"PHONEREADER_QUEUE_LIMIT": str(queue_limit)},
                         lambda s: backpressure(s, images, queue_limit)),
    }
    for name in which:
        workers, env, scenario = plans[name]
        log(f"fault: {name}: starting a stack with {workers} worker(s)…")
        with Stack(workers=workers, port=0, env=fault_env(**env), quiet=True) as stack:
            t0 = time.monotonic()
            out = scenario(stack)
            out.figures["wall_s"] = round(time.monotonic() - t0, 1)
        log(f"fault: {name}: {'passed' if out.passed else 'FAILED'} {out.figures} {out.problems}")
        outcomes.append(out)
    return outcomes
