"""A random but reproducible shop workload: merchants, stock, promoters, orders, payments."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from uuid import UUID, uuid4

from domain.exceptions import KamiError
from domain.shop import Shop


@dataclass
class Workload:
    shop: Shop
    rng: random.Random
    merchants: list[UUID] = field(default_factory=list)
    products: list[tuple[UUID, UUID]] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    paid: list[tuple[UUID, UUID, str]] = field(default_factory=list)

    def setup(self, merchants: int = 2, products: int = 3) -> None:
        for _ in range(merchants):
            m = self.shop.register_merchant(f"m-{uuid4().hex[:6]}", "m@example.com").merchant_id
            self.merchants.append(m)
            for _ in range(products):
                price = self.rng.randint(100, 20_000)
                p = self.shop.list_product(m, f"p-{uuid4().hex[:6]}", price, "auto").product_id
                self.shop.import_cards(m, p, [uuid4().hex for _ in range(200)])
                self.products.append((m, p))
        top = self.shop.join_promoter("top", "t@example.com")
        mid = self.shop.join_promoter("mid", "m@example.com", top.code)
        low = self.shop.join_promoter("low", "l@example.com", mid.code)
        self.codes = [top.code, mid.code, low.code]

    def step(self) -> None:
        """One buyer's action: mostly buy and pay, sometimes refund, review or pay twice."""
        merchant, product = self.rng.choice(self.products)
        roll = self.rng.random()
        try:
            if roll < 0.75 or not self.paid:
                code = self.rng.choice([None, *self.codes])
                buyer = f"buyer{self.rng.randint(1, 30)}@example.com"
                order = self.shop.place_order(product, self.rng.randint(1, 2), buyer, code)
                if self.rng.random() < 0.9:
                    self.shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)
                    self.paid.append((merchant, order.order_id, order.token))
            elif roll < 0.85:
                m, order_id, _ = self.rng.choice(self.paid)
                self.shop.refund_order(order_id, "changed mind", m)
            else:
                _, order_id, token = self.rng.choice(self.paid)
                self.shop.review_order(order_id, token, self.rng.randint(1, 5), "")
        except KamiError:
            pass  # refunding twice, reviewing twice: refused, and that is part of the mix


def traffic(shop: Shop, seed: int, steps: int, *, merchants: int = 2, products: int = 2) -> Workload:
    """A shop set up and traded in for ``steps`` buyer actions, the same for a seed."""
    work = Workload(shop, random.Random(seed))
    work.setup(merchants=merchants, products=products)
    for _ in range(steps):
        work.step()
    return work
