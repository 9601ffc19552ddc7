"""Orders over HTTP against a real ``kami serve`` (issue 6, "Load"): at least 500 orders/s
with p99 under 50 ms on the 2-core machine.

The server: ``python -m kami.cli serve --host 127.0.0.1 --port P --workers W`` as a
subprocess, against the benchmark's fresh database (``KAMI_DATABASE_URL``), random
secrets and a temporary ``KAMI_HOME``, as ops run it: W = 2 by default (one process per
core; set ``KAMI_BENCH_HTTP_SERVER_WORKERS``), a supervisor and W uvicorn processes on
uvloop and httptools sharing the port, no access log, and the log follower (read models,
process managers, hash chain) in one more process of its own. The server's CPU counts
them all.
Each phase starts a fresh server, which sets up its own merchants, auto-delivered
products and cards over the API once ``/healthz`` answers.

The load generator: a separate process (``multiprocessing``, spawned) with ``workers``
threads, each a closed loop over its own keep-alive connection (a plain socket speaking
HTTP/1.1, the lightest client at hand, so that the generator takes as little as it can
of the two cores it shares with the server and PostgreSQL) for ``seconds`` after a warm-up:

1. ``POST /v1/orders`` (one card of a random product),
2. ``POST /v1/payments/notify``: the signed sandbox callback with the exact amount; it
   answers once the order is delivered,
3. ``GET /v1/orders/{id}?token=``: the buyer reads the order, again until the cards show.

An order counts when its cards are readable; its latency runs from sending the callback
to reading the cards (2 + 3). ``orders_per_s`` is the orders completed in the measured
window over its length.

Phases: ``repeats`` (3) of kami and as many of the baseline, alternated (kami first on
even repeats), each with ``workers`` (16) clients; the section's figures are kami's
medians. The baseline is the same server with ``KAMI_GROUP_COMMIT=off``: eventsourcing's
plain write path (a transaction per command, every aggregate replayed from the store)
behind the same API. Then ``light`` (2 clients: the latency when little queues),
``moderate`` (8 clients: what the server carries with less queueing) and
``one_process`` (``--workers 1``, 16 clients). Per-IP rate limits are off for the server
(loopback is exempt by default anyway). The CPU seconds of the server, the generator and
the database's backends in each window say where the time goes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import multiprocessing
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.cpu import CpuMeter, backends, main_thread_seconds
from bench.machine import Steal, reference_ms
from bench.sampler import kami_command
from kami.settings import SECRET_VARS

SECTIONS = ("http",)
GOAL_ORDERS_PER_S = 500
GOAL_P99_MS = 50.0
PRICE = "9.90"
IMPORT_CHUNK = 5_000


@dataclass(frozen=True)
class Config:
    seconds: float = 20.0
    warmup_s: float = 3.0
    workers: int = 16
    # A second phase at light load, for the latency when nothing queues.
    light_workers: int = 2
    # Between the two: how much the server carries with the p99 still under the goal.
    moderate_workers: int = 8
    products: int = 8
    cards_per_product: int = 2_500
    # `kami serve --workers`: API processes sharing the port, beside the follower's own
    # process. Two on this 2-core machine: one process is held to one core by its GIL.
    server_workers: int = 2
    # Phases of kami and of the baseline, alternated; the figures are their medians.
    repeats: int = 3

    @classmethod
    def from_env(cls) -> Config:
        def number(name: str, default: float) -> float:
            return float(os.environ.get(f"KAMI_BENCH_HTTP_{name}", default))

        return cls(
            seconds=number("SECONDS", cls.seconds),
            warmup_s=number("WARMUP_S", cls.warmup_s),
            workers=int(number("WORKERS", cls.workers)),
            light_workers=int(number("LIGHT_WORKERS", cls.light_workers)),
            moderate_workers=int(number("MODERATE_WORKERS", cls.moderate_workers)),
            products=int(number("PRODUCTS", cls.products)),
            cards_per_product=int(number("CARDS", cls.cards_per_product)),
            server_workers=int(number("SERVER_WORKERS", cls.server_workers)),
            repeats=int(number("REPEATS", cls.repeats)),
        )


# ----------------------------------------------------------------------------- client


class Client:
    """One keep-alive HTTP/1.1 connection: JSON in, (status, JSON) out.

    A plain socket rather than ``http.client``, which parses each response's headers
    with the ``email`` package: the generator shares the two cores with what it
    measures, and this costs it a fraction of the CPU. It reads what kami answers:
    a status line, headers, and a body of ``Content-Length`` bytes.
    """

    def __init__(self, port: int) -> None:
        self._port = port
        self._sock: socket.socket | None = None
        self._buffer = b""

    def call(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        lines.append(f"Content-Length: {len(body or b'')}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
        for attempt in range(2):
            try:
                if self._sock is None:
                    self._sock = socket.create_connection(("127.0.0.1", self._port), timeout=30)
                    self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._buffer = b""
                self._sock.sendall(request)
                return self._response()
            except (TimeoutError, ConnectionError):
                # A keep-alive connection the server closed: reconnect once.
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _response(self) -> tuple[int, Any]:
        while b"\r\n\r\n" not in self._buffer:
            self._receive()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length, closing = 0, False
        for line in header_lines:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                closing = b"close" in value.lower()
            elif name == b"transfer-encoding":
                raise ValueError("the load generator reads Content-Length bodies only")
        self._buffer = rest
        while len(self._buffer) < length:
            self._receive()
        data, self._buffer = self._buffer[:length], self._buffer[length:]
        if closing:
            self.close()
        return status, json.loads(data) if data else None

    def _receive(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        self._buffer += chunk

    def json(
        self, method: str, path: str, payload: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        return self.call(
            method,
            path,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def signed_callback(secret: str, order_id: str, amount: str, txn_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"order_id": order_id, "amount": amount, "txn_id": txn_id}).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Kami-Signature": signature, "Content-Type": "application/json"}


# ------------------------------------------------------------------------- generator


@dataclass
class Tally:
    """What one worker saw: per order completed in the window, its timings (seconds)."""

    done_at: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    place: list[float] = field(default_factory=list)
    pay: list[float] = field(default_factory=list)
    rereads: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def _worker(port: int, secret: str, products: list[str], until: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    client = Client(port)
    try:
        while time.time() < until:
            product = rng.choice(products)
            began = time.perf_counter()
            status, placed = client.json(
                "POST", "/v1/orders", {"product_id": product, "quantity": 1, "contact": f"b{seed}@x"}
            )
            if status != 201:
                tally.error(f"place {status} {placed.get('error', {}).get('code') if placed else ''}")
                continue
            order_id, token = placed["order_id"], placed["token"]
            body, headers = signed_callback(secret, order_id, placed["amount"], uuid.uuid4().hex)
            sent = time.perf_counter()
            status, paid = client.call("POST", "/v1/payments/notify", body, headers)
            answered = time.perf_counter()
            if status != 200 or paid.get("status") != "delivered":
                tally.error(f"pay {status} {paid.get('status') if paid else ''}")
                continue
            while True:
                status, order = client.call("GET", f"/v1/orders/{order_id}?token={token}")
                if status == 200 and order.get("cards"):
                    break
                tally.rereads += 1
                if status != 200 or time.perf_counter() - sent > 5:
                    tally.error(f"read {status}")
                    break
            else:  # pragma: no cover - the loop only ends by break
                pass
            if status != 200 or not order.get("cards"):
                continue
            seen = time.perf_counter()
            tally.done_at.append(time.time())
            tally.latency.append(seen - sent)
            tally.place.append(sent - began)
            tally.pay.append(answered - sent)
    finally:
        client.close()


def generate(port: int, secret: str, products: list[str], workers: int, until: float) -> dict[str, Any]:
    """The load generator's process: ``workers`` closed loops until ``until`` (epoch s)."""
    tallies = [Tally() for _ in range(workers)]
    threads = [
        threading.Thread(target=_worker, args=(port, secret, products, until, t, n), daemon=True)
        for n, t in enumerate(tallies)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "done_at": [x for t in tallies for x in t.done_at],
        "latency": [x for t in tallies for x in t.latency],
        "place": [x for t in tallies for x in t.place],
        "pay": [x for t in tallies for x in t.pay],
        "rereads": sum(t.rereads for t in tallies),
        "errors": _merge([t.errors for t in tallies]),
    }


