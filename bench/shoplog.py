"""A log of realistic shop traffic for the read-side benchmarks (verify, pipeline, rebuild).

The traffic is ``tests/support/workload.py``'s mix, from several threads at once through
``Shop`` (group commit on): merchants with auto-delivered products stocked with cards, a
two-level promoter chain, then buyers who mostly place and pay orders of one or two cards
(a third of them through a promoter code), and sometimes refund or review a paid order.
Every event in the log is what kami itself wrote; nothing is synthetic.

Generating 200,000 events takes a few minutes on the 2-core machine, so a run generates
the log once: the first benchmark that asks for it generates it in its database and
copies the events table to a temporary file (``COPY ... (FORMAT binary)``); the others
restore that file into their own fresh database in seconds. The file lives for one
``python -m bench`` process only: a log is never carried over from other code.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from domain.exceptions import KamiError
from domain.shop import Shop
from kami.bootstrap import Kami, build

DEFAULT_EVENTS = 200_000
THREADS = 8
MERCHANTS = 4
PRODUCTS_PER_MERCHANT = 5
BUYERS = 400
IMPORT_CHUNK = 10_000
# About 6.5 events per order step; stock one card per 3 events, generously.
EVENTS_PER_CARD = 3


def target_events() -> int:
    return int(os.environ.get("KAMI_BENCH_LOG_EVENTS", DEFAULT_EVENTS))


@dataclass(frozen=True)
class ShopLog:
    """What the log holds and how it was made."""

    events: int
    generated_in_s: float
    generated_events_per_s: float
    threads: int
    orders: int
    paid: int
    refunds: int
    reviews: int
    refused: int
    restored: bool = False
    restored_in_s: float = 0.0

    def describe(self) -> dict[str, Any]:
        return {
            "log_events": self.events,
            "log_generated_in_s": self.generated_in_s,
            "log_generated_events_per_s": self.generated_events_per_s,
            "log_threads": self.threads,
            "log_commands": {
                "orders": self.orders,
                "paid": self.paid,
                "refunds": self.refunds,
                "reviews": self.reviews,
                "refused": self.refused,
            },
        }


@dataclass
class _Buyer:
    """One thread's share of the traffic: its own random stream and its own paid orders."""

    rng: random.Random
    paid: list[tuple[uuid.UUID, uuid.UUID, str]] = field(default_factory=list)
    orders: int = 0
    payments: int = 0
    refunds: int = 0
    reviews: int = 0
    refused: int = 0


