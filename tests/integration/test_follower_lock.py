"""One embedded follower per database: the advisory lock, standbys, take-over, gathering."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from uuid import uuid4

import psycopg
import pytest

from consumers.embedded import APPLICATION_NAME, EmbeddedWorkers
from consumers.positions import read_model_position
from kami.bootstrap import Kami, build
from projections.ledger import LedgerProjection
from tests.support.databases import fresh_database

DEADLINE_S = 30.0
# Standbys retry this often here, so that a take-over shows within a test's patience.
POLL_S = 0.05


@pytest.fixture
def url(database_url: str) -> Iterator[str]:
    with fresh_database(database_url) as fresh:
        yield fresh


@pytest.fixture
def two(url: str) -> Iterator[tuple[Kami, Kami]]:
    # Two Kamis on one database: two API processes as far as PostgreSQL can tell.
    first, second = build(url), build(url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _wait_until(what: str, condition: Callable[[], bool], conn: psycopg.Connection[object]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen in {DEADLINE_S}s")
        conn.execute("SELECT pg_sleep(0.02)")  # a bounded wait, on the server


def _paid(kami: Kami) -> int:
    """Sell one card; the position of the payment."""
    shop = kami.shop
    merchant = shop.register_merchant("m", f"{uuid4().hex}@example.com").merchant_id
    product = shop.list_product(merchant, "p", 1_000, "auto").product_id
    shop.import_cards(merchant, product, [uuid4().hex])
    order = shop.place_order(product, 1, "b@example.com")
    return shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount).position


def _follower_sessions(conn: psycopg.Connection[object]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name LIKE %s",
        (f"{APPLICATION_NAME} %",),
    ).fetchone()
    return int(row[0]) if row else 0


def test_of_two_followers_one_follows_and_the_other_takes_over_when_it_stops(
    two: tuple[Kami, Kami], url: str
) -> None:
    first = EmbeddedWorkers(two[0], standby_poll_s=POLL_S).start()
    assert first.active.wait(DEADLINE_S)
    second = EmbeddedWorkers(two[1], standby_poll_s=POLL_S).start()
    ledger = LedgerProjection().name
    with psycopg.connect(url, autocommit=True) as conn, contextlib.ExitStack() as running:
        running.callback(second.stop)
        running.callback(first.stop)
        _wait_until("the second follower standing by", lambda: _follower_sessions(conn) == 2, conn)
        assert not second.active.is_set()

        paid = _paid(two[0])
        _wait_until("the ledger catching up", lambda: read_model_position(conn, ledger) >= paid, conn)
        assert not second.active.is_set()

        first.stop()
        assert second.active.wait(DEADLINE_S)
        paid = _paid(two[1])
        _wait_until("the ledger catching up again", lambda: read_model_position(conn, ledger) >= paid, conn)
    assert first.error is None and second.error is None


def test_a_follower_whose_lock_session_is_killed_stands_by_and_follows_again(
    two: tuple[Kami, Kami], url: str
) -> None:
    kami = two[0]
    follower = EmbeddedWorkers(kami, standby_poll_s=POLL_S).start()
    ledger = LedgerProjection().name
    try:
        assert follower.active.wait(DEADLINE_S)
        with psycopg.connect(url, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name LIKE %s",
                (f"{APPLICATION_NAME} %",),
            ).fetchall()
            assert len(killed) == 1

            def locked_again() -> bool:
                row = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid <> %s AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())",
                    (killed[0][0],),
                ).fetchone()
                return bool(row and row[0] == 1)

            # The lost lock is noticed on the next idle round, then taken on a new session.
            _wait_until("the follower taking the lock again", locked_again, conn)
            paid = _paid(kami)
            _wait_until("the ledger catching up", lambda: read_model_position(conn, ledger) >= paid, conn)
            assert follower.active.is_set()
    finally:
        follower.stop()
    assert follower.error is None


def test_a_gathering_follower_applies_every_commit(two: tuple[Kami, Kami], url: str) -> None:
    kami = two[0]
    # Gathering after every catch-up, however small (the default waits for a busy one).
    follower = EmbeddedWorkers(kami, gather_s=0.05, gather_after=0).start()
    ledger = LedgerProjection().name
    try:
        positions = [_paid(kami) for _ in range(3)]
        with psycopg.connect(url, autocommit=True) as conn:
            _wait_until(
                "the ledger catching up", lambda: read_model_position(conn, ledger) >= max(positions), conn
            )
    finally:
        follower.stop()
    assert follower.error is None


def test_a_follower_that_is_not_busy_does_not_gather(two: tuple[Kami, Kami], url: str) -> None:
    # Gathering for a minute, but only after a catch-up of GATHER_AFTER notifications:
    # single commits, each read alone, are applied as they come.
    kami = two[0]
    follower = EmbeddedWorkers(kami, gather_s=60.0).start()
    ledger = LedgerProjection().name
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in range(3):
                paid = _paid(kami)

                def caught_up(at: int = paid) -> bool:
                    return read_model_position(conn, ledger) >= at

                _wait_until("the ledger catching up", caught_up, conn)
    finally:
        follower.stop()
    assert follower.error is None


def test_the_idle_round_links_the_chain_a_few_times_a_second_not_after_every_catch_up(url: str) -> None:
    now = [100.0]
    kami = build(url)
    try:
        workers = EmbeddedWorkers(kami, monotonic=lambda: now[0])

        def chain_head() -> int:
            with kami.pool.connection() as conn:
                row = conn.execute("SELECT coalesce(max(position), 0) FROM kami_chain").fetchone()
            return int(row[0]) if row else 0

        kami.shop.register_merchant(f"m-{uuid4().hex[:6]}", "m@example.com")
        workers.runner.catch_up()
        workers.on_idle()
        assert chain_head() == kami.shop.position()  # the first round links

        kami.shop.register_merchant(f"m-{uuid4().hex[:6]}", "m@example.com")
        workers.runner.catch_up()
        now[0] += 0.1
        workers.on_idle()
        assert chain_head() < kami.shop.position()  # linked with the next rounds'

        now[0] += 0.2
        workers.on_idle()
        assert chain_head() == kami.shop.position()
    finally:
        kami.close()
