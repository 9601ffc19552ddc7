"""What /metrics exports, in the Prometheus text format, without a metrics library.

- HTTP request latencies: a histogram per method, route template (``/v1/orders/{order_id}``,
  never the raw path, so ids do not explode the series) and status, filled by
  ``RequestMetrics``, a plain ASGI middleware.
- The read side's figures (``consumers.status``): position, head, lag in events and
  seconds, open dead letters, Kafka partitions, the relay and the hash chain.
- Events appended by this process, per topic (``Shop.appended``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consumers.status import Status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: from a cached aggregate read to a request that waited on a lagging view (5 s).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"  # a path no route serves: one series, whatever the path


class RequestLatencies:
    """A histogram of request durations per (method, route template, status)."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self._buckets = buckets
        self._lock = threading.Lock()
        # labels -> [count per bucket (not cumulative)..., +Inf count, sum]
        self._series: dict[tuple[str, str, str], list[float]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [0.0] * (len(self._buckets) + 2)
            for i, bound in enumerate(self._buckets):
                if seconds <= bound:
                    series[i] += 1
                    break
            else:
                series[len(self._buckets)] += 1
            series[-1] += seconds

    def render(self) -> list[str]:
        name = "kami_http_request_duration_seconds"
        lines = [
            f"# HELP {name} Time to answer an HTTP request, by method, route template and status.",
            f"# TYPE {name} histogram",
        ]
        with self._lock:
            series = {k: list(v) for k, v in self._series.items()}
        for (method, route, status), values in sorted(series.items()):
            labels = {"method": method, "route": route, "status": status}
            total = 0.0
            for bound, count in zip(self._buckets, values, strict=False):
                total += count
                lines.append(sample(f"{name}_bucket", {**labels, "le": _number(bound)}, total))
            total += values[len(self._buckets)]
            lines.append(sample(f"{name}_bucket", {**labels, "le": "+Inf"}, total))
            lines.append(sample(f"{name}_sum", labels, values[-1]))
            lines.append(sample(f"{name}_count", labels, total))
        return lines


class RequestMetrics:
    """ASGI middleware timing every HTTP request into a ``RequestLatencies``."""

    def __init__(self, app: ASGIApp, latencies: RequestLatencies) -> None:
        self.app = app
        self.latencies = latencies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            # The router put the matched route in the scope: its template, not the path.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.latencies.observe(scope["method"], route, status, time.perf_counter() - started)


def render(status: Status, appended: Mapping[str, int], latencies: RequestLatencies) -> str:
    """The whole exposition: read side, appends, then request latencies."""
    lines: list[str] = []
    gauge(lines, "kami_log_head_position", "Position of the last event in the log.", [({}, status.head)])
    consumers = [(_labels(c), c) for c in status.consumers]
    for name, text, figure in (
        ("kami_consumer_position", "Log position up to which a consumer applied every event.", "position"),
        ("kami_consumer_lag_events", "Events between a consumer's position and the head.", "lag_events"),
        ("kami_consumer_lag_seconds", "Business time from its last event to the head's.", "lag_seconds"),
    ):
        gauge(lines, name, text, [(labels, getattr(c, figure)) for labels, c in consumers])
    gauge(
        lines,
        "kami_dead_letters_open",
        "Dead letters a consumer stopped on or went on without.",
        [(labels, c.dead_letters) for labels, c in consumers if c.kind in ("projection", "process manager")],
    )
    partitions = [
        ({"consumer": c.name, "topic": p.topic, "partition": str(p.partition)}, p)
        for c in status.consumers
        for p in c.partitions
    ]
    for name, text, figure in (
        ("kami_kafka_partition_next_offset", "Next Kafka offset to apply, per partition.", "next_offset"),
        ("kami_kafka_partition_applied_id", "Last log position applied from a partition.", "applied_id"),
        ("kami_kafka_partition_watermark", "Position up to which a partition sent all.", "watermark"),
    ):
        gauge(lines, name, text, [(labels, getattr(p, figure)) for labels, p in partitions])
    chain = [c.position for c in status.consumers if c.kind == "chain"]
    text = "Last log position the hash chain covers."
    gauge(lines, "kami_chain_head_position", text, [({}, p) for p in chain])
    counter(
        lines,
        "kami_events_appended_total",
        "Events appended to the log by this process, per topic.",
        [({"topic": topic}, count) for topic, count in sorted(appended.items())],
    )
    lines.extend(latencies.render())
    return "\n".join(lines) + "\n"


def _labels(c: Any) -> dict[str, str]:
    labels = {"consumer": c.name, "kind": c.kind, "transport": c.transport}
    if c.read_model is not None:
        labels["read_model"] = c.read_model
    if c.version is not None:
        labels["version"] = str(c.version)
    if c.state is not None:
        labels["state"] = c.state
    return labels


def gauge(lines: list[str], name: str, text: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
    _family(lines, name, "gauge", text, samples)


def counter(lines: list[str], name: str, text: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
    _family(lines, name, "counter", text, samples)


def _family(
    lines: list[str], name: str, kind: str, text: str, samples: Iterable[tuple[dict[str, str], float]]
) -> None:
    lines.append(f"# HELP {name} {text}")
    lines.append(f"# TYPE {name} {kind}")
    lines.extend(sample(name, labels, value) for labels, value in samples)


def sample(name: str, labels: Mapping[str, str], value: float) -> str:
    if not labels:
        return f"{name} {_number(value)}"
    inside = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{inside}}} {_number(value)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))
