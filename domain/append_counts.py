"""How many events this process has appended, per topic: a plain counter the API's
/metrics exports, so that the domain imports no metrics library."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from eventsourcing.utils import get_topic


class AppendCounter:
    """Events appended since the process started, per event topic; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, events: Iterable[object]) -> None:
        with self._lock:
            for event in events:
                topic = get_topic(type(event))
                self._counts[topic] = self._counts.get(topic, 0) + 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
