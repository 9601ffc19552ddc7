"""`kami serve --workers N`: several API processes on one port, and one more process that
follows the log.

Real processes on a real port against a fresh database; which of the supervisor's children
follows is read from PostgreSQL itself (the follower lock's session names its process id).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import httpx
import psutil
import psycopg
import pytest

from consumers.embedded import APPLICATION_NAME, FOLLOWER_LOCK_KEY
from kami.settings import SECRET_VARS
from tests.support.databases import fresh_database

KAMI = str(Path(sys.executable).with_name("kami"))
DEADLINE_S = 60.0
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(what: str, probe: Callable[[], T | None], process: subprocess.Popen[bytes], log: Path) -> T:
    """Poll ``probe`` until it returns something; fail with the log if the server dies."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"kami serve exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        found = probe()
        if found is not None:
            return found
        # Wait on the process itself between polls: it returns early if it dies.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.1)
    pytest.fail(f"{what} did not happen in {DEADLINE_S}s:\n{log.read_text(errors='replace')}")


class Server:
    def __init__(self, database_url: str, home: Path, *args: str, **settings: str) -> None:
        self.database_url = database_url
        self.secrets = {name: secrets.token_urlsafe(24) for name in SECRET_VARS}
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAMI_")}
        env |= {"KAMI_DATABASE_URL": database_url, "KAMI_HOME": str(home), **self.secrets, **settings}
        port = _free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = home / "serve.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [KAMI, "serve", "--port", str(port), *args], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        # No keep-alive: each request a new connection, so that both workers get some.
        self.http = httpx.Client(
            base_url=self.base_url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
        )

    def wait(self, what: str, probe: Callable[[], T | None]) -> T:
        return _wait_for(what, probe, self.process, self.log)

    def wait_healthy(self) -> None:
        def healthy() -> bool | None:
            try:
                return True if self.http.get("/healthz").status_code == 200 else None
            except httpx.TransportError:
                return None

        self.wait("/healthz", healthy)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=60)

    def children(self) -> list[int]:
        """The API and follower processes (multiprocessing's resource tracker is a child too)."""
        found = []
        for child in psutil.Process(self.process.pid).children():
            with contextlib.suppress(psutil.Error):
                if child.status() != psutil.STATUS_ZOMBIE and "--multiprocessing-fork" in child.cmdline():
                    found.append(child.pid)
        return found

    # ----------------------------------------------------------------- the shop

    def shop(self) -> tuple[str, dict[str, str], str]:
        """A merchant with one auto-delivered product of plenty of cards."""
        admin = {"Authorization": f"Bearer {self.secrets['KAMI_ADMIN_TOKEN']}"}
        r = self.http.post("/v1/merchants", json={"name": "m", "contact": "m@x"}, headers=admin)
        assert r.status_code == 201, r.text
        merchant_id = r.json()["merchant_id"]
        key = {"Authorization": f"Bearer {r.json()['api_key']}"}
        r = self.http.post(
            "/v1/products", json={"title": "p", "price": "5.00", "delivery": "auto"}, headers=key
        )
        assert r.status_code == 201, r.text
        product_id = r.json()["product_id"]
        cards = [uuid4().hex for _ in range(20)]
        r = self.http.post(f"/v1/products/{product_id}/cards", json={"cards": cards}, headers=key)
        assert r.status_code == 200, r.text
        return merchant_id, key, product_id

    def buy(self, product_id: str) -> int:
        """Place and pay an order over HTTP; returns the payment's log position."""
        r = self.http.post("/v1/orders", json={"product_id": product_id, "quantity": 1, "contact": "b@x"})
        assert r.status_code == 201, r.text
        placed = r.json()
        body = json.dumps(
            {"order_id": placed["order_id"], "amount": placed["amount"], "txn_id": uuid4().hex}
        ).encode()
        signature = hmac.new(self.secrets["KAMI_PAYMENT_SECRET"].encode(), body, hashlib.sha256).hexdigest()
        r = self.http.post(
            "/v1/payments/notify",
            content=body,
            headers={"X-Kami-Signature": signature, "Content-Type": "application/json"},
        )
        assert r.status_code == 200 and r.json()["status"] == "delivered", r.text
        return int(r.json()["position"])

    def dashboard(self, merchant_id: str, key: dict[str, str], after: int) -> dict[str, Any]:
        # ?after= waits on the read model: it answers only once the follower got there.
        r = self.http.get(f"/v1/merchants/{merchant_id}/dashboard", params={"after": after}, headers=key)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