def _merge(counts: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            merged[k] = merged.get(k, 0) + v
    return merged


def _generator_main(
    conn: Any, port: int, secret: str, products: list[str], workers: int, until: float
) -> None:
    try:
        conn.send(("ok", generate(port, secret, products, workers, until)))
    except BaseException as error:  # reported to the parent, which raises it
        conn.send(("error", repr(error)))
    finally:
        conn.close()


# ---------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``kami serve`` on a free loopback port, against ``database_url``."""

    def __init__(
        self,
        database_url: str,
        home: Path,
        *,
        follower: bool = True,
        workers: int = 1,
        group_commit: bool = True,
    ) -> None:
        self.port = _free_port()
        self.secrets = {name: secrets.token_urlsafe(24) for name in SECRET_VARS}
        env = {
            **os.environ,
            "KAMI_DATABASE_URL": database_url,
            "KAMI_HOME": str(home),
            **self.secrets,
            # Risk control's per-IP limits would throttle one client address; loopback is
            # exempt by default, and the limits are off here besides.
            "KAMI_RATE_LIMIT_ORDERS": "0",
            "KAMI_RATE_LIMIT_LOOKUPS": "0",
            "KAMI_RATE_LIMIT_CALLBACKS": "0",
            # Off for the baseline: eventsourcing's plain write path behind the same API.
            "KAMI_GROUP_COMMIT": "on" if group_commit else "off",
        }
        env.pop("KAMI_KAFKA_BOOTSTRAP", None)
        if not follower:
            # The scale-out mode: with a broker named, kami serve only serves the API and
            # leaves the read models to kami relay + kami consume (not run here: the
            # measured path reads the order aggregate, never a read model). Nothing
            # connects to this address.
            env["KAMI_KAFKA_BOOTSTRAP"] = "127.0.0.1:9"
        self._log = home / f"serve-{self.port}.log"
        argv = ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *kami_command("serve"), *argv],
                env=env,
                stdout=log,
                stderr=log,
            )

    def pids(self) -> list[int]:
        """The server's processes: with ``--workers N`` the supervisor and its workers."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [self.process.pid, *(c.pid for c in children)]

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kami serve exited:\n{self._log.read_text(errors='replace')[-3000:]}")
            try:
                client = Client(self.port)
                status, _ = client.call("GET", "/healthz")
                client.close()
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError("kami serve did not answer /healthz")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def set_up(server: Server, config: Config) -> list[str]:
    """Two merchants and their stocked products, over the API; returns the product ids."""
    client = Client(server.port)
    admin = {"Authorization": f"Bearer {server.secrets['KAMI_ADMIN_TOKEN']}"}
    products: list[str] = []
    try:
        keys: list[dict[str, str]] = []
        for m in range(2):
            status, merchant = client.json(
                "POST", "/v1/merchants", {"name": f"load {m}", "contact": "m@x"}, admin
            )
            if status != 201:
                raise RuntimeError(f"POST /v1/merchants answered {status}: {merchant}")
            keys.append({"Authorization": f"Bearer {merchant['api_key']}"})
        for p in range(config.products):
            key = keys[p % len(keys)]
            status, product = client.json(
                "POST", "/v1/products", {"title": f"load card {p}", "price": PRICE, "delivery": "auto"}, key
            )
            if status != 201:
                raise RuntimeError(f"POST /v1/products answered {status}: {product}")
            product_id = product["product_id"]
            cards = [f"LOAD-{uuid.uuid4().hex}" for _ in range(config.cards_per_product)]
            for start in range(0, len(cards), IMPORT_CHUNK):
                status, imported = client.json(
                    "POST",
                    f"/v1/products/{product_id}/cards",
                    {"cards": cards[start : start + IMPORT_CHUNK]},
                    key,
                )
                if status != 200:
                    raise RuntimeError(f"the card import answered {status}: {imported}")
            products.append(product_id)
    finally:
        client.close()
    return products


# ------------------------------------------------------------------------------- run


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def _ms(values: list[float], q: float) -> float:
    return round(_percentile(values, q) * 1000, 2)


def load(
    server: Server, database_url: str, products: list[str], workers: int, config: Config
) -> dict[str, Any]:
    """One phase: ``workers`` closed loops in a new generator process; its summary."""
    # The machine's speed around the phase: read before and after, not during, when the
    # load would slow the reading itself.
    reference_before = reference_ms()
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    start = time.time() + 1.0  # the generator's process starts meanwhile
    window = (start + config.warmup_s, start + config.warmup_s + config.seconds)
    secret = server.secrets["KAMI_PAYMENT_SECRET"]
    generator = context.Process(
        target=_generator_main,
        args=(send, server.port, secret, products, workers, window[1]),
        name="kami-bench-load",
    )
    generator.start()
    send.close()
    steal = Steal()
    with psycopg.connect(database_url, autocommit=True) as conn:
        meter = CpuMeter(
            {
                "server": server.pids,
                "generator": lambda: [generator.pid] if generator.pid else [],
                "postgres": lambda: backends(conn),
            }
        )
        time.sleep(max(0.0, window[0] - time.time()))
        meter.start()
        steal.start()
        loop_before = sum(main_thread_seconds(pid) for pid in server.pids())
        time.sleep(max(0.0, window[1] - time.time()))
        cpu = meter.stop()
        steal_pct = steal.stop()
        loop_after = sum(main_thread_seconds(pid) for pid in server.pids())
        cpu["server_event_loop"] = round(loop_after - loop_before, 2)
        if not receive.poll(60):
            raise TimeoutError("the load generator did not report")
        kind, result = receive.recv()
    generator.join(timeout=30)
    if kind != "ok":
        raise RuntimeError(f"the load generator failed: {result}")
    summary = summarise(result, window, cpu, workers, config.server_workers)
    summary["reference_ms"] = round((reference_before + reference_ms()) / 2, 2)
    summary["steal_pct"] = steal_pct
    print(
        f"bench http: {workers:2} clients: {summary['orders_per_s']:6.1f} orders/s,"
        f" p50 {summary['p50_ms']} / p99 {summary['p99_ms']} ms; the machine: reference loop"
        f" {summary['reference_ms']} ms, {summary['steal_pct']}% stolen",
        file=sys.stderr,
        flush=True,
    )
    return summary


# What the section keeps of the baseline and of each other phase.
FIGURES = (
    "workers",
    "orders_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "server_cpu_per_order_ms",
    "cpu_s",
    "cores_busy",
    "reference_ms",
    "steal_pct",
)


def phase(
    database_url: str, home: Path, config: Config, *, clients: int, workers: int, group_commit: bool = True
) -> dict[str, Any]:
    """A fresh server on the benchmark's database, its own products, one measured phase."""
    server = Server(database_url, home, workers=workers, group_commit=group_commit)
    try:
        server.wait_healthy()
        products = set_up(server, config)
        summary = load(server, database_url, products, clients, replace(config, server_workers=workers))
    finally:
        server.stop()
    summary["baseline"] = not group_commit
    return summary


