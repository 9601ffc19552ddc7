"""A hot product (issue 2): paid-and-delivered orders/s on ONE product with 8 concurrent
buyers, its stock in 16 card buckets (kami's design) against the same product with its
stock in a single bucket, so that every buyer queues on one stream.

One work unit is one order of one card: ``place_order`` then ``record_payment`` with the
right amount and a fresh txn id, answered ``delivered``. Both variants run through the same
``Shop`` as the app builds it (group commit on, aggregate cache on); the only difference is
the number of buckets the product's cards are spread over. ``Shop.list_product`` always
opens ``DEFAULT_BUCKETS`` (16), so the one-bucket product is listed by a small subclass
(``HotShop.list_product_in``) that runs the very same command with ``Product.create(...,
buckets=n)`` and ``n`` ``CardBucket.open``. The subclass also counts the attempts ``Shop._run``
retries after a concurrency conflict (``retries_per_order``); a command that still gives up
(``Busy``, safe to retry) is retried by the buyer and counted as ``busy``.

Each repeat lists a new product per variant, stocked with twice the cards it sells (the
import is not timed). The variants alternate (16 buckets first on even repeats) and the
figures are medians.
"""

from __future__ import annotations

import statistics
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from eventsourcing.persistence import IntegrityError
from psycopg_pool import ConnectionPool

from bench.orders import Config, _percentile, run_buyers
from domain.exceptions import Busy, ConcurrencyConflict
from domain.order import DELIVERED
from domain.product import DEFAULT_BUCKETS
from domain.shop import Shop
from domain.unit_of_work import UnitOfWork
from kami.bootstrap import Kami, eventsourcing_env
from kami.keystore import PostgresKeyring

SECTIONS = ("hot_product",)
PRICE = 990
STOCK_FACTOR = 2
IMPORT_CHUNK = 10_000
R = TypeVar("R")


# The same knobs as the orders benchmark, fewer orders: one product's stock per repeat.
DEFAULTS = Config(concurrency=8, orders=600, repeats=5, warmup=200)