def followers(database_url: str) -> tuple[list[int], list[int]]:
    """(process ids holding the follower lock, process ids of every follower session)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.application_name, EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid"
            " AND l.locktype = 'advisory' AND l.granted"
            " AND (l.classid::bigint << 32) + l.objid::bigint = %s)"
            " FROM pg_stat_activity a WHERE a.datname = current_database()"
            " AND a.application_name LIKE %s",
            (FOLLOWER_LOCK_KEY, f"{APPLICATION_NAME} %"),
        ).fetchall()
    every = sorted(int(name.rsplit(" ", 1)[1]) for name, _ in rows)
    holders = sorted(int(name.rsplit(" ", 1)[1]) for name, holds in rows if holds)
    return holders, every


@pytest.fixture
def database(database_url: str) -> Iterator[str]:
    with fresh_database(database_url, "kami_workers") as url:
        yield url


@pytest.fixture
def two_workers(database: str, tmp_path: Path) -> Iterator[Server]:
    server = Server(database, tmp_path, "--workers", "2")
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def _follower_beside_two_workers(server: Server) -> int | None:
    """The follower process, once it follows and two API processes run beside it."""
    holders, every = followers(server.database_url)
    children = server.children()
    if len(holders) == 1 and every == holders and len(children) == 3 and holders[0] in children:
        return holders[0]
    return None


def test_two_workers_serve_and_a_process_of_its_own_follows_the_log(two_workers: Server) -> None:
    server = two_workers
    leader = server.wait("a follower beside two workers", lambda: _follower_beside_two_workers(server))
    assert "workers  2 API processes, and one that follows the log" in server.output()

    merchant_id, key, product_id = server.shop()
    # Each request on a new connection, so both workers take some; each order must show
    # up in the read model exactly once, whichever worker served it.
    positions = [server.buy(product_id) for _ in range(6)]
    dashboard = server.dashboard(merchant_id, key, max(positions))
    assert dashboard["orders_paid"] == 6
    assert dashboard["gmv"] == "30.00"
    # The same single follower all along, and no API process following beside it.
    assert followers(server.database_url) == ([leader], [leader])


def test_a_killed_follower_process_is_replaced_and_the_views_go_on(two_workers: Server) -> None:
    server = two_workers
    leader = server.wait("a follower beside two workers", lambda: _follower_beside_two_workers(server))
    workers = sorted(set(server.children()) - {leader})
    merchant_id, key, product_id = server.shop()
    first = server.buy(product_id)
    assert server.dashboard(merchant_id, key, first)["orders_paid"] == 1

    os.kill(leader, signal.SIGKILL)
    # Orders go on meanwhile: the API processes never needed the follower.
    second = server.buy(product_id)

    def replaced() -> int | None:
        found = _follower_beside_two_workers(server)
        return found if found is not None and found != leader else None

    successor = server.wait("a new follower process", replaced)
    assert sorted(set(server.children()) - {successor}) == workers
    assert server.dashboard(merchant_id, key, second)["orders_paid"] == 2


def test_a_killed_api_process_is_replaced_and_the_follower_stays(two_workers: Server) -> None:
    server = two_workers
    leader = server.wait("a follower beside two workers", lambda: _follower_beside_two_workers(server))
    victim = min(set(server.children()) - {leader})

    os.kill(victim, signal.SIGKILL)

    def replaced() -> list[int] | None:
        children = server.children()
        return children if len(children) == 3 and victim not in children else None

    server.wait("a replacement API process", replaced)
    merchant_id, key, product_id = server.shop()
    assert server.dashboard(merchant_id, key, server.buy(product_id))["orders_paid"] == 1
    assert followers(server.database_url) == ([leader], [leader])


def test_sigterm_stops_the_supervisor_and_its_workers(database: str, tmp_path: Path) -> None:
    server = Server(database, tmp_path, "--workers", "2")
    try:
        server.wait_healthy()
        workers = server.wait("three processes", lambda: w if len(w := server.children()) == 3 else None)
    finally:
        code = server.stop()
    assert code == 0
    assert not [pid for pid in workers if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert followers(database) == ([], [])


def test_with_kafka_the_workers_only_serve_and_no_process_follows(database: str, tmp_path: Path) -> None:
    # `kami consume` keeps the read models then; nothing connects to this address.
    server = Server(database, tmp_path, "--workers", "2", KAMI_KAFKA_BOOTSTRAP="127.0.0.1:9")
    try:
        server.wait_healthy()
        server.wait("two API processes", lambda: True if len(server.children()) == 2 else None)
        merchant_id, key, product_id = server.shop()
        server.buy(product_id)
        assert len(server.children()) == 2
        assert followers(database) == ([], [])
    finally:
        assert server.stop() == 0


def test_requests_are_not_logged_unless_asked(database: str, tmp_path: Path) -> None:
    for args, logged in (((), False), (("--access-log",), True)):
        home = tmp_path / ("loud" if logged else "quiet")
        home.mkdir()
        server = Server(database, home, *args)
        try:
            server.wait_healthy()
            assert server.http.get("/v1/products/not-a-uuid").status_code == 422
        finally:
            assert server.stop() == 0
        assert ('"GET /v1/products/not-a-uuid HTTP/1.1" 422' in server.output()) is logged
