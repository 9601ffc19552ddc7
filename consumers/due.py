"""When a process manager's tick can skip its query: nothing it knows of is due yet.

The embedded follower ticks every manager after each catch-up, which under load is every
few milliseconds, and at light load once per commit; each tick was a connection
checkout and a query that almost always found nothing due (expiries are minutes away,
settlements days). A manager learns the earliest deadline left when a tick finds none
due, and lowers it with every deadline its own ``apply`` writes; until the injected
clock reaches it, nothing can be due and the tick returns at once.

Another process may write the same table (two ``kami consume`` processes sharing a
manager's partitions), so what is known is asked again at least every ``recheck_s``
seconds: such a deadline runs at most that late, as it would with any other tick rate.
A guess too early (an ``apply`` whose step was undone, a deadline cancelled since) only
costs a query.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg

RECHECK_S = 1.0


class DueCache:
    def __init__(self, recheck_s: float = RECHECK_S, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._recheck_s = recheck_s
        self._monotonic = monotonic
        # None: unknown, ask. ``_nothing``: nothing scheduled at all.
        self._earliest: datetime | None = None
        self._nothing = False
        self._learned_at = 0.0

    def nothing_due(self, now: datetime) -> bool:
        """True when no deadline can have come due by ``now``: the tick may skip its query."""
        if self._earliest is None and not self._nothing:
            return False
        if self._monotonic() - self._learned_at >= self._recheck_s:
            return False
        return self._nothing or (self._earliest is not None and now < self._earliest)

    def learned(self, earliest: datetime | None) -> None:
        """The earliest deadline in the table as a tick found it (None: there is none)."""
        self._earliest, self._nothing = earliest, earliest is None
        self._learned_at = self._monotonic()

    def learn(self, conn: psycopg.Connection[Any], table: str) -> None:
        """Learn the earliest deadline of ``table`` (a manager's own, with a ``due_at``)."""
        row = conn.execute(f"SELECT min(due_at) FROM {table}").fetchone()
        self.learned(row[0] if row else None)

    def scheduled(self, due_at: datetime) -> None:
        """A deadline was written at ``due_at``."""
        if self._nothing or (self._earliest is not None and due_at < self._earliest):
            self._earliest, self._nothing = due_at, False

    def forget(self) -> None:
        """Ask the table again on the next tick (a tick ran commands that move deadlines)."""
        self._earliest, self._nothing = None, False
