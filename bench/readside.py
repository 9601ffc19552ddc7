"""What the read-side benchmarks (pipeline, rebuild) share: the baseline, and the targets.

The baseline is eventsourcing's ``ProjectionRunner`` running kami's own projections
(``projections.baseline``): one runner per read model, all at once, each following the
log from its start through its own subscription (filtered to the projection's topics)
and committing each event's rows with its tracking record in a transaction of its own.
The clock stops when every runner's tracking position has reached the last event of its
topics in the log. Per-event commits make it slow, so it runs on the first ``subset``
events of the same log, restored alone into a database of its own (``baseline_database``);
its rate is those events over the time every projection took to apply them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from eventsourcing.projection import ProjectionRunner

from bench import shoplog
from bench.database import fresh_database
from kami.bootstrap import eventsourcing_env
from projections.baseline import LogReader, eventsourcing_classes
from projections.registry import PROJECTIONS, build_all

DEFAULT_SUBSET = 10_000
READ_MODELS: tuple[str, ...] = tuple(cls.read_model for cls in PROJECTIONS)


def baseline_subset() -> int:
    return int(os.environ.get("KAMI_BENCH_BASELINE_EVENTS", DEFAULT_SUBSET))


def versions(version: int) -> dict[str, int]:
    return {name: version for name in READ_MODELS}


@contextmanager
def baseline_database(server: str, subset: int) -> Iterator[str]:
    """A fresh database holding the first ``subset`` events of the run's shop log."""
    with fresh_database(server, "baseline") as url:
        kami, _ = shoplog.prepare(url)
        try:
            table = kami.shop.recorder.events_table_name
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"DELETE FROM {table} WHERE notification_id > %s", (subset,))
                conn.execute(f"VACUUM ANALYZE {table}")
        finally:
            kami.close()
        yield url


def topic_heads(
    conn: psycopg.Connection[Any], table: str, topics: Mapping[str, frozenset[str]]
) -> dict[str, int]:
    """Per consumer, the position of the last event of its topics in the log."""
    heads: dict[str, int] = {}
    for name, wanted in topics.items():
        row = conn.execute(
            f"SELECT coalesce(max(notification_id), 0) FROM {table} WHERE topic = ANY(%s)",
            (sorted(wanted),),
        ).fetchone()
        heads[name] = int(row[0]) if row else 0
    return heads


def run_baseline(database_url: str, version: int, timeout: float = 900.0) -> tuple[int, float]:
    """Every projection at ``version`` by its own ``ProjectionRunner`` over the whole log of
    ``database_url``; returns (events in the log, seconds until every one reached its end)."""
    # Small pools: 7 runners with eventsourcing's default pools would take some 70 of the
    # server's connections, which the machine's other users need too.
    env = eventsourcing_env(database_url) | {"POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "2"}
    projections = build_all(versions(version))
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM kami_events").fetchone()
        events = int(row[0]) if row else 0
        targets = topic_heads(conn, "kami_events", {p.name: p.topics for p in projections})
    classes = [eventsourcing_classes(p) for p in projections]
    with ExitStack() as stack:
        began = time.perf_counter()
        runners = [
            stack.enter_context(
                ProjectionRunner(
                    application_class=LogReader, projection_class=adapter, view_class=view, env=env
                )
            )
            for adapter, view in classes
        ]
        deadline = began + timeout
        for projection, runner in zip(projections, runners, strict=True):
            target = targets[projection.name]
            while True:
                runner.run_forever(timeout=0)  # re-raises a failure of its thread
                if (runner.view.max_tracking_id(runner.app_name) or 0) >= target:
                    break
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"the baseline {projection.name} did not reach {target}")
                time.sleep(0.02)
        seconds = time.perf_counter() - began
    return events, seconds
