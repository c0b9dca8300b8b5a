"""Closed-loop load for the benchmarks: N client threads hammer something until time is up.

Each benchmark writes only its client loop (what one request is); starting, stopping and timing the
threads is the same everywhere and lives here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def run_clients(client: Callable[[int], None], n: int, seconds: float, stop: threading.Event) -> float:
    """Run ``client(k)`` in ``n`` threads for ``seconds``, then set ``stop`` and wait for them.

    Each client loops until ``stop`` is set. Returns the wall time from the first start to the last join,
    so the work finished after the deadline is counted in the time it took.
    """
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return time.perf_counter() - start
