"""The Product aggregate: what is sold, at what price, and how it is delivered."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.exceptions import InvalidInput, ProductUnavailable
from domain.pricing import check_quantity, check_tiers, unit_price

DELIVERY_MODES = ("auto", "manual")
MAX_TITLE = 200

# Stock is spread over this many card buckets, so that buyers of one hot product
# contend on a bucket each rather than queueing on a single stream.
DEFAULT_BUCKETS = 16


class Product(Aggregate):
    class Listed(Aggregate.Created):
        merchant_id: UUID
        title: str
        price: int
        delivery: str
        wholesale: list[list[int]]
        max_per_order: int | None
        buckets: int

    class PriceChanged(Aggregate.Event):
        price: int

        def apply(self, product: Product) -> None:
            product.price = self.price

    class Delisted(Aggregate.Event):
        def apply(self, product: Product) -> None:
            product.listed = False

    def __init__(
        self,
        merchant_id: UUID,
        title: str,
        price: int,
        delivery: str,
        wholesale: list[list[int]],
        max_per_order: int | None,
        buckets: int,
    ) -> None:
        self.merchant_id = merchant_id
        self.title = title
        self.price = price
        self.delivery = delivery
        self.wholesale = [(int(q), int(p)) for q, p in wholesale]
        self.max_per_order = max_per_order
        self.buckets = buckets
        self.listed = True

    @classmethod
    def create(
        cls,
        merchant_id: UUID,
        title: str,
        price: int,
        delivery: str,
        wholesale: Sequence[tuple[int, int]],
        max_per_order: int | None,
        at: datetime,
        buckets: int = DEFAULT_BUCKETS,
    ) -> Product:
        title = title.strip()
        if not title or len(title) > MAX_TITLE:
            raise InvalidInput(f"a title has 1 to {MAX_TITLE} characters")
        if price <= 0:
            raise InvalidInput("a price must be positive")
        if delivery not in DELIVERY_MODES:
            raise InvalidInput("delivery is 'auto' or 'manual'")
        if max_per_order is not None and max_per_order < 1:
            raise InvalidInput("max_per_order must be at least 1")
        tiers = check_tiers(price, wholesale)
        if max_per_order is not None and any(q > max_per_order for q, _ in tiers):
            raise InvalidInput("a wholesale tier starts above max_per_order and could never apply")
        return cls._create(
            cls.Listed,
            id=uuid4(),
            timestamp=at,
            merchant_id=merchant_id,
            title=title,
            price=price,
            delivery=delivery,
            wholesale=[[q, p] for q, p in tiers],
            max_per_order=max_per_order,
            buckets=buckets,
        )

    def change_price(self, price: int, at: datetime) -> None:
        if price <= 0:
            raise InvalidInput("a price must be positive")
        check_tiers(price, self.wholesale)
        if price != self.price:
            self.trigger_event(self.PriceChanged, price=price, timestamp=at)

    def delist(self, at: datetime) -> None:
        if self.listed:
            self.trigger_event(self.Delisted, timestamp=at)

    def quote(self, quantity: int) -> int:
        """The unit price for this quantity, after checking it may be ordered at all."""
        if not self.listed:
            raise ProductUnavailable("this product is no longer listed")
        check_quantity(quantity, self.max_per_order)
        return unit_price(self.price, self.wholesale, quantity)
