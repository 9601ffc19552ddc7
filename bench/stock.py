"""A product with a large stock, as it sells: one thread's CPU per order and per product
page, kami against eventsourcing's plain way, at 0%, 50% and 90% of its cards sold.

One product of ``cards`` card keys (16 buckets, as ``Shop.list_product`` lists it). At each
point kami first sells, untimed, with 8 buyers (``bench.orders.sell``: half of the orders
through a promoter code), up to that share of the stock; then, on that same product and
database, each system in turn (kami first on even points):

- ``place_order`` (one card) and ``record_payment``, answered ``delivered``, ``orders``
  times from one thread: the thread's CPU per order;
- ``get_product`` (whose stock counts every bucket) ``reads`` times: CPU per read.

*kami*: ``Shop`` as the app builds it (group commit, aggregate cache). *baseline*: the same
``Shop`` with group commit off and no aggregate cache (``bench.orders.open_baseline``):
eventsourcing's plain way, every aggregate replayed from the store on each command, the
card buckets with all their events. Thread CPU, not wall time: the figure is what the
work costs, whatever else the machine does meanwhile.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.orders import (
    PROVIDER,
    Catalogue,
    open_baseline,
    open_kami,
    prepare_catalogue,
    sell,
    stocked_product,
)
from domain.order import DELIVERED
from domain.shop import Shop

SECTIONS = ("stock",)
SOLD_SHARES = (0, 50, 90)


@dataclass(frozen=True)
class Config:
    cards: int = 16_000
    orders: int = 200
    reads: int = 20
    # The baseline replays whole buckets on every command: fewer of each, same work.
    baseline_orders: int = 20
    baseline_reads: int = 3

    @classmethod
    def from_env(cls) -> Config:
        def number(name: str, default: int) -> int:
            return int(os.environ.get(f"KAMI_BENCH_STOCK_{name}", default))

        return cls(
            cards=number("CARDS", cls.cards),
            orders=number("ORDERS", cls.orders),
            reads=number("READS", cls.reads),
            baseline_orders=number("BASELINE_ORDERS", cls.baseline_orders),
            baseline_reads=number("BASELINE_READS", cls.baseline_reads),
        )


def _cpu_ms(times: int, work: Callable[[int], None]) -> float:
    began = time.thread_time()
    for i in range(times):
        work(i)
    return round((time.thread_time() - began) / times * 1000, 3)


def measure(shop: Shop, product_id: uuid.UUID, orders: int, reads: int) -> tuple[float, float]:
    """(CPU ms per placed and paid order, CPU ms per product page) on this thread."""

    def sell_one(i: int) -> None:
        placed = shop.place_order(product_id, 1, f"stock{i}@example.com")
        paid = shop.record_payment(PROVIDER, placed.order_id, uuid.uuid4().hex, placed.amount)
        if paid.status != DELIVERED:
            raise RuntimeError(f"order {placed.order_id} ended {paid.status}")

    return _cpu_ms(orders, sell_one), _cpu_ms(reads, lambda _: shop.get_product(product_id))


def run(database_url: str, config: Config | None = None) -> dict[str, dict[str, Any]]:
    config = config or Config.from_env()
    kami, baseline = open_kami(database_url), open_baseline(database_url)
    points: list[dict[str, Any]] = []
    try:
        catalogue: Catalogue = prepare_catalogue(kami.shop)
        product_id = stocked_product(kami.shop, catalogue, config.cards)
        sold = 0
        for n, share in enumerate(SOLD_SHARES):
            target = config.cards * share // 100
            if target > sold:
                sell(kami.shop, catalogue, product_id, target - sold, 8)
                sold = target
            systems = [
                ("kami", kami.shop, config.orders, config.reads),
                ("baseline", baseline.shop, config.baseline_orders, config.baseline_reads),
            ]
            point: dict[str, Any] = {
                "sold_pct": share,
                "stock_before": kami.shop.get_product(product_id).stock,
            }
            for name, shop, orders, reads in systems if n % 2 == 0 else reversed(systems):
                order_ms, read_ms = measure(shop, product_id, orders, reads)
                sold += orders
                point[name] = {"order_cpu_ms": order_ms, "product_page_cpu_ms": read_ms}
                print(
                    f"bench stock: {share:2}% sold, {name:8}: {order_ms:8.3f} ms per order,"
                    f" {read_ms:8.3f} ms per product page",
                    file=sys.stderr,
                    flush=True,
                )
            point["order_ratio"] = round(point["baseline"]["order_cpu_ms"] / point["kami"]["order_cpu_ms"], 2)
            point["page_ratio"] = round(
                point["baseline"]["product_page_cpu_ms"] / point["kami"]["product_page_cpu_ms"], 2
            )
            points.append(point)
    finally:
        kami.close()
        baseline.close()
    return {
        "stock": {
            "cards": config.cards,
            "orders": config.orders,
            "reads": config.reads,
            "baseline_orders": config.baseline_orders,
            "baseline_reads": config.baseline_reads,
            "points": points,
            "work": "one thread: place_order (1 card) + record_payment, delivered; get_product",
            "kami": "Shop as built by the app (group commit, aggregate cache)",
            "baseline": "the same Shop, group commit off, no aggregate cache: every aggregate replayed",
        }
    }


def table(sections: dict[str, dict[str, Any]]) -> str:
    s = sections["stock"]
    rows = [
        f"stock: one product of {s['cards']:,} cards, one thread's CPU (ms)",
        f"  {'sold':>5} {'order kami':>11} {'baseline':>9} {'ratio':>7}"
        f" {'page kami':>10} {'baseline':>9} {'ratio':>7}",
    ]
    for p in s["points"]:
        k, b = p["kami"], p["baseline"]
        rows.append(
            f"  {p['sold_pct']:4}% {k['order_cpu_ms']:11.3f} {b['order_cpu_ms']:9.3f}"
            f" {p['order_ratio']:6.1f}x {k['product_page_cpu_ms']:10.3f}"
            f" {b['product_page_cpu_ms']:9.3f} {p['page_ratio']:6.1f}x"
        )
    return "\n".join(rows)
