"""Shared fixtures. Integration tests run on a real PostgreSQL: KAMI_TEST_DATABASE_URL when
set, otherwise an embedded server. Each run creates a fresh database and drops it after."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from domain.clock import ManualClock
from kami.bootstrap import Kami, build
from tests.support.databases import fresh_database


def _server_url() -> str:
    url = os.environ.get("KAMI_TEST_DATABASE_URL")
    if url:
        return url
    from kami.embedded import embedded_server_url

    return embedded_server_url(os.path.join(os.path.dirname(__file__), "..", ".kami", "test-pg"))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    server = _server_url()
    name = f"kami_test_{secrets.token_hex(4)}"
    admin = make_conninfo(server, dbname="postgres")
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        raise RuntimeError(
            f"integration tests need PostgreSQL ({conninfo_to_dict(server)}): {error}"
        ) from error
    yield make_conninfo(server, dbname=name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def kami(database_url: str, clock: ManualClock) -> Iterator[Kami]:
    system = build(database_url, clock=clock)
    yield system
    system.close()


@pytest.fixture
def shop(kami: Kami):  # noqa: ANN201 - the Shop type is obvious from the name
    return kami.shop


@pytest.fixture
def system(database_url: str) -> Iterator[Kami]:
    """A Kami on a database of its own: for tests that kill its sessions, count its
    appends, or need the log's head and positions to be exactly what they wrote."""
    with fresh_database(database_url) as url:
        kami = build(url)
        try:
            yield kami
        finally:
            kami.close()
