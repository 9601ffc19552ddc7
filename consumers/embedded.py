"""The embedded mode: `kami serve` follows the log in-process on a background thread.

It follows the live version of each read model. When a rebuild promotes a new version
(``consumers.rebuild``), the follower notices on an idle round (one runs at least every
second, even under load; the check, at most every quarter of a second) and swaps the
projection for the promoted one. Until then the old version's position row is gone, so
its steps simply leave it alone.

Several processes may follow one database (replicas of ``kami serve``, each with its
follower in its API process or, with ``--workers N``, in a process of its own): exactly
one follows at a time. The follower first takes
a session-level PostgreSQL advisory lock (``FOLLOWER_LOCK_KEY``) on a connection of its
own and keeps it while it follows; the others stand by, trying again every
``standby_poll_s``. The lock goes with its session, so when the holder's process dies
(its connections close) a standby takes over within a poll. The projections' steps are
safe under two runners anyway (row locks on the positions), but the process managers'
ticks and the hash chain are cheapest done once, and one follower batches best.
The lock connection's ``application_name`` names the holder's process id, so ops (and
tests) can see which process follows: ``SELECT application_name FROM pg_stat_activity``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from eventsourcing import persistence

from consumers import chain
from consumers.deadlines import DeadlineManager
from consumers.promoter_levels import PromoterLevelManager
from consumers.runner import GATHER_AFTER, Consumer, LogRunner
from consumers.tiering import TieringManager, policy_from_env
from kami.bootstrap import Kami
from projections import catalog
from projections.base import Projection
from projections.registry import build_live

log = logging.getLogger(__name__)

FOLLOWER_LOCK_KEY = 0x6B616D66  # "kamf"; the relay's is "kami"
STANDBY_POLL_S = 0.5
CHECK_EVERY_S = 0.25
APPLICATION_NAME = "kami follower"

# Errors that say the database is away for a moment, not that a batch is bad.
TRANSIENT: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    persistence.OperationalError,
    persistence.InterfaceError,
)


class EmbeddedWorkers:
    """The read models, the process managers' ticks and the hash chain, on one thread."""

    def __init__(
        self,
        kami: Kami,
        consumers: Sequence[Consumer] | None = None,
        *,
        gather_s: float = 0.0,
        gather_after: int = GATHER_AFTER,
        standby_poll_s: float = STANDBY_POLL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kami = kami
        self._monotonic = monotonic
        self._gather_s = gather_s
        self._gather_after = gather_after
        self._standby_poll_s = standby_poll_s
        # Set while this follower holds the lock and follows; clear while it stands by.
        self.active = threading.Event()
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._checked_at = float("-inf")  # the first round checks
        self.deadlines = DeadlineManager(kami.shop, kami.pool)
        self.tiering = TieringManager(kami.shop, kami.pool, policy_from_env())
        self.levels = PromoterLevelManager(kami.shop, kami.pool)
        # Given consumers are followed as given; the live versions follow promotions.
        self._follows_live = consumers is None
        if consumers is None:
            with kami.pool.connection() as conn:
                consumers = build_live(conn)
        self.runner = LogRunner(
            kami.pool,
            kami.shop.recorder,
            kami.shop.mapper,
            [self.deadlines, self.tiering, self.levels, *consumers],
        )
        with kami.pool.connection() as conn:
            chain.ensure_schema(conn)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kami-follower", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> EmbeddedWorkers:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Following or standing by; False once stopped, or dead on an error (``error``)."""
        return self._thread.is_alive()

    def on_idle(self) -> None:
        # Deadlines are run as soon as they are due; their ticks cost nothing while none
        # is (``consumers.due``).
        self.deadlines.tick()
        self.tiering.tick()
        # The rest a few times a second, not after every catch-up: under light load that
        # is one wake-up per commit, under load every few milliseconds, and each had its
        # round trips (the chain three, levels a read and a write and a commit).
        now = self._monotonic()
        if now - self._checked_at < CHECK_EVERY_S:
            return
        self._checked_at = now
        # A lock whose session died (a restarted database, a killed backend) is no longer
        # held: another process may be following already. Raising a transient error makes
        # this one stand by again rather than follow alongside it.
        if self._lock_conn is not None:
            self._lock_conn.execute("SELECT 1")
        self.follow_promotions()
        # So a level change, and the chain's link of an event, may come up to about a
        # second later (the quiet round after a burst runs within a second). Levels were
        # never in step with the orders that earn them (the tick reconciles after the
        # fact), and the chain's lag is the follower's, which ``verify`` tells apart from
        # tampering and links itself first.
        self.levels.tick()
        with self._kami.pool.connection() as conn:
            chain.extend(conn, self._kami.shop.recorder.events_table_name)

    def follow_promotions(self) -> list[str]:
        """Swap each projection a rebuild has replaced for its promoted version; returns
        the tracking names now followed instead. Runs on the follower's own thread,
        between steps, so no step ever sees half a swap."""
        if not self._follows_live:
            return []
        with self._kami.pool.connection() as conn:
            live = catalog.live_versions(conn)
        swapped = []
        for consumer in list(self.runner.consumers):
            if not isinstance(consumer, Projection):
                continue
            version = live.get(consumer.read_model)
            if version is None or version == consumer.version:
                continue
            promoted = type(consumer)(version)
            try:
                self.runner.replace(consumer.name, promoted)
            except LookupError:
                log.error("%s is promoted but has no position: not following it", promoted.name)
                continue
            log.info("following %s, promoted in place of %s", promoted.name, consumer.name)
            swapped.append(promoted.name)
        return swapped

    @contextlib.contextmanager
    def _leadership(self) -> Iterator[bool]:
        """Hold the follower lock for the block; yields False if stopped while standing by."""
        name = f"{APPLICATION_NAME} {os.getpid()}"
        with psycopg.connect(self._kami.pool.conninfo, autocommit=True, application_name=name) as conn:
            while not self._stop.is_set():
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (FOLLOWER_LOCK_KEY,)).fetchone()
                if row and row[0]:
                    break
                self._stop.wait(self._standby_poll_s)
            else:
                yield False
                return
            self._lock_conn = conn
            self.active.set()
            log.info("following the log (process %s)", os.getpid())
            try:
                yield True
            finally:
                self.active.clear()
                self._lock_conn = None
                # Closing the session frees the lock; a broken session has freed it already.

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with self._leadership() as leading:
                    if not leading:
                        return
                    self.runner.run_forever(
                        self._stop,
                        on_idle=self.on_idle,
                        gather=self._gather_s,
                        gather_after=self._gather_after,
                    )
                return
            except TRANSIENT as error:
                # A dropped connection or a restarting database: nothing of the batch was
                # committed, so following again from the stored positions loses nothing.
                log.warning("the log follower lost the database (%s); retrying", error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            except BaseException as error:
                # A follower that dies silently would let views go stale unnoticed.
                self.error = error
                log.exception("the log follower stopped")
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
