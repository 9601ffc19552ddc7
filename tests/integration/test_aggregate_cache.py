"""The Shop's aggregate cache never lets a command decide on stale state.

Two Shops on one database stand for two API processes: each caches what it loaded, and
each must see what the other wrote, in commands and in reads alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID, uuid4

import pytest

from domain.aggregate_cache import CachedLoads
from domain.clock import ManualClock
from domain.exceptions import BuyerBlacklisted, NotFound, OutOfStock, ProductUnavailable
from domain.ids import bucket_id
from domain.order import DELIVERED
from domain.product import Product
from domain.shop import Shop, ShopSettings
from kami.bootstrap import Kami, build


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:12]}"


def random_cards(n: int) -> list[str]:
    return [f"CARD-{uuid4().hex}" for _ in range(n)]


@pytest.fixture
def other(database_url: str, clock: ManualClock) -> Iterator[Kami]:
    system = build(database_url, clock=clock)
    yield system
    system.close()


def _product(shop: Shop, cards: int) -> tuple[UUID, UUID]:
    merchant = shop.register_merchant(unique("m"), "m@x")
    product = shop.list_product(merchant.merchant_id, unique("p"), 1_000, "auto")
    shop.import_cards(merchant.merchant_id, product.product_id, random_cards(cards))
    return merchant.merchant_id, product.product_id


def test_the_shop_caches_aggregates_without_fast_forwarding(shop: Shop) -> None:
    assert isinstance(shop._loads, CachedLoads)
    assert shop.repository.cache is None


def test_a_price_changed_by_another_process_is_the_price_of_the_next_order(shop: Shop, other: Kami) -> None:
    merchant_id, product_id = _product(shop, 3)
    assert shop.place_order(product_id, 1, "b@x").amount == 1_000  # the product is now cached here

    other.shop.change_price(merchant_id, product_id, 2_500)

    assert shop.get_product(product_id).price == 2_500
    assert shop.place_order(product_id, 1, "b@x").amount == 2_500


def test_a_product_delisted_by_another_process_takes_no_more_orders(shop: Shop, other: Kami) -> None:
    merchant_id, product_id = _product(shop, 3)
    shop.place_order(product_id, 1, "b@x")

    other.shop.delist_product(merchant_id, product_id)

    with pytest.raises(ProductUnavailable):
        shop.place_order(product_id, 1, "b@x")


def test_a_blacklist_opened_by_another_process_refuses_the_buyer(shop: Shop, other: Kami) -> None:
    merchant_id, product_id = _product(shop, 3)
    shop.place_order(product_id, 1, "bad@x")  # this process has seen no blacklist: cached absent

    other.shop.blacklist_buyer(merchant_id, "bad@x", "chargebacks", merchant_id)

    with pytest.raises(BuyerBlacklisted):
        shop.place_order(product_id, 1, "bad@x")


def test_an_order_paid_through_another_process_reads_as_delivered(shop: Shop, other: Kami) -> None:
    _, product_id = _product(shop, 2)
    placed = shop.place_order(product_id, 1, "b@x")
    assert shop.get_order(placed.order_id, placed.token).status != DELIVERED  # cached, pending

    other.shop.record_payment("sandbox", placed.order_id, unique("txn"), placed.amount)

    seen = shop.get_order(placed.order_id, placed.token)
    assert seen.status == DELIVERED
    assert seen.cards


def test_cards_are_not_revealed_once_another_process_shreds_the_key(shop: Shop, other: Kami) -> None:
    # This process has read the merchant's card key (and keeps it), then another process
    # shreds it: the buyer's next read must show no card, here as there.
    merchant_id, product_id = _product(shop, 2)
    placed = shop.place_order(product_id, 1, "b@x")
    shop.record_payment("sandbox", placed.order_id, unique("txn"), placed.amount)
    assert shop.get_order(placed.order_id, placed.token).cards

    other.shop.shred_card_key(merchant_id, "the merchant asked")

    assert shop.get_order(placed.order_id, placed.token).cards == []
    assert other.shop.get_order(placed.order_id, placed.token).cards == []


def test_an_order_placed_through_another_process_is_found(shop: Shop, other: Kami) -> None:
    _, product_id = _product(shop, 2)
    placed = shop.place_order(product_id, 1, "b@x")
    with pytest.raises(NotFound):
        shop.get_order(placed.order_id, "not-the-token")
    assert other.shop.get_order(placed.order_id, placed.token).order_id == placed.order_id


def test_refusals_are_checked_too_stock_imported_elsewhere_sells(shop: Shop, other: Kami) -> None:
    merchant_id, product_id = _product(shop, 1)
    shop.place_order(product_id, 1, "b@x")
    with pytest.raises(OutOfStock):
        shop.place_order(product_id, 1, "b@x")  # every cached bucket is now empty

    other.shop.import_cards(merchant_id, product_id, random_cards(1))

    assert shop.place_order(product_id, 1, "b@x").amount == 1_000


def test_two_processes_selling_one_stock_never_oversell(shop: Shop, other: Kami) -> None:
    _, product_id = _product(shop, 30)
    shops = [shop, other.shop]

    def buy(n: int) -> str:
        try:
            placed = shops[n % 2].place_order(product_id, 1, f"b{n}@x")
        except OutOfStock:
            return "out"
        payer = shops[(n + 1) % 2]
        payer.record_payment("sandbox", placed.order_id, f"t{n}", placed.amount)
        cards = payer.get_order(placed.order_id, placed.token).cards
        assert cards and len(cards) == 1
        return cards[0]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(buy, range(60)))

    sold = [r for r in results if r != "out"]
    assert len(sold) == 30 and results.count("out") == 30
    assert len(set(sold)) == 30  # thirty distinct cards, none delivered twice


def test_a_stale_cache_entry_is_caught_up_not_trusted(shop: Shop, other: Kami) -> None:
    merchant_id, product_id = _product(shop, 2)
    cached = shop._loads.load(product_id, copy=False)
    assert isinstance(cached, Product)
    other.shop.change_price(merchant_id, product_id, 3_000)
    other.shop.change_price(merchant_id, product_id, 4_000)

    shop._loads.refresh([product_id])

    fresh = shop._loads.load(product_id, copy=False)
    assert isinstance(fresh, Product)
    assert (fresh.price, fresh.version) == (4_000, cached.version + 2)
    assert cached.price == 1_000  # the shared object was never changed in place


def test_an_id_given_as_text_is_checked_like_a_uuid(shop: Shop, other: Kami) -> None:
    merchant_id, _ = _product(shop, 1)
    shop.get_merchant(str(merchant_id))  # type: ignore[arg-type]
    other.shop.restrict_merchant(merchant_id, "checks")

    assert shop.get_merchant(str(merchant_id)).restricted  # type: ignore[arg-type]


def test_each_api_process_reserves_from_its_bucket_share(database_url: str, clock: ManualClock) -> None:
    # Process 1 of 2 takes cards from buckets 1, 3, 5... while they have any, so that
    # the other process's cached buckets are rarely the ones it changes.
    second = build(database_url, clock=clock, settings=ShopSettings(bucket_share=(1, 2)))
    try:
        shop = second.shop
        merchant = shop.register_merchant(unique("m"), "m@x")
        product = shop.list_product(merchant.merchant_id, unique("p"), 1_000, "auto", buckets=4)
        shop.import_cards(merchant.merchant_id, product.product_id, random_cards(40))
        ours = {bucket_id(product.product_id, i) for i in (1, 3)}
        for _ in range(12):
            placed = shop.place_order(product.product_id, 1, "b@x")
            order = shop.repository.get(placed.order_id)
            assert {UUID(str(bid)) for bid, _ in order.reservation} <= ours
    finally:
        second.close()


def test_a_new_txn_id_is_not_looked_up_in_the_store(shop: Shop) -> None:
    # A payment's id comes from its txn id, new but for a provider's retry: it is taken
    # as absent, and the read check at commit proves it, with no query of its own.
    _, product_id = _product(shop, 1)
    placed = shop.place_order(product_id, 1, "b@x")
    looked_up: list[UUID] = []
    select_events = shop.recorder.select_events

    def spy(originator_id: UUID, **kwargs: object) -> object:
        looked_up.append(originator_id)
        return select_events(originator_id, **kwargs)  # type: ignore[arg-type]

    shop.recorder.select_events = spy  # type: ignore[method-assign]
    paid = shop.record_payment("sandbox", placed.order_id, unique("txn"), placed.amount)

    assert paid.status == DELIVERED
    assert looked_up == []


def test_a_payment_retried_through_another_process_is_a_duplicate(shop: Shop, other: Kami) -> None:
    # The other process has never seen the txn: its guess that the payment is new fails
    # the read check, and the retry finds the payment.
    _, product_id = _product(shop, 2)
    placed = shop.place_order(product_id, 1, "b@x")
    txn = unique("txn")
    first = shop.record_payment("sandbox", placed.order_id, txn, placed.amount)
    head = shop.position()

    again = other.shop.record_payment("sandbox", placed.order_id, txn, placed.amount)

    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.status == first.status == DELIVERED
    assert shop.position() == head  # nothing written
    assert shop.get_order(placed.order_id, placed.token).cards == other.shop.get_order(
        placed.order_id, placed.token
    ).cards


def test_a_placement_retried_through_another_process_answers_the_same_order(shop: Shop, other: Kami) -> None:
    _, product_id = _product(shop, 3)
    key = unique("key")
    first = shop.place_order(product_id, 1, "b@x", idempotency_key=key)
    head = shop.position()

    again = other.shop.place_order(product_id, 1, "b@x", idempotency_key=key)

    assert (again.order_id, again.token) == (first.order_id, first.token)
    assert shop.position() == head  # nothing written: one order, one reservation
    assert other.shop.get_product(product_id).stock == 2
