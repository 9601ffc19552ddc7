"""`kami serve` as a user runs it: a real process, a real port, a real PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from domain.order import Order
from domain.shop import Shop
from kami.demo import seed_demo
from kami.settings import SECRET_VARS
from tests.support.databases import fresh_database

# The console script that `pip install -e .` puts next to the interpreter.
KAMI = str(Path(sys.executable).with_name("kami"))
START_DEADLINE = 90.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    # Nothing from the developer's own KAMI_* settings may leak into the child.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMI_")}
    env.update(extra)
    return env


def _secrets() -> dict[str, str]:
    return {name: secrets.token_urlsafe(24) for name in SECRET_VARS}


class Served:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, base_url: str) -> None:
        self.process = process
        self.log = log
        self.base_url = base_url

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_healthy(self) -> None:
        """Poll /healthz until it answers; fail at once, with the log, if the process dies."""
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"kami serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            # Wait on the process itself between polls: it returns early if it dies.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=0.2)
        pytest.fail(f"kami serve did not answer /healthz in {START_DEADLINE}s:\n{self.output()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=60)


def _serve(tmp: Path, env: dict[str, str], *args: str) -> Served:
    port = _free_port()
    log = tmp / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [KAMI, "serve", "--port", str(port), *args],
            env=env,
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Served(process, log, f"http://127.0.0.1:{port}")


@pytest.fixture
def fresh_database_url(database_url: str) -> Iterator[str]:
    """A database of its own on the test server, so the demo seeds into an empty store."""
    with fresh_database(database_url, "kami_cli") as url:
        yield url


@pytest.fixture
def served() -> Iterator[list[Served]]:
    running: list[Served] = []
    yield running
    for server in running:
        server.stop()


def test_serve_demo_on_an_external_database_serves_the_seeded_shop(
    fresh_database_url: str, tmp_path: Path, served: list[Served]
) -> None:
    given = _secrets()
    env = _clean_env(
        KAMI_DATABASE_URL=fresh_database_url, KAMI_HOME=str(tmp_path / "home"), **given
    )
    server = _serve(tmp_path, env, "--demo")
    served.append(server)

    server.wait_healthy()

    demo = json.loads((tmp_path / "home" / "demo.json").read_text())
    steam = demo["products"][0]
    product = httpx.get(f"{server.base_url}/v1/products/{steam['product_id']}", timeout=10)
    assert product.status_code == 200
    assert product.json()["title"] == steam["title"]
    assert product.json()["stock"] > 0
    first = demo["orders"][0]
    order = httpx.get(
        f"{server.base_url}/v1/orders/{first['order_id']}", params={"token": first["token"]}, timeout=10
    )
    assert order.status_code == 200
    assert order.json()["status"] == "delivered"
    assert len(order.json()["cards"]) == first["quantity"]
    text = server.output()
    assert f"{server.base_url}/docs" in text
    assert demo["api_key"] in text
    # With an external database the secrets come from the operator and are not echoed.
    assert given["KAMI_ADMIN_TOKEN"] not in text
    assert server.stop() == 0


def test_serve_refuses_an_external_database_without_a_secret_naming_it(
    fresh_database_url: str, tmp_path: Path
) -> None:
    given = _secrets()
    del given["KAMI_PAYMENT_SECRET"]
    env = _clean_env(KAMI_DATABASE_URL=fresh_database_url, KAMI_HOME=str(tmp_path), **given)

    done = subprocess.run(
        [KAMI, "serve", "--port", str(_free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert "KAMI_PAYMENT_SECRET" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "secrets.json").exists()


def test_serve_embedded_starts_its_own_postgres_and_prints_working_tokens(
    tmp_path: Path, served: list[Served]
) -> None:
    # The home lives under /tmp: as root the embedded server runs as another user that
    # must traverse every parent directory, which pytest's own tmp dirs forbid.
    home = Path(tempfile.mkdtemp(prefix="kami-cli-home-"))
    try:
        server = _serve(tmp_path, _clean_env(KAMI_HOME=str(home)))
        served.append(server)

        server.wait_healthy()

        stored = json.loads((home / "secrets.json").read_text())
        text = server.output()
        for name in SECRET_VARS:
            assert f"{name}={stored[name]}" in text
        created = httpx.post(
            f"{server.base_url}/v1/merchants",
            json={"name": "Embedded Shop", "contact": "ops@example.com"},
            headers={"Authorization": f"Bearer {stored['KAMI_ADMIN_TOKEN']}"},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        assert server.stop() == 0
        # The server was the embedded PostgreSQL's only user, so it stopped with it.
        assert not (home / "pg" / "postmaster.pid").exists()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_the_demo_is_seeded_once_and_reused_while_the_database_holds_it(
    shop: Shop, tmp_path: Path
) -> None:
    state = tmp_path / "demo.json"

    first = seed_demo(shop, state)
    again = seed_demo(shop, state)

    assert first.seeded and not again.seeded
    assert again == first
    assert stat.S_IMODE(state.stat().st_mode) == 0o600  # it holds the merchant's api key


def test_the_demo_pays_two_levels_of_the_promoter_chain_and_never_a_third(shop: Shop) -> None:
    demo = seed_demo(shop)
    a, b, c = (UUID(p.promoter_id) for p in demo.promoters)
    via_c = [o for o in demo.orders if o.promoter == "Promoter C" and o.status != "refunded"]

    assert via_c
    for placed in via_c:
        order = shop.repository.get(UUID(placed.order_id))
        assert isinstance(order, Order)
        paid_to = {(UUID(str(pid)), int(level)) for pid, level, _ in order.commissions}
        assert paid_to == {(c, 1), (b, 2)}
        assert a not in {pid for pid, _ in paid_to}
    statuses = [o.status for o in demo.orders]
    assert statuses.count("refunded") == 1
    assert all(s in ("delivered", "refunded") for s in statuses)


def test_a_demo_file_from_another_database_is_replaced_by_a_fresh_seed(
    shop: Shop, tmp_path: Path
) -> None:
    state = tmp_path / "demo.json"
    stale = json.loads(seed_demo(shop, state).to_json())
    stale["api_key"] = "mk_" + "0" * 32 + "_not-a-key-of-this-database"
    state.write_text(json.dumps(stale))

    fresh = seed_demo(shop, state)

    assert fresh.seeded
    assert fresh.api_key != stale["api_key"]
    assert json.loads(state.read_text())["api_key"] == fresh.api_key