class HotShop(Shop):
    """``Shop`` with its retries counted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conflicts = 0
        self._conflicts_lock = threading.Lock()

    def _attempt(self, command: Callable[[UnitOfWork], R], uow: UnitOfWork) -> R:
        try:
            return super()._attempt(command, uow)
        except (ConcurrencyConflict, IntegrityError):
            with self._conflicts_lock:
                self.conflicts += 1  # Shop._run retries it
            raise



def open_hot_shop(database_url: str) -> Kami:
    """What ``kami.bootstrap.build`` assembles, with ``HotShop`` for ``Shop``."""
    pool = ConnectionPool(database_url, min_size=1, max_size=8, open=True)
    shop = HotShop(eventsourcing_env(database_url), keyring=PostgresKeyring(pool))
    return Kami(shop=shop, pool=pool, database_url=database_url)


@dataclass(frozen=True)
class Run:
    variant: str
    buckets: int
    repeat: int
    orders: int
    seconds: float
    per_s: float
    p50_ms: float
    p95_ms: float
    retries: int
    busy: int


def stocked_product(shop: HotShop, merchant_id: uuid.UUID, buckets: int, cards: int) -> uuid.UUID:
    listed = shop.list_product(merchant_id, f"hot card x{buckets}", PRICE, "auto", buckets=buckets)
    product_id = listed.product_id
    if shop.get_product(product_id).stock != 0:
        raise RuntimeError("a new product has stock")
    keys = [f"HOT-{uuid.uuid4().hex}" for _ in range(cards)]
    for start in range(0, cards, IMPORT_CHUNK):
        chunk = keys[start : start + IMPORT_CHUNK]
        if shop.import_cards(merchant_id, product_id, chunk).imported != len(chunk):
            raise RuntimeError("an import lost cards")
    return product_id


def sell(
    shop: HotShop, product_id: uuid.UUID, orders: int, concurrency: int
) -> tuple[float, list[float], int]:
    """Sell ``orders`` cards from ``concurrency`` threads: (wall time, latencies, busy answers)."""
    tag = uuid.uuid4().hex[:12]
    lock = threading.Lock()
    busy = 0

    def patiently(call: Callable[[], R]) -> R:
        nonlocal busy
        while True:
            try:
                return call()
            except Busy:
                with lock:
                    busy += 1  # the contention did not clear: a buyer would simply retry

    def sell_one(i: int) -> None:
        placed = patiently(lambda: shop.place_order(product_id, 1, f"hot{i}@example.com"))
        paid = patiently(
            lambda: shop.record_payment("sandbox", placed.order_id, f"{tag}-{i}", placed.amount)
        )
        if paid.status != DELIVERED:
            raise RuntimeError(f"order {placed.order_id} ended {paid.status}")

    elapsed, latencies = run_buyers(orders, concurrency, sell_one, name="bench-hot")
    return elapsed, latencies, busy


def measure(
    shop: HotShop, merchant_id: uuid.UUID, variant: str, buckets: int, repeat: int, config: Config
) -> Run:
    cards = config.orders * STOCK_FACTOR
    product_id = stocked_product(shop, merchant_id, buckets, cards)
    before = shop.conflicts
    seconds, latencies, busy = sell(shop, product_id, config.orders, config.concurrency)
    retries = shop.conflicts - before
    left = shop.get_product(product_id).stock
    if left != cards - config.orders:
        raise RuntimeError(f"{left} cards left after selling {config.orders} of {cards}")
    run = Run(
        variant=variant,
        buckets=buckets,
        repeat=repeat,
        orders=config.orders,
        seconds=round(seconds, 3),
        per_s=round(config.orders / seconds, 1),
        p50_ms=round(_percentile(latencies, 0.50) * 1000, 2),
        p95_ms=round(_percentile(latencies, 0.95) * 1000, 2),
        retries=retries,
        busy=busy,
    )
    print(
        f"bench hot_product: {buckets:2} bucket(s) repeat {repeat}: {run.per_s:7.1f} orders/s"
        f" (p50 {run.p50_ms} ms, {retries / config.orders:.2f} retries/order, {busy} busy)",
        file=sys.stderr,
        flush=True,
    )
    return run


VARIANTS: dict[str, int] = {"kami": DEFAULT_BUCKETS, "one_bucket": 1}


def run(database_url: str, config: Config | None = None) -> dict[str, dict[str, Any]]:
    config = config or Config.from_env("KAMI_BENCH_HOT", DEFAULTS)
    kami = open_hot_shop(database_url)
    try:
        shop = kami.shop
        assert isinstance(shop, HotShop)
        merchant_id = shop.register_merchant("hot merchant", "hot@example.com").merchant_id
        warm = Config(config.concurrency, config.warmup, 1, 0)
        for variant, buckets in VARIANTS.items():
            measure(shop, merchant_id, variant, buckets, -1, warm)
        runs: list[Run] = []
        for repeat in range(config.repeats):
            order = list(VARIANTS) if repeat % 2 == 0 else list(reversed(VARIANTS))
            for variant in order:
                runs.append(measure(shop, merchant_id, variant, VARIANTS[variant], repeat, config))
    finally:
        kami.close()
    return {"hot_product": summarise(runs, config)}


def summarise(runs: Sequence[Run], config: Config) -> dict[str, Any]:
    def of(variant: str) -> list[Run]:
        return [r for r in runs if r.variant == variant]

    def median(variant: str, field: Callable[[Run], float]) -> float:
        return round(statistics.median(field(r) for r in of(variant)), 2)

    kami = median("kami", lambda r: r.per_s)
    one = median("one_bucket", lambda r: r.per_s)
    return {
        "buckets": DEFAULT_BUCKETS,
        "kami_per_s": kami,
        "one_bucket_per_s": one,
        "ratio": round(kami / one, 2),
        "concurrency": config.concurrency,
        "orders": config.orders,
        "repeats": config.repeats,
        "retries_per_order": median("kami", lambda r: r.retries / r.orders),
        "one_bucket_retries_per_order": median("one_bucket", lambda r: r.retries / r.orders),
        "busy": sum(r.busy for r in of("kami")),
        "one_bucket_busy": sum(r.busy for r in of("one_bucket")),
        "kami_p50_ms": median("kami", lambda r: r.p50_ms),
        "kami_p95_ms": median("kami", lambda r: r.p95_ms),
        "one_bucket_p50_ms": median("one_bucket", lambda r: r.p50_ms),
        "one_bucket_p95_ms": median("one_bucket", lambda r: r.p95_ms),
        "kami_runs_per_s": [r.per_s for r in of("kami")],
        "one_bucket_runs_per_s": [r.per_s for r in of("one_bucket")],
        "work": "one product; place_order (1 card) + record_payment, delivered; no promoter",
        "kami": f"Shop as built by the app, the product's stock in {DEFAULT_BUCKETS} card buckets",
        "baseline": "the same Shop, the product's stock in 1 card bucket (one stream for every buyer)",
        "runs": [asdict(r) for r in runs],
    }


def table(sections: dict[str, dict[str, Any]]) -> str:
    s = sections["hot_product"]
    rows = [
        f"hot_product: one product, {s['concurrency']} concurrent buyers,"
        f" {s['orders']} orders x {s['repeats']} repeats",
        f"  {'stock in':12} {'median/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'retries/order':>14}   runs/s",
    ]
    for variant, label, per_s in (
        ("kami", f"{s['buckets']} buckets", s["kami_per_s"]),
        ("one_bucket", "1 bucket", s["one_bucket_per_s"]),
    ):
        retries = s["retries_per_order"] if variant == "kami" else s["one_bucket_retries_per_order"]
        runs = " ".join(f"{v:.0f}" for v in s[f"{variant}_runs_per_s"])
        rows.append(
            f"  {label:12} {per_s:9.1f} {s[f'{variant}_p50_ms']:8.1f} {s[f'{variant}_p95_ms']:8.1f}"
            f" {retries:14.2f}   {runs}"
        )
    rows.append(f"  ratio {s['ratio']:.2f}x (16 buckets / 1 bucket)")
    return "\n".join(rows)
