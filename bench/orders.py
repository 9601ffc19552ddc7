"""Paid-and-delivered orders per second through Shop, against eventsourcing's plain way.

One work unit is one order of one card: ``place_order`` then ``record_payment`` with the
right amount and a fresh txn id, and the answer must say ``delivered``. Half of the orders
carry a promoter code whose promoter has a referrer, so two commissions are in the work.

- kami: ``Shop`` as the app builds it: group commit on, aggregate cache on.
- baseline: the same ``Shop`` with ``group_commit=False`` and no aggregate cache, so each
  command is one ``events.put`` (what ``app.save`` does) and every aggregate is replayed
  from the store: eventsourcing's plain way.

Each repeat uses a product of its own, stocked with twice as many cards as it sells (the
import is not timed), so every repeat of both systems starts from the same state. The systems
alternate (kami first on even repeats, baseline first on odd ones) so that they share the
machine's noise; the figures are medians over the repeats.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from psycopg_pool import ConnectionPool

from domain.order import DELIVERED
from domain.shop import Shop, ShopSettings
from kami.bootstrap import Kami, build, eventsourcing_env
from kami.keystore import PostgresKeyring

SECTIONS = ("orders",)
GOAL = 3.0
PRICE = 990  # fen
PROVIDER = "sandbox"
IMPORT_CHUNK = 10_000
# Cards imported per order sold: the product never runs low, so a buyer's first bucket
# almost always has a card, as in a shop's steady state rather than its sell-out.
STOCK_FACTOR = 2


@dataclass(frozen=True)
class Config:
    concurrency: int = 8
    orders: int = 1500
    repeats: int = 5
    warmup: int = 300

    @classmethod
    def from_env(cls, prefix: str = "KAMI_BENCH_ORDERS", defaults: Config | None = None) -> Config:
        """``defaults`` (these class defaults if None), each overridden by ``{prefix}_NAME``."""
        base = defaults or cls()

        def number(name: str, default: int) -> int:
            return int(os.environ.get(f"{prefix}_{name}", default))

        return cls(
            concurrency=number("CONCURRENCY", base.concurrency),
            orders=number("COUNT", base.orders),
            repeats=number("REPEATS", base.repeats),
            warmup=number("WARMUP", base.warmup),
        )


@dataclass(frozen=True)
class Run:
    system: str
    repeat: int
    orders: int
    seconds: float
    per_s: float
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class Catalogue:
    """What every repeat sells: one merchant and a promoter with a referrer."""

    merchant_id: uuid.UUID
    promoter_code: str


def open_kami(database_url: str) -> Kami:
    return build(database_url)


def open_baseline(database_url: str) -> Kami:
    """The same composition as ``build``, but plain eventsourcing: no group commit, no cache."""
    pool = ConnectionPool(database_url, min_size=1, max_size=8, open=True)
    env = eventsourcing_env(database_url) | {"AGGREGATE_CACHE_MAXSIZE": ""}
    shop = Shop(env, keyring=PostgresKeyring(pool), settings=ShopSettings(group_commit=False))
    if shop.repository.cache is not None or shop.settings.group_commit:
        raise RuntimeError("the baseline must run without aggregate cache and group commit")
    return Kami(shop=shop, pool=pool, database_url=database_url)


def prepare_catalogue(shop: Shop) -> Catalogue:
    merchant = shop.register_merchant("bench merchant", "bench@example.com")
    upper = shop.join_promoter("bench referrer", "referrer@example.com")
    sharer = shop.join_promoter("bench sharer", "sharer@example.com", upper.code)
    return Catalogue(merchant.merchant_id, sharer.code)


def stocked_product(shop: Shop, catalogue: Catalogue, cards: int) -> uuid.UUID:
    product = shop.list_product(catalogue.merchant_id, "bench card", PRICE, "auto")
    keys = [f"BENCH-{uuid.uuid4().hex}" for _ in range(cards)]
    for start in range(0, cards, IMPORT_CHUNK):
        chunk = keys[start : start + IMPORT_CHUNK]
        imported = shop.import_cards(catalogue.merchant_id, product.product_id, chunk)
        if imported.imported != len(chunk):
            raise RuntimeError(f"imported {imported.imported} of {len(chunk)} cards")
    return product.product_id


def run_buyers(
    orders: int, concurrency: int, sell_one: Callable[[int], None], name: str = "bench-buyer"
) -> tuple[float, list[float]]:
    """Run ``sell_one(i)`` for i = 1..orders from ``concurrency`` threads released together;
    return the wall time and each order's latency. The first error stops every buyer."""
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    errors: list[BaseException] = []
    start = threading.Barrier(concurrency + 1)

    def next_index() -> int | None:
        nonlocal issued
        with lock:
            if issued >= orders or errors:
                return None
            issued += 1
            return issued

    def buyer() -> None:
        mine: list[float] = []
        start.wait()
        try:
            while (i := next_index()) is not None:
                began = time.perf_counter()
                sell_one(i)
                mine.append(time.perf_counter() - began)
        except BaseException as error:
            with lock:
                errors.append(error)
        finally:
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=buyer, name=f"{name}-{n}") for n in range(concurrency)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} buyers failed; the first: {errors[0]!r}") from errors[0]
    if len(latencies) != orders:
        raise RuntimeError(f"{len(latencies)} of {orders} orders delivered")
    return elapsed, latencies


