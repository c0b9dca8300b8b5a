"""CPU use and resident memory of the service's parts, measured with psutil while a benchmark runs.

Which process saturates is the question every throughput figure raises; on a 2-core machine the answer
decides whether more workers, a faster cutter or a lighter gateway would help. CPU is reported as
percent of one core (200 % = both cores of this machine), over the measured interval only.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import psutil


def _tree(pid: int) -> list[psutil.Process]:
    """The process alone: the parts of a stack are children of the benchmark process, so counting
    children would charge the whole service to the load clients."""
    try:
        return [psutil.Process(pid)]
    except psutil.Error:
        return []


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in _tree(pid):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def rss_mb(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def roles_of(stack) -> dict[str, list[int]]:
    """{role: pids} for an ``api.up.Stack``: 'gateway', 'workers', 'redis'; plus this process as 'client'."""
    roles: dict[str, list[int]] = {"gateway": [], "workers": [], "redis": []}
    for c in stack.children:
        if c.alive:
            role = "workers" if c.name.startswith("worker") else c.name
            roles.setdefault(role, []).append(c.proc.pid)
    roles["client"] = [os.getpid()]
    return roles


@dataclass
class CpuWindow:
    """``with CpuWindow(roles) as w: ...`` then ``w.percent`` = {role: % of one core} over the block."""

    roles: dict[str, list[int]]
    percent: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> "CpuWindow":
        self._t0 = time.perf_counter()
        self._c0 = {r: sum(cpu_seconds(p) for p in pids) for r, pids in self.roles.items()}
        self._busy0 = _machine_busy_seconds()
        return self

    def __exit__(self, *exc) -> None:
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        for r, pids in self.roles.items():
            self.percent[r] = 100 * (sum(cpu_seconds(p) for p in pids) - self._c0[r]) / elapsed
        # everything else on the machine (other people's jobs on a shared box): it explains a drop
        machine = 100 * (_machine_busy_seconds() - self._busy0) / elapsed
        self.percent["others"] = max(0.0, machine - sum(self.percent.values()))

    def busiest(self) -> str:
        """'workers 187 %' style: the part of the service that used the most CPU."""
        ours = {r: v for r, v in self.percent.items() if r not in ("others", "client")}
        if not ours:
            return ""
        role = max(ours, key=ours.get)
        return f"{role} {ours[role]:.0f} %"

    def short(self, order=("workers", "gateway", "redis", "naive", "client", "others")) -> str:
        return " ".join(f"{r[0]}{self.percent[r]:.0f}" for r in order if r in self.percent)


def _machine_busy_seconds() -> float:
    """CPU seconds spent by every process on the machine (all cores), idle and iowait excluded."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def rss_by_role(roles: dict[str, list[int]]) -> dict[str, float]:
    return {r: sum(rss_mb(p) for p in pids) for r, pids in roles.items()}
