"""Several read models behind one Kafka consumer group (a real broker, real PostgreSQL):
each keeps its own offsets and ends with the rows of the embedded log runner, through a
takeover from the runner, a republished range, a dead letter that stops only one of
them, and the promotion of one of them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.utils import get_topic

from consumers import dead_letters
from consumers.kafka_consumer import KafkaGroup, group_name
from consumers.rebuild import Rebuilder
from consumers.relay import Relay
from consumers.runner import LogRunner
from domain.order import Order
from kami.bootstrap import Kami
from projections import catalog
from projections.base import Projection
from projections.dashboard import DashboardProjection
from projections.ledger import LedgerProjection
from tests.support.broker import kafka, unique_topic
from tests.support.kafka_state import letters, others_at, position
from tests.support.workload import traffic

PARTITIONS = 4
CLEAN_VERSION = 90


@pytest.fixture
def topic() -> str:
    return unique_topic("kami.group")


class Running:
    """The relay and one consumer group on threads, stopped (and joined) on exit."""

    def __init__(self, kami: Kami, bootstrap: str, topic: str, group: KafkaGroup) -> None:
        self.stop = threading.Event()
        self.group = group
        self.relay = threading.Thread(
            target=Relay(
                kami.database_url, kami.shop.recorder, bootstrap, topic, PARTITIONS, batch_size=25
            ).run,
            args=(self.stop,),
        )
        self.consumer = threading.Thread(target=self._consume)

    def _consume(self) -> None:
        try:
            self.group.run(self.stop)
        except BaseException:
            self.group.failed = True
            raise

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 90
        while not condition():
            assert not self.group.failed, "the group failed"
            assert self.relay.is_alive(), "the relay stopped"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.stop.wait(0.05)  # never set while waiting: a bounded pause between checks

    def __enter__(self) -> Running:
        self.relay.start()
        self.consumer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.relay.join(timeout=30)
        self.consumer.join(timeout=30)



def at_head(kami: Kami, *names: str) -> Callable[[], bool]:
    head = kami.shop.position()
    return lambda: all(position(kami, name) >= head for name in names)


def clean_rows(kami: Kami, cls: type[Projection[Any]]) -> dict[str, Any]:
    """The rows the embedded log runner gives this read model, in a version of its own."""
    clean = cls(CLEAN_VERSION)
    LogRunner(kami.pool, kami.shop.recorder, kami.shop.mapper, [clean]).catch_up()
    with kami.pool.connection() as conn:
        return clean.rows(conn)


def rows(kami: Kami, projection: Projection[Any]) -> dict[str, Any]:
    with kami.pool.connection() as conn:
        return projection.rows(conn)


def test_the_group_name_is_the_set_of_read_models() -> None:
    ledger, dashboard = LedgerProjection(3), DashboardProjection(7)
    assert group_name("kami", [ledger, dashboard]) == group_name("kami", [dashboard, LedgerProjection(1)])
    assert group_name("kami", [ledger, dashboard]) == "kami.dashboard+ledger"
    assert group_name("kami", [ledger]) != group_name("kami", [ledger, dashboard])


def test_two_read_models_in_one_group_give_the_rows_of_the_embedded_mode(system: Kami, topic: str) -> None:
    work = traffic(system.shop, 5, 40)
    # The ledger was fed by the log runner up to the middle of the log: it takes over
    # from there, while the dashboard, new, starts from the beginning of the topic.
    taken_over = system.shop.position() // 2
    ledger, dashboard = LedgerProjection(4), DashboardProjection(4)
    LogRunner(system.pool, system.shop.recorder, system.shop.mapper, [ledger]).catch_up(until=taken_over)
    with kafka() as bootstrap:
        group = KafkaGroup(system.pool, system.shop.mapper, [ledger, dashboard], bootstrap, topic)
        with Running(system, bootstrap, topic, group) as running:
            running.wait_for(at_head(system, ledger.name, dashboard.name), "both read models")
            for _ in range(15):
                work.step()
            running.wait_for(at_head(system, ledger.name, dashboard.name), "the later events")
    assert rows(system, ledger) == clean_rows(system, LedgerProjection)
    assert rows(system, dashboard) == clean_rows(system, DashboardProjection)
    with system.pool.connection() as conn:
        counts = conn.execute(
            "SELECT consumer, count(*) FROM kami_kafka_offsets WHERE topic = %s GROUP BY consumer ORDER BY 1",
            (topic,),
        ).fetchall()
    assert counts == [(dashboard.name, PARTITIONS), (ledger.name, PARTITIONS)]


def test_a_republished_range_is_skipped_by_each_consumer_of_the_group(system: Kami, topic: str) -> None:
    work = traffic(system.shop, 6, 30)
    ledger, dashboard = LedgerProjection(5), DashboardProjection(5)
    with kafka() as bootstrap:
        group = KafkaGroup(system.pool, system.shop.mapper, [ledger, dashboard], bootstrap, topic)
        with Running(system, bootstrap, topic, group) as running:
            running.wait_for(at_head(system, ledger.name, dashboard.name), "both read models")
            # As after a relay crash between publishing and recording its position: the
            # whole log goes out again, then new events behind it on every partition.
            with system.pool.connection() as conn:
                conn.execute("UPDATE kami_relay SET position = 0 WHERE topic = %s", (topic,))
            running.wait_for(lambda: _relay_at(system, topic) >= system.shop.position(), "the republish")
            for _ in range(10):
                work.step()
            running.wait_for(at_head(system, ledger.name, dashboard.name), "the events after it")
    # Counters (the dashboard's) and postings (the ledger's) would double if applied twice.
    assert rows(system, ledger) == clean_rows(system, LedgerProjection)
    assert rows(system, dashboard) == clean_rows(system, DashboardProjection)


def _relay_at(kami: Kami, topic: str) -> int:
    with kami.pool.connection() as conn:
        row = conn.execute("SELECT position FROM kami_relay WHERE topic = %s", (topic,)).fetchone()
    return int(row[0]) if row else 0


def test_one_consumer_stops_on_a_dead_letter_while_the_other_goes_on_until_a_retry(
    system: Kami, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = traffic(system.shop, 7, 40)
    paid = system.shop.recorder.select_notifications(start=1, limit=10**6, topics=[get_topic(Order.Paid)])
    poison = paid[len(paid) // 2]
    broken = {"on": True}
    original = DashboardProjection.order_paid

    def order_paid(projection: Any, batch: Any, at: int, event: Order.Paid) -> None:
        if broken["on"] and at == poison.id:
            raise ValueError("poison")
        original(projection, batch, at, event)

    monkeypatch.setattr(DashboardProjection, "order_paid", order_paid)
    ledger, dashboard = LedgerProjection(6), DashboardProjection(6)
    with kafka() as bootstrap:
        group = KafkaGroup(system.pool, system.shop.mapper, [ledger, dashboard], bootstrap, topic)
        with Running(system, bootstrap, topic, group) as running:
            running.wait_for(lambda: letters(system) != [], "the dead letter")
            [letter] = letters(system)
            assert (letter.consumer, letter.position, letter.status) == (dashboard.name, poison.id, "stopped")
            # The ledger reads the stopped partition too, to the head; the dashboard's
            # other partitions go on, and its position stays below the poison.
            running.wait_for(at_head(system, ledger.name), "the ledger")
            head = system.shop.position()
            running.wait_for(
                lambda: others_at(system, dashboard.name, letter.kafka_partition, head, PARTITIONS),
                "the dashboard's others",
            )
            assert position(system, dashboard.name) < poison.id
            assert group.stopped[dashboard.name] == {letter.kafka_partition}
            assert group.parked == set()  # the ledger still reads it

            broken["on"] = False
            resolve = {dashboard.name: dashboard}.get
            assert dead_letters.retry(system.pool, system.shop.mapper, letter.id, resolve).ok
            for _ in range(10):
                work.step()
            running.wait_for(at_head(system, ledger.name, dashboard.name), "the resumed dashboard")
            assert group.stopped[dashboard.name] == set()
    assert rows(system, dashboard) == clean_rows(system, DashboardProjection)
    assert rows(system, ledger) == clean_rows(system, LedgerProjection)




def test_one_read_model_of_a_shared_group_is_promoted_in_place(system: Kami, topic: str) -> None:
    work = traffic(system.shop, 8, 30)
    with kafka() as bootstrap:
        group = KafkaGroup(
            system.pool,
            system.shop.mapper,
            [LedgerProjection(), DashboardProjection()],
            bootstrap,
            topic,
            follow_live=True,
        )
        name = group.group
        with Running(system, bootstrap, topic, group) as running:
            running.wait_for(at_head(system, "rm_ledger_v1", "rm_dashboard_v1"), "the live versions")

            [report] = Rebuilder(system.pool, system.shop.recorder, system.shop.mapper).rebuild(["dashboard"])

            assert (report.new_version, report.changed) == (2, False)
            with system.pool.connection() as conn:
                assert catalog.live_version(conn, "dashboard") == 2
            for _ in range(15):
                work.step()
            running.wait_for(at_head(system, "rm_ledger_v1", "rm_dashboard_v2"), "the promoted version")
            assert [c.name for c in group.consumers] == ["rm_ledger_v1", "rm_dashboard_v2"]
            assert group.group == name
    assert rows(system, DashboardProjection(2)) == clean_rows(system, DashboardProjection)
    assert rows(system, LedgerProjection(1)) == clean_rows(system, LedgerProjection)
    with system.pool.connection() as conn:
        old = "SELECT count(*) FROM kami_kafka_offsets WHERE consumer = 'rm_dashboard_v1'"
        assert conn.execute(old).fetchone() == (0,)