def run(database_url: str, config: Config | None = None) -> dict[str, dict[str, Any]]:
    config = config or Config.from_env()
    kami: list[dict[str, Any]] = []
    plain: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kami-bench-http-") as home:
        for repeat in range(config.repeats):
            # kami first on even repeats, the baseline first on odd ones: both share the
            # machine's drifts.
            for group_commit in (True, False) if repeat % 2 == 0 else (False, True):
                runs = kami if group_commit else plain
                runs.append(
                    phase(
                        database_url,
                        Path(home),
                        config,
                        clients=config.workers,
                        workers=config.server_workers,
                        group_commit=group_commit,
                    )
                )
        light = phase(
            database_url, Path(home), config, clients=config.light_workers, workers=config.server_workers
        )
        moderate = phase(
            database_url, Path(home), config, clients=config.moderate_workers, workers=config.server_workers
        )
        one = phase(database_url, Path(home), config, clients=config.workers, workers=1)
    section = _median_phase(kami)
    section["repeats"] = config.repeats
    section["per_repeat_orders_per_s"] = [r["orders_per_s"] for r in kami]
    section["per_repeat_p99_ms"] = [r["p99_ms"] for r in kami]
    section["per_repeat_reference_ms"] = [r["reference_ms"] for r in kami]
    section["products"] = config.products
    baseline = _median_phase(plain)
    section["baseline"] = {k: baseline[k] for k in FIGURES}
    section["baseline"]["per_repeat_orders_per_s"] = [r["orders_per_s"] for r in plain]
    section["baseline"]["what"] = (
        "the same kami serve with KAMI_GROUP_COMMIT=off: eventsourcing's plain write path"
        " (one transaction per command, every aggregate replayed from the store)"
    )
    section["ratio"] = (
        round(section["orders_per_s"] / baseline["orders_per_s"], 2) if baseline["orders_per_s"] else None
    )
    section["light"] = {k: light[k] for k in FIGURES}
    section["moderate"] = {k: moderate[k] for k in FIGURES}
    section["one_process"] = {k: one[k] for k in FIGURES}
    return {"http": section}


