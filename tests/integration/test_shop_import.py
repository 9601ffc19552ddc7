"""Card import dedupes within a batch, against stored keys, and across concurrent imports."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID, uuid4

import pytest

from domain.card_stock import CardBucket
from domain.cards import unseal
from domain.exceptions import Forbidden, InvalidInput, InvalidState
from domain.ids import bucket_id
from domain.results import CardsImported
from domain.shop import Shop


def new_product(shop: Shop, delivery: str = "auto") -> tuple[UUID, UUID]:
    merchant = shop.register_merchant(f"m-{uuid4().hex[:8]}", "m@example.com")
    product = shop.list_product(merchant.merchant_id, "Codes", 500, delivery)
    return merchant.merchant_id, product.product_id


def stored_keys(shop: Shop, merchant_id: UUID, product_id: UUID) -> list[str]:
    """Every card key the product holds, decrypted: what is really stored."""
    key = shop.keyring.get(merchant_id)
    assert key is not None
    keys = []
    for index in range(shop.repository.get(product_id).buckets):
        bucket = shop.repository.get(bucket_id(product_id, index))
        assert isinstance(bucket, CardBucket)
        keys.extend(unseal(key, card.sealed, UUID(cid)) for cid, card in bucket.cards.items())
    return keys


def test_duplicates_within_a_batch_are_imported_once(shop: Shop) -> None:
    merchant_id, product_id = new_product(shop)
    a, b = f"K-{uuid4().hex}", f"K-{uuid4().hex}"

    result = shop.import_cards(merchant_id, product_id, [a, b, a, f"  {a}\n", b])

    assert (result.imported, result.duplicates, result.stock) == (2, 3, 2)
    assert len(result.card_ids) == 2
    assert sorted(stored_keys(shop, merchant_id, product_id)) == sorted([a, b])


def test_keys_already_stored_are_not_imported_again(shop: Shop) -> None:
    merchant_id, product_id = new_product(shop)
    old = [f"K-{uuid4().hex}" for _ in range(5)]
    shop.import_cards(merchant_id, product_id, old)
    new = f"K-{uuid4().hex}"

    result = shop.import_cards(merchant_id, product_id, [*old[:3], new, f" {old[4]} "])

    assert (result.imported, result.duplicates, result.stock) == (1, 4, 6)
    assert sorted(stored_keys(shop, merchant_id, product_id)) == sorted([*old, new])


def test_a_sold_key_still_counts_as_a_duplicate(shop: Shop) -> None:
    merchant_id, product_id = new_product(shop)
    key = f"K-{uuid4().hex}"
    shop.import_cards(merchant_id, product_id, [key])
    order = shop.place_order(product_id, 1, "b@example.com")
    shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)

    result = shop.import_cards(merchant_id, product_id, [key])

    assert (result.imported, result.duplicates, result.stock) == (0, 1, 0)


def test_the_same_key_may_be_sold_by_two_products(shop: Shop) -> None:
    merchant_id, first = new_product(shop)
    second = shop.list_product(merchant_id, "Other", 500, "auto").product_id
    key = f"K-{uuid4().hex}"
    assert shop.import_cards(merchant_id, first, [key]).imported == 1
    assert shop.import_cards(merchant_id, second, [key]).imported == 1


def test_concurrent_overlapping_imports_never_store_a_key_twice(shop: Shop) -> None:
    merchant_id, product_id = new_product(shop)
    pool_of_keys = [f"K-{uuid4().hex}" for _ in range(240)]
    # Eight batches, each overlapping its neighbours by half.
    batches = [pool_of_keys[i * 30 : i * 30 + 60] for i in range(8)]
    batches[-1] = batches[-1] + pool_of_keys[:30]
    barrier = threading.Barrier(len(batches))

    def run(batch: list[str]) -> CardsImported:
        barrier.wait()
        return shop.import_cards(merchant_id, product_id, batch)

    with ThreadPoolExecutor(max_workers=len(batches)) as pool:
        results = list(pool.map(run, batches))

    stored = stored_keys(shop, merchant_id, product_id)
    assert len(stored) == len(set(stored))
    assert set(stored) == set(pool_of_keys)
    assert sum(r.imported for r in results) == len(pool_of_keys)
    assert sum(r.duplicates for r in results) == sum(len(b) for b in batches) - len(pool_of_keys)
    assert shop.get_product(product_id).stock == len(pool_of_keys)


def test_two_identical_batches_at_once_import_each_key_once(shop: Shop) -> None:
    merchant_id, product_id = new_product(shop)
    batch = [f"K-{uuid4().hex}" for _ in range(50)]
    barrier = threading.Barrier(2)

    def run(_: int) -> CardsImported:
        barrier.wait()
        return shop.import_cards(merchant_id, product_id, batch)

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(run, range(2))

    assert sorted([first.imported, second.imported]) == [0, 50]
    assert sorted(stored_keys(shop, merchant_id, product_id)) == sorted(batch)


def test_bad_imports_are_refused_and_store_nothing(shop: Shop) -> None:
    merchant_id, product_id = new_product(shop)
    other_merchant, _ = new_product(shop)
    _, manual = new_product(shop, "manual")
    before = shop.position()
    with pytest.raises(InvalidInput):
        shop.import_cards(merchant_id, product_id, ["good", "   "])
    with pytest.raises(InvalidInput):
        shop.import_cards(merchant_id, product_id, ["x" * 513])
    with pytest.raises(Forbidden):
        shop.import_cards(other_merchant, product_id, ["good"])
    with pytest.raises(InvalidState):
        shop.import_cards(shop.get_product(manual).merchant_id, manual, ["good"])
    assert shop.position() == before
    assert shop.get_product(product_id).stock == 0


def test_a_product_listed_in_one_bucket_keeps_all_its_stock_there(shop: Shop) -> None:
    merchant = shop.register_merchant(f"m-{uuid4().hex[:8]}", "m@example.com")
    product_id = shop.list_product(merchant.merchant_id, "One stream", 500, "auto", buckets=1).product_id
    shop.import_cards(merchant.merchant_id, product_id, [f"K-{uuid4().hex}" for _ in range(5)])

    assert shop.repository.get(product_id).buckets == 1
    only = shop.repository.get(bucket_id(product_id, 0))
    assert isinstance(only, CardBucket) and len(only.cards) == 5
    assert shop.get_product(product_id).stock == 5
