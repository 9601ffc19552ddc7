"""End to end against a real `kami serve` process: a buyer's whole journey over HTTP."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.api_client import Api, epay_params, random_cards, random_settings

STARTED = re.compile(r"Uvicorn running on (http://\S+)")
START_TIMEOUT = 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = random_settings()
    env = os.environ | {
        "KAMI_DATABASE_URL": database_url,
        "KAMI_HOME": str(tmp_path),
        "KAMI_ADMIN_TOKEN": settings.admin_token,
        "KAMI_AUDITOR_TOKEN": settings.auditor_token,
        "KAMI_PAYMENT_SECRET": settings.payment_secret,
        "KAMI_EPAY_KEY": settings.epay_key,
    }
    kami_bin = Path(sys.executable).with_name("kami")
    proc = subprocess.Popen(
        [str(kami_bin), "serve", "--port", str(_free_port())],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # uvicorn announces its address on stderr once it listens; a reader thread keeps the
    # pipe drained and hands the lines over, so waiting needs no sleep and has a timeout.
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put("")

    threading.Thread(target=drain, daemon=True).start()
    try:
        seen: list[str] = []
        while True:
            line = lines.get(timeout=START_TIMEOUT)
            seen.append(line)
            if not line:
                pytest.fail("kami serve exited before listening:\n" + "".join(seen))
            if match := STARTED.search(line):
                break
        with httpx.Client(base_url=match.group(1), timeout=30) as http:
            yield Api(http, settings)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_buyer_gets_the_cards_they_paid_for_from_kami_serve(served: Api) -> None:
    api = served
    assert api.http.get("/healthz").json()["status"] == "ok"
    _, merchant = api.merchant()
    cards = random_cards(3)
    product_id = api.product(merchant, cards, price="6.60")

    sandbox_order = api.order(product_id)
    epay_order = api.order(product_id, quantity=2)
    paid = api.pay(sandbox_order)
    notified = api.http.post(
        "/v1/payments/epay/notify",
        data=epay_params(api.settings.epay_key, epay_order["order_id"], epay_order["amount"], "E2E-1"),
    )

    assert paid["status"] == "delivered"
    assert (notified.status_code, notified.text) == (200, "success")
    delivered = api.read_order(sandbox_order)["cards"] + api.read_order(epay_order)["cards"]
    assert sorted(delivered) == sorted(cards)
    assert api.stock(product_id) == 0
    assert api.http.get("/openapi.json").status_code == 200
