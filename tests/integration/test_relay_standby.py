"""One relay is active at a time; a second waits on the advisory lock and takes over."""

from __future__ import annotations

import threading
from uuid import uuid4

from kafka import KafkaConsumer, TopicPartition

from consumers.relay import Relay
from consumers.wire import Watermark, decode
from kami.bootstrap import Kami
from tests.support.broker import kafka, unique_topic

TOPIC = unique_topic("kami.standby")


def _event_ids(bootstrap: str, partitions: int) -> list[int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(TOPIC, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        ids: list[int] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    item = decode(r.headers, r.value)
                    if not isinstance(item, Watermark):
                        ids.append(item.id)
        return ids
    finally:
        consumer.close()


def test_a_standby_relay_takes_over_when_the_active_one_stops(system: Kami) -> None:
    shop = system.shop
    merchant = shop.register_merchant("standby", "s@example.com")
    with kafka() as bootstrap:
        first = Relay(system.database_url, shop.recorder, bootstrap, TOPIC, 2)
        second = Relay(system.database_url, shop.recorder, bootstrap, TOPIC, 2)
        stop_first, stop_second = threading.Event(), threading.Event()
        t1 = threading.Thread(target=first.run, args=(stop_first,))
        t1.start()
        assert first.active.wait(10)
        t2 = threading.Thread(target=second.run, args=(stop_second,))
        t2.start()
        try:
            assert not second.active.wait(1.0)  # it stands by while the first holds the lock

            stop_first.set()
            t1.join(10)
            assert second.active.wait(10)
            shop.list_product(merchant.merchant_id, f"p-{uuid4().hex[:6]}", 100, "auto")
            head = shop.position()
            pause = threading.Event()  # never set: a bounded wait between polls
            for _ in range(100):
                with system.pool.connection() as conn:
                    row = conn.execute(
                        "SELECT position FROM kami_relay WHERE topic = %s", (TOPIC,)
                    ).fetchone()
                if row and row[0] >= head:
                    break
                pause.wait(0.1)
            ids = _event_ids(bootstrap, 2)
            # Every event of the log was published, whichever relay sent it.
            assert set(ids) == set(range(1, head + 1))
        finally:
            stop_first.set()
            stop_second.set()
            t1.join(10)
            t2.join(10)
