"""Through Kafka (a real broker): a poison event stops only its partition, below the event,
until a retry after the fix resumes it; and a consumer that follows the live version moves
to a rebuild's promoted version, carrying on from where the rebuild left it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.utils import get_topic

from consumers import dead_letters
from consumers.kafka_consumer import KafkaProjector
from consumers.rebuild import Rebuilder
from consumers.relay import Relay
from consumers.runner import LogRunner
from domain.order import Order
from kami.bootstrap import Kami
from projections import catalog
from projections.dashboard import DashboardProjection
from tests.support.broker import kafka, unique_topic
from tests.support.kafka_state import letters, others_at, position
from tests.support.workload import traffic

TOPIC = unique_topic("kami.test")
PARTITIONS = 4
CLEAN_VERSION = 80


def wait_for(condition: Callable[[], bool], what: str, projector: KafkaProjector) -> None:
    deadline = time.monotonic() + 90
    pause = threading.Event()
    while not condition():
        assert not projector.failed, "the consumer failed"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pause.wait(0.05)



def clean_rows(kami: Kami) -> dict[str, Any]:
    clean = DashboardProjection(CLEAN_VERSION)
    LogRunner(kami.pool, kami.shop.recorder, kami.shop.mapper, [clean]).catch_up()
    with kami.pool.connection() as conn:
        return clean.rows(conn)


class Running:
    """The relay and one Kafka consumer on threads, stopped (and joined) on exit."""

    def __init__(self, kami: Kami, bootstrap: str, projector: KafkaProjector) -> None:
        self.stop = threading.Event()
        relay = Relay(kami.database_url, kami.shop.recorder, bootstrap, TOPIC, PARTITIONS, batch_size=25)
        self.projector = projector
        self.threads = [
            threading.Thread(target=relay.run, args=(self.stop,)),
            threading.Thread(target=self._consume),
        ]

    def _consume(self) -> None:
        try:
            self.projector.run(self.stop)
        except BaseException:
            self.projector.failed = True
            raise

    def __enter__(self) -> Running:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def test_a_poison_event_stops_its_partition_below_it_until_a_retry_after_the_fix(
    system: Kami, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = traffic(system.shop, 3, 40, merchants=2, products=2)
    paid = system.shop.recorder.select_notifications(start=1, limit=10**6, topics=[get_topic(Order.Paid)])
    poison = paid[len(paid) // 2]
    broken = {"on": True}
    original = DashboardProjection.order_paid

    def order_paid(projection: Any, batch: Any, at: int, event: Order.Paid) -> None:
        if broken["on"] and at == poison.id:
            raise ValueError("poison")
        original(projection, batch, at, event)

    monkeypatch.setattr(DashboardProjection, "order_paid", order_paid)
    dashboard = DashboardProjection(4)
    with kafka() as bootstrap:
        projector = KafkaProjector(system.pool, system.shop.mapper, dashboard, bootstrap, TOPIC)
        with Running(system, bootstrap, projector):
            wait_for(lambda: letters(system) != [], "the dead letter", projector)
            [letter] = letters(system)
            assert (letter.consumer, letter.position, letter.status) == (dashboard.name, poison.id, "stopped")
            assert letter.kafka_topic == TOPIC and letter.kafka_partition is not None
            # The other partitions go on to the head; the read model's position stays below.
            head = system.shop.position()
            wait_for(
                lambda: others_at(system, dashboard.name, letter.kafka_partition, head, PARTITIONS),
                "the others",
                projector,
            )
            assert position(system, dashboard.name) < poison.id
            assert projector.parked == {letter.kafka_partition}

            broken["on"] = False
            resolve = {dashboard.name: dashboard}.get
            assert dead_letters.retry(system.pool, system.shop.mapper, letter.id, resolve).ok
            for _ in range(10):
                work.step()
            head = system.shop.position()
            wait_for(lambda: position(system, dashboard.name) >= head, "the resumed partition", projector)
            assert projector.parked == set()
    with system.pool.connection() as conn:
        assert dashboard.rows(conn) == clean_rows(system)




def test_a_consumer_following_the_live_version_moves_to_the_promoted_one(system: Kami) -> None:
    work = traffic(system.shop, 4, 30, merchants=2, products=2)
    with kafka() as bootstrap:
        projector = KafkaProjector(
            system.pool, system.shop.mapper, DashboardProjection(), bootstrap, TOPIC, follow_live=True
        )
        with Running(system, bootstrap, projector):
            head = system.shop.position()
            wait_for(lambda: position(system, "rm_dashboard_v1") >= head, "the live version", projector)

            [report] = Rebuilder(system.pool, system.shop.recorder, system.shop.mapper).rebuild(["dashboard"])

            assert (report.new_version, report.changed) == (2, False)
            with system.pool.connection() as conn:
                assert catalog.live_version(conn, "dashboard") == 2
            for _ in range(15):
                work.step()
            head = system.shop.position()
            wait_for(lambda: position(system, "rm_dashboard_v2") >= head, "the promoted version", projector)
            assert projector.consumer.name == "rm_dashboard_v2"
            # Swapped in place: the group is named after the read model, not its version.
            assert projector.group == "kami.dashboard"
    with system.pool.connection() as conn:
        assert DashboardProjection(2).rows(conn) == clean_rows(system)
        old = "SELECT count(*) FROM kami_kafka_offsets WHERE consumer = 'rm_dashboard_v1'"
        assert conn.execute(old).fetchone() == (0,)
