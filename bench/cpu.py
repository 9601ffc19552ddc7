"""Where the CPU goes during a benchmark: CPU seconds per group of processes.

A benchmark names its groups (the relay, the consumers, the broker, the server, the load
generator, the PostgreSQL backends serving its database) and takes a snapshot before and
after the timed part; the difference is each group's CPU seconds in that window. A
process that exits inside the window is missed, so groups are long-lived processes.
PostgreSQL's shared background processes (WAL writer, checkpointer) serve every database
on the server and are not counted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import psutil
import psycopg


def _seconds(pid: int) -> float | None:
    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return float(times.user + times.system)


def children_named(prefix: str) -> list[int]:
    """Child processes of this one (at any depth) whose name starts with ``prefix``."""
    me = psutil.Process(os.getpid())
    return [p.pid for p in me.children(recursive=True) if p.name().startswith(prefix)]


def backends(conn: psycopg.Connection[Any]) -> list[int]:
    """The server processes of every session on ``conn``'s database but ``conn``'s own."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchall()
    return [int(r[0]) for r in rows]


class CpuMeter:
    """CPU seconds per named group of processes between ``start()`` and ``stop()``.

    The groups are looked up at both ends: a process that started in between (a pool's
    new connection) counts whole.
    """

    def __init__(self, groups: Mapping[str, Callable[[], list[int]]]) -> None:
        self._groups = dict(groups)
        self._before: dict[int, float] = {}

    def start(self) -> None:
        self._before = {
            pid: seconds
            for find in self._groups.values()
            for pid in find()
            if (seconds := _seconds(pid)) is not None
        }

    def stop(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for name, find in self._groups.items():
            total = 0.0
            for pid in find():
                seconds = _seconds(pid)
                if seconds is not None:
                    total += seconds - self._before.get(pid, 0.0)
            used[name] = round(total, 2)
        return used


def main_thread_seconds(pid: int) -> float:
    """CPU seconds of a process's main thread (whose thread id is the process id): in
    ``kami serve``, uvicorn's event loop (HTTP parsing, middleware, routing, validation,
    serialisation), apart from the threads that run the route handlers and the follower."""
    try:
        for thread in psutil.Process(pid).threads():
            if thread.id == pid:
                return float(thread.user_time + thread.system_time)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    return 0.0
