"""Deterministic ids: uniqueness of codes, txn ids and postings becomes a property of the store."""

from __future__ import annotations

from functools import lru_cache
from uuid import NAMESPACE_URL, UUID, uuid5

_ROOT = "kami:"


# A few codes are shared by many buyers: each placement through one looked it up anew.
@lru_cache(maxsize=4_096)
def promoter_code_id(code: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"{_ROOT}promoter-code/{code.upper()}")


def payment_id(provider: str, txn_id: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"{_ROOT}payment/{provider}/{txn_id}")


def posting_id(kind: str, ref: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"{_ROOT}posting/{kind}/{ref}")


def bucket_id(product_id: UUID, index: int) -> UUID:
    return uuid5(NAMESPACE_URL, f"{_ROOT}bucket/{product_id}/{index}")


# Every placement looks at all of a product's buckets (16 by default): a hash for each
# was a few percent of an order's CPU, and the ids never change.
@lru_cache(maxsize=4_096)
def bucket_ids(product_id: UUID, count: int) -> tuple[UUID, ...]:
    """The ids of a product's ``count`` buckets, in index order."""
    return tuple(bucket_id(product_id, i) for i in range(count))
