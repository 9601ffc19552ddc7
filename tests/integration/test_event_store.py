"""The event store's tables, created by processes that start together on a new database."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from kami.bootstrap import Kami, build
from tests.support.databases import fresh_database

STARTERS = 6


def test_processes_starting_together_on_a_new_database_all_start(database_url: str) -> None:
    # As compose.yaml starts the API, the relay and two consumers at once: each builds a
    # Shop, whose recorder creates the tables. Without the creation lock the catalog
    # updates race ("tuple concurrently updated") and some of them die at start.
    with fresh_database(database_url) as url:
        barrier = threading.Barrier(STARTERS)

        def start(_: int) -> Kami:
            barrier.wait()
            return build(url)

        with ThreadPoolExecutor(STARTERS) as pool:
            systems = list(pool.map(start, range(STARTERS)))
        try:
            merchant = systems[0].shop.register_merchant("m", "m@x")
            assert all(s.shop.get_merchant(merchant.merchant_id).name == "m" for s in systems)
        finally:
            for system in systems:
                system.close()
