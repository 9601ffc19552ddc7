"""The embedded mode: `kami serve` follows the log in-process on a background thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from consumers import chain
from consumers.deadlines import DeadlineManager
from consumers.promoter_levels import PromoterLevelManager
from consumers.runner import Consumer, LogRunner
from consumers.tiering import TieringManager, policy_from_env
from kami.bootstrap import Kami
from projections.registry import build_live

log = logging.getLogger(__name__)


class EmbeddedWorkers:
    """The read models, the process managers' ticks and the hash chain, on one thread."""

    def __init__(self, kami: Kami, consumers: Sequence[Consumer] | None = None) -> None:
        self._kami = kami
        self.deadlines = DeadlineManager(kami.shop, kami.pool)
        self.tiering = TieringManager(kami.shop, kami.pool, policy_from_env())
        self.levels = PromoterLevelManager(kami.shop, kami.pool)
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

    def on_idle(self) -> None:
        self.deadlines.tick()
        self.tiering.tick()
        self.levels.tick()
        with self._kami.pool.connection() as conn:
            chain.extend(conn, self._kami.shop.recorder.events_table_name)

    def _run(self) -> None:
        try:
            self.runner.run_forever(self._stop, on_idle=self.on_idle)
        except BaseException as error:
            # A follower that dies silently would let views go stale unnoticed.
            self.error = error
            log.exception("the log follower stopped")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
