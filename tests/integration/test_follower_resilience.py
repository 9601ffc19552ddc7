"""The embedded follower and the keyring ride out connections killed under them."""

from __future__ import annotations

from uuid import uuid4

import psycopg

from consumers.embedded import EmbeddedWorkers
from consumers.positions import read_model_position
from kami.bootstrap import Kami
from projections.ledger import LedgerProjection


def _kill_backends(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def test_the_follower_keeps_following_after_its_connections_are_killed(system: Kami) -> None:
    shop = system.shop
    workers = EmbeddedWorkers(system).start()
    try:
        merchant = shop.register_merchant("m", "m@example.com").merchant_id
        product = shop.list_product(merchant, "p", 1_000, "auto").product_id
        assert _kill_backends(system.database_url) > 0

        # The keyring's pool held killed connections too: the import must still go through.
        shop.import_cards(merchant, product, [uuid4().hex for _ in range(3)])
        order = shop.place_order(product, 1, "b@example.com")
        paid = shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)

        name = LedgerProjection().name
        done = psycopg.connect(system.database_url, autocommit=True)
        try:
            for _ in range(300):
                if read_model_position(done, name) >= paid.position:
                    break
                assert workers.error is None, workers.error
                done.execute("SELECT pg_sleep(0.05)")  # a bounded wait, on the server
            assert read_model_position(done, name) >= paid.position
        finally:
            done.close()
        assert workers.error is None
    finally:
        workers.stop()
