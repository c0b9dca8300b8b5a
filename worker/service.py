"""``phonereader worker``: one worker process, from model loading to a clean shutdown.

Order matters: the model is loaded *before* the process consumes anything (a worker that cannot load
its model exits with an error instead of taking tasks), the heartbeat that makes ``/api/ready`` true
starts once Celery is consuming, and it is withdrawn as soon as a shutdown begins.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from celery import signals

from phonereader.config import Settings
from worker.celery_app import make_celery
from worker.sweeper import Sweeper

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Every ``heartbeat_s``: renew this worker's key (it expires after 3 missed beats), push metrics,
    and now and then run the sweeper (worker.sweeper)."""

    def __init__(self, reader, interval_s: float, sweeper=None):
        super().__init__(name="heartbeat", daemon=True)
        self.reader, self.interval_s, self.sweeper = reader, interval_s, sweeper
        self._stop_event = threading.Event()
        self._failing = False

    def beat(self) -> None:
        store = self.reader.store
        store.heartbeat(self.reader.name, self.reader.info(), ttl_s=3 * self.interval_s)
        self.reader.metrics.flush(store.r, store.keys.metrics)
        if self.sweeper is not None:
            self.sweeper.maybe_sweep()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.beat()
                if self._failing:
                    log.info("heartbeat: Redis is reachable again")
                self._failing = False
            except Exception as e:
                if not self._failing:
                    log.warning("heartbeat failed (%s); retrying every %.1fs", e, self.interval_s)
                self._failing = True
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        try:
            self.reader.store.goodbye(self.reader.name)
        except Exception:
            pass


def run_worker(settings: Settings, concurrency: int | None = None, name: str | None = None,
               loglevel: str = "INFO") -> None:
    """Load the model, then consume the queue until SIGTERM/SIGINT (warm shutdown: running tasks finish,
    reserved ones go back to the queue)."""
    from worker import tasks
    from worker.pipeline import Reader

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    reader = Reader.setup(settings)
    if name:
        reader.name = name
    log.info("worker %s: model %s on %s/%s, batches of <= %d crops, <= %.1f ms wait",
             reader.name, reader.model.version, reader.info()["runtime"], reader.info()["device"],
             settings.batch_max_size, settings.batch_max_delay_ms)
    tasks.bind(reader)
    app = make_celery(settings)
    sweeper = Sweeper(reader.store, app, settings, reader.name, reader.metrics)
    heartbeat = Heartbeat(reader, settings.heartbeat_s, sweeper)

    @signals.worker_ready.connect(weak=False)
    def _ready(**_):
        heartbeat.start()

    @signals.worker_shutting_down.connect(weak=False)
    def _shutting_down(**_):
        heartbeat.stop()

    @signals.after_setup_logger.connect(weak=False)
    def _quiet_tasks(**_):  # two log lines per item drown a bulk job; DEBUG brings them back
        level = logging.DEBUG if loglevel.upper() == "DEBUG" else logging.WARNING
        for name in ("celery.app.trace", "celery.worker.strategy"):
            logging.getLogger(name).setLevel(level)

    app.finalize()  # binds the shared task to this app
    threads = concurrency or settings.worker_concurrency
    try:
        quiet = ["--quiet"] if logging.getLevelName(loglevel.upper()) >= logging.WARNING else []  # no banner
        app.worker_main([
            *quiet, "worker", "--pool=threads", f"--concurrency={threads}", f"--queues={settings.queue_name}",
            f"--hostname=worker{os.getpid()}@{socket.gethostname()}", f"--loglevel={loglevel.upper()}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ])
    finally:
        heartbeat.stop()
        reader.close()
        try:
            reader.metrics.flush(reader.store.r, reader.store.keys.metrics)
        except Exception:
            pass
        log.info("worker %s (pid %d) stopped", reader.name, os.getpid())