def _median_phase(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' figures as one: each number the median over the runs, the rest the first's."""
    merged = dict(runs[0])
    for key in (
        "orders_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "place_p50_ms",
        "place_p99_ms",
        "callback_p50_ms",
        "callback_p99_ms",
        "mean_ms",
        "cores_busy",
        "server_cpu_per_order_ms",
        "reference_ms",
        "steal_pct",
    ):
        values = [r[key] for r in runs if r.get(key) is not None]
        merged[key] = round(statistics.median(values), 2) if values else None
    merged["cpu_s"] = {k: round(statistics.median(r["cpu_s"][k] for r in runs), 2) for k in runs[0]["cpu_s"]}
    merged["orders"] = sum(r["orders"] for r in runs)
    merged["rereads"] = sum(r["rereads"] for r in runs)
    merged["errors"] = _merge([r["errors"] for r in runs])
    merged["meets_goal"] = merged["orders_per_s"] >= GOAL_ORDERS_PER_S and merged["p99_ms"] < GOAL_P99_MS
    return merged


def summarise(
    result: dict[str, Any],
    window: tuple[float, float],
    cpu: dict[str, float],
    workers: int,
    server_workers: int = 1,
) -> dict[str, Any]:
    inside = [i for i, t in enumerate(result["done_at"]) if window[0] <= t <= window[1]]

    def pick(key: str) -> list[float]:
        values: list[float] = result[key]
        return [values[i] for i in inside]

    latency, place, pay = pick("latency"), pick("place"), pick("pay")
    seconds = window[1] - window[0]
    orders_per_s = round(len(inside) / seconds, 1)
    p99 = _ms(latency, 0.99)
    return {
        "orders_per_s": orders_per_s,
        "p50_ms": _ms(latency, 0.50),
        "p95_ms": _ms(latency, 0.95),
        "p99_ms": p99,
        "goal_orders_per_s": GOAL_ORDERS_PER_S,
        "goal_p99_ms": GOAL_P99_MS,
        "meets_goal": orders_per_s >= GOAL_ORDERS_PER_S and p99 < GOAL_P99_MS,
        "orders": len(inside),
        "seconds": seconds,
        "workers": workers,
        "latency": "payment callback sent -> the buyer's GET /v1/orders/{id} shows the cards",
        "place_p50_ms": _ms(place, 0.50),
        "place_p99_ms": _ms(place, 0.99),
        "callback_p50_ms": _ms(pay, 0.50),
        "callback_p99_ms": _ms(pay, 0.99),
        "mean_ms": round(statistics.fmean(latency) * 1000, 2) if latency else None,
        "rereads": result["rereads"],
        "errors": result["errors"],
        "cpu_s": cpu,
        "cores_busy": round(sum(v for k, v in cpu.items() if k != "server_event_loop") / seconds, 2),
        "server_cpu_per_order_ms": round(cpu["server"] / len(inside) * 1000, 2) if inside else None,
        "server_workers": server_workers,
        "server": (
            "kami serve (one uvicorn process on uvloop + httptools, no access log, the embedded"
            " follower in it) on loopback"
            if server_workers == 1
            else f"kami serve --workers {server_workers} (a supervisor and {server_workers} uvicorn"
            " processes on one port, and a process following the log) on loopback"
        ),
        "generator": f"a spawned process, {workers} threads in closed loops, keep-alive HTTP/1.1 sockets",
    }


def table(sections: dict[str, dict[str, Any]]) -> str:
    s = sections["http"]
    verdict = "meets" if s["meets_goal"] else "BELOW"
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in s["cpu_s"].items() if k != "server_event_loop")
    b, light, moderate, one = s["baseline"], s["light"], s["moderate"], s["one_process"]
    return "\n".join(
        [
            f"http: place + pay + read over HTTP against kami serve --workers {s['server_workers']},"
            f" {s['workers']} closed-loop clients, {s['seconds']:.0f} s x {s['repeats']} (medians)",
            f"  kami:     {s['orders_per_s']:.1f} orders/s {s['per_repeat_orders_per_s']};"
            f" callback sent -> cards read: p50 {s['p50_ms']:.1f} / p95 {s['p95_ms']:.1f}"
            f" / p99 {s['p99_ms']:.1f} ms",
            f"  baseline: {b['orders_per_s']:.1f} orders/s {b['per_repeat_orders_per_s']};"
            f" p50 {b['p50_ms']:.1f} / p95 {b['p95_ms']:.1f} / p99 {b['p99_ms']:.1f} ms"
            f" (KAMI_GROUP_COMMIT=off); kami / baseline = {s['ratio']}x",
            f"  {verdict} the goal of {s['goal_orders_per_s']} orders/s with p99 < {s['goal_p99_ms']:g} ms",
            f"  at light load ({light['workers']} clients): {light['orders_per_s']:.1f} orders/s,"
            f" p50 {light['p50_ms']:.1f} / p95 {light['p95_ms']:.1f} / p99 {light['p99_ms']:.1f} ms",
            f"  at moderate load ({moderate['workers']} clients): {moderate['orders_per_s']:.1f} orders/s,"
            f" p50 {moderate['p50_ms']:.1f} / p95 {moderate['p95_ms']:.1f} / p99 {moderate['p99_ms']:.1f} ms",
            f"  one API process (--workers 1, {one['workers']} clients): {one['orders_per_s']:.1f} orders/s,"
            f" p50 {one['p50_ms']:.1f} / p99 {one['p99_ms']:.1f} ms, server CPU per order"
            f" {one['server_cpu_per_order_ms']} ms",
            f"  the machine around kami's phases: a reference loop of {s['reference_ms']} ms of CPU"
            f" {s['per_repeat_reference_ms']} (lower is faster; bench/machine.py),"
            f" {s['steal_pct']}% of the time stolen",
            f"  CPU seconds in the window: {cpu} ({s['cores_busy']:.2f} cores busy); the server's"
            f" event loops {s['cpu_s']['server_event_loop']:.1f}; server CPU per order"
            f" {s['server_cpu_per_order_ms']} ms",
        ]
    )