def _setup(shop: Shop, cards: int) -> tuple[list[tuple[uuid.UUID, uuid.UUID]], list[str]]:
    rng = random.Random(1)
    products: list[tuple[uuid.UUID, uuid.UUID]] = []
    per_product = max(1, cards // (MERCHANTS * PRODUCTS_PER_MERCHANT))
    for m in range(MERCHANTS):
        merchant = shop.register_merchant(f"bench merchant {m}", f"m{m}@example.com").merchant_id
        for p in range(PRODUCTS_PER_MERCHANT):
            price = rng.randint(100, 20_000)
            product = shop.list_product(merchant, f"bench product {m}.{p}", price, "auto").product_id
            keys = [f"LOG-{uuid.uuid4().hex}" for _ in range(per_product)]
            for start in range(0, len(keys), IMPORT_CHUNK):
                shop.import_cards(merchant, product, keys[start : start + IMPORT_CHUNK])
            products.append((merchant, product))
    top = shop.join_promoter("top", "top@example.com")
    mid = shop.join_promoter("mid", "mid@example.com", top.code)
    low = shop.join_promoter("low", "low@example.com", mid.code)
    return products, [top.code, mid.code, low.code]


def _step(shop: Shop, me: _Buyer, products: list[tuple[uuid.UUID, uuid.UUID]], codes: list[str]) -> int:
    """One buyer's action (workload.py's mix); returns the log position it reached."""
    rng = me.rng
    merchant, product = rng.choice(products)
    roll = rng.random()
    try:
        if roll < 0.75 or not me.paid:
            code = rng.choice([None, None, *codes])
            buyer = f"buyer{rng.randint(1, BUYERS)}@example.com"
            placed = shop.place_order(product, rng.randint(1, 2), buyer, code)
            me.orders += 1
            position = placed.position
            if rng.random() < 0.9:
                paid = shop.record_payment("sandbox", placed.order_id, uuid.uuid4().hex, placed.amount)
                me.payments += 1
                me.paid.append((merchant, placed.order_id, placed.token))
                position = paid.position
            return position
        if roll < 0.85:
            m, order_id, _ = rng.choice(me.paid)
            me.refunds += 1
            return shop.refund_order(order_id, "changed mind", m).position
        _, order_id, token = rng.choice(me.paid)
        me.reviews += 1
        return shop.review_order(order_id, token, rng.randint(1, 5), "").position
    except KamiError:
        me.refused += 1  # refunding or reviewing twice: refused, and part of the mix
        return 0


def generate(kami: Kami, events: int, threads: int = THREADS) -> ShopLog:
    """Drive the traffic until the log holds at least ``events`` events."""
    shop = kami.shop
    began = time.perf_counter()
    products, codes = _setup(shop, events // EVENTS_PER_CARD)
    buyers = [_Buyer(random.Random(100 + n)) for n in range(threads)]
    errors: list[BaseException] = []
    done = threading.Event()
    reached = [shop.position()]
    lock = threading.Lock()

    def work(me: _Buyer) -> None:
        try:
            while not done.is_set():
                position = _step(shop, me, products, codes)
                if position >= events:
                    done.set()
                elif position and position // 20_000 > reached[0] // 20_000:
                    with lock:
                        if position > reached[0]:
                            reached[0] = position
                            rate = position / (time.perf_counter() - began)
                            print(f"bench log: {position} events ({rate:.0f}/s)", file=sys.stderr, flush=True)
        except BaseException as error:
            errors.append(error)
            done.set()

    pool = [threading.Thread(target=work, args=(b,), name=f"bench-log-{n}") for n, b in enumerate(buyers)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if errors:
        raise RuntimeError(f"the traffic failed: {errors[0]!r}") from errors[0]
    seconds = time.perf_counter() - began
    total = shop.position()
    return ShopLog(
        events=total,
        generated_in_s=round(seconds, 1),
        generated_events_per_s=round(total / seconds, 1),
        threads=threads,
        orders=sum(b.orders for b in buyers),
        paid=sum(b.payments for b in buyers),
        refunds=sum(b.refunds for b in buyers),
        reviews=sum(b.reviews for b in buyers),
        refused=sum(b.refused for b in buyers),
    )


# ------------------------------------------------------------------- one log per run

_CACHE: dict[int, tuple[Path, ShopLog]] = {}
_DIR: Path | None = None


def _directory() -> Path:
    global _DIR
    if _DIR is None:
        _DIR = Path(tempfile.mkdtemp(prefix="kami-bench-log-"))
        atexit.register(shutil.rmtree, _DIR, True)
    return _DIR


def _copy_out(kami: Kami, path: Path) -> None:
    table = sql.Identifier(kami.shop.recorder.events_table_name)
    statement = sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(table)
    with (
        psycopg.connect(kami.database_url) as conn,
        conn.cursor() as cur,
        path.open("wb") as out,
        cur.copy(statement) as copy,
    ):
        for chunk in copy:
            out.write(chunk)


def _copy_in(kami: Kami, path: Path) -> None:
    name = kami.shop.recorder.events_table_name
    table = sql.Identifier(name)
    statement = sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(table)
    with psycopg.connect(kami.database_url) as conn:
        with conn.cursor() as cur, path.open("rb") as source, cur.copy(statement) as copy:
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        conn.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({}, 'notification_id'), max(notification_id)) FROM {}"
            ).format(sql.Literal(name), table)
        )
        conn.execute(sql.SQL("ANALYZE {}").format(table))


def _kept(events: int) -> tuple[Path, ShopLog] | None:
    """``KAMI_BENCH_LOG_FILE``: a log kept between runs by a developer iterating on one
    benchmark (never by ``make bench``), with its description beside it."""
    kept = os.environ.get("KAMI_BENCH_LOG_FILE")
    if not kept:
        return None
    path, about = Path(kept), Path(f"{kept}.json")
    if path.exists() and about.exists():
        log = ShopLog(**json.loads(about.read_text()))
        if log.events >= events:
            return path, log
    return None


def _keep(path: Path, log: ShopLog) -> None:
    kept = os.environ.get("KAMI_BENCH_LOG_FILE")
    if kept:
        shutil.copyfile(path, kept)
        Path(f"{kept}.json").write_text(json.dumps(asdict(log)))


def prepare(database_url: str, events: int | None = None) -> tuple[Kami, ShopLog]:
    """A Kami on ``database_url`` (an empty database) whose log holds the run's shop log."""
    events = events or target_events()
    kami = build(database_url)
    try:
        cached = _CACHE.get(events) or _kept(events)
        if cached is not None:
            path, log = cached
            began = time.perf_counter()
            _copy_in(kami, path)
            log = replace(log, restored=True, restored_in_s=round(time.perf_counter() - began, 1))
            print(f"bench log: restored {log.events} events in {log.restored_in_s} s", file=sys.stderr)
            return kami, log
        print(f"bench log: generating {events} events of shop traffic ...", file=sys.stderr, flush=True)
        log = generate(kami, events)
        print(
            f"bench log: {log.events} events in {log.generated_in_s} s ({log.generated_events_per_s:.0f}/s)",
            file=sys.stderr,
            flush=True,
        )
        path = _directory() / f"log-{events}.copy"
        _copy_out(kami, path)
        _CACHE[events] = (path, log)
        _keep(path, log)
        return kami, log
    except BaseException:
        kami.close()
        raise
