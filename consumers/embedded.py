"""The embedded mode: `kami serve` follows the log in-process on a background thread."""

from __future__ import annotations

import logging
import threading

from consumers.deadlines import DeadlineManager
from consumers.runner import Consumer, LogRunner
from kami.bootstrap import Kami

log = logging.getLogger(__name__)


class EmbeddedWorkers:
    """The log follower plus the process managers' ticks, on one thread."""

    def __init__(self, kami: Kami, extra: list[Consumer] | None = None) -> None:
        self.deadlines = DeadlineManager(kami.shop, kami.pool)
        self.runner = LogRunner(
            kami.pool, kami.shop.recorder, kami.shop.mapper, [self.deadlines, *(extra or [])]
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kami-follower", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> EmbeddedWorkers:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.runner.run_forever(self._stop, on_idle=self.deadlines.tick)
        except BaseException as error:
            # A follower that dies silently would let views go stale unnoticed.
            self.error = error
            log.exception("the log follower stopped")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