def sell(
    shop: Shop, catalogue: Catalogue, product_id: uuid.UUID, orders: int, concurrency: int
) -> tuple[float, list[float]]:
    """Sell ``orders`` cards from ``concurrency`` threads; return the wall time and latencies."""
    tag = uuid.uuid4().hex[:12]

    def sell_one(i: int) -> None:
        code = catalogue.promoter_code if i % 2 == 0 else None
        placed = shop.place_order(product_id, 1, f"buyer{i}@example.com", code)
        paid = shop.record_payment(PROVIDER, placed.order_id, f"{tag}-{i}", placed.amount)
        if paid.status != DELIVERED or paid.duplicate:
            raise RuntimeError(f"order {placed.order_id} ended {paid.status}")

    return run_buyers(orders, concurrency, sell_one)


def stock_and_sell(
    shop: Shop, catalogue: Catalogue, orders: int, concurrency: int
) -> tuple[float, list[float]]:
    """Sell ``orders`` cards of a freshly stocked product; check the stock afterwards."""
    cards = orders * STOCK_FACTOR
    product_id = stocked_product(shop, catalogue, cards)
    elapsed, latencies = sell(shop, catalogue, product_id, orders, concurrency)
    left = shop.get_product(product_id).stock
    if left != cards - orders:
        raise RuntimeError(f"{left} cards in stock after selling {orders} of {cards}")
    return elapsed, latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(
    name: str,
    shop: Shop,
    catalogue: Catalogue,
    repeat: int,
    config: Config,
) -> Run:
    seconds, latencies = stock_and_sell(shop, catalogue, config.orders, config.concurrency)
    run = Run(
        system=name,
        repeat=repeat,
        orders=config.orders,
        seconds=round(seconds, 3),
        per_s=round(config.orders / seconds, 1),
        p50_ms=round(_percentile(latencies, 0.50) * 1000, 2),
        p95_ms=round(_percentile(latencies, 0.95) * 1000, 2),
    )
    print(
        f"bench orders: {name:8} repeat {repeat}: {run.per_s:8.1f} orders/s"
        f" ({run.orders} in {run.seconds:.2f} s, p50 {run.p50_ms} ms)",
        file=sys.stderr,
        flush=True,
    )
    return run


def run(database_url: str, config: Config | None = None) -> dict[str, dict[str, Any]]:
    config = config or Config.from_env()
    systems: dict[str, Kami] = {}
    try:
        systems["kami"] = open_kami(database_url)
        systems["baseline"] = open_baseline(database_url)
        catalogue = prepare_catalogue(systems["kami"].shop)
        for system in systems.values():
            stock_and_sell(system.shop, catalogue, config.warmup, config.concurrency)
        runs: list[Run] = []
        for repeat in range(config.repeats):
            order: list[str] = ["kami", "baseline"] if repeat % 2 == 0 else ["baseline", "kami"]
            for name in order:
                runs.append(measure(name, systems[name].shop, catalogue, repeat, config))
    finally:
        for system in systems.values():
            system.close()
    return {"orders": summarise(runs, config)}


def summarise(runs: list[Run], config: Config) -> dict[str, Any]:
    def of(name: str, field: Callable[[Run], float]) -> list[float]:
        return [field(r) for r in runs if r.system == name]

    kami = statistics.median(of("kami", lambda r: r.per_s))
    baseline = statistics.median(of("baseline", lambda r: r.per_s))
    return {
        "kami_per_s": round(kami, 1),
        "baseline_per_s": round(baseline, 1),
        "concurrency": config.concurrency,
        "ratio": round(kami / baseline, 2),
        "goal_ratio": GOAL,
        "orders": config.orders,
        "repeats": config.repeats,
        "kami_runs_per_s": of("kami", lambda r: r.per_s),
        "baseline_runs_per_s": of("baseline", lambda r: r.per_s),
        "kami_p50_ms": round(statistics.median(of("kami", lambda r: r.p50_ms)), 2),
        "kami_p95_ms": round(statistics.median(of("kami", lambda r: r.p95_ms)), 2),
        "baseline_p50_ms": round(statistics.median(of("baseline", lambda r: r.p50_ms)), 2),
        "baseline_p95_ms": round(statistics.median(of("baseline", lambda r: r.p95_ms)), 2),
        "work": "place_order (1 card) + record_payment, delivered; half with a 2-level promoter code",
        "kami": "Shop: group commit on, aggregate cache on",
        "baseline": "Shop(group_commit=False), no aggregate cache: one events.put per command",
        "runs": [asdict(r) for r in runs],
    }


def table(sections: dict[str, dict[str, Any]]) -> str:
    s = sections["orders"]
    header = (
        f"orders: paid-and-delivered orders/s, {s['concurrency']} concurrent callers,"
        f" {s['orders']} orders x {s['repeats']} repeats"
    )
    rows = [
        header,
        f"  {'system':10} {'median/s':>9} {'p50 ms':>8} {'p95 ms':>8}   runs/s",
    ]
    for name in ("kami", "baseline"):
        runs = " ".join(f"{v:.0f}" for v in s[f"{name}_runs_per_s"])
        rows.append(
            f"  {name:10} {s[f'{name}_per_s']:9.1f} {s[f'{name}_p50_ms']:8.1f}"
            f" {s[f'{name}_p95_ms']:8.1f}   {runs}"
        )
    verdict = "meets" if s["ratio"] >= s["goal_ratio"] else "BELOW"
    rows.append(f"  ratio {s['ratio']:.2f}x ({verdict} the goal of {s['goal_ratio']:g}x)")
    return "\n".join(rows)
