"""Card stock in buckets. Each bucket is an aggregate holding a slice of a product's cards.

A card's bucket is fixed by its fingerprint, so the same key always lands in the same
bucket and de-duplication against existing keys needs no global lock. Orders reserve
from buckets chosen at random, so concurrent buyers of a hot product rarely collide.

A reservation lapses at its deadline: a lapsed card counts as available again even
before the expiry process has released it, so stock never waits on a background job.
"""

from __future__ import annotations

import copy
from datetime import datetime
from itertools import islice
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.exceptions import InvalidState, NotFound
from domain.ids import bucket_id

FREE = "free"
RESERVED = "reserved"
SOLD = "sold"
VOID = "void"


class CardBucket(Aggregate):
    class Opened(Aggregate.Created):
        product_id: UUID
        merchant_id: UUID
        index: int

    class CardsImported(Aggregate.Event):
        # Each card is [card_id, fingerprint, sealed key].
        cards: list[list[str]]

        def apply(self, bucket: CardBucket) -> None:
            # Copy on write: the repository's cached bucket is fast-forwarded in place while
            # other threads deep-copy it, and a dict growing mid-copy raises RuntimeError.
            cards = dict(bucket.cards)
            for card_id, fp, sealed in self.cards:
                cards[card_id] = Card(fp, sealed, FREE, None, None)
            bucket.cards = cards
            bucket.fingerprints = bucket.fingerprints | {fp for _, fp, _ in self.cards}

    class CardsReserved(Aggregate.Event):
        order_id: UUID
        card_ids: list[str]
        until: datetime

        def apply(self, bucket: CardBucket) -> None:
            bucket.set_cards(self.card_ids, RESERVED, self.order_id, self.until)

    class CardsReleased(Aggregate.Event):
        order_id: UUID
        card_ids: list[str]

        def apply(self, bucket: CardBucket) -> None:
            bucket.set_cards(self.card_ids, FREE, None, None)

    class CardsClaimed(Aggregate.Event):
        order_id: UUID
        card_ids: list[str]

        def apply(self, bucket: CardBucket) -> None:
            bucket.set_cards(self.card_ids, SOLD, self.order_id, None)

    class CardVoided(Aggregate.Event):
        card_id: str
        reason: str

        def apply(self, bucket: CardBucket) -> None:
            bucket.set_cards([self.card_id], VOID, None, None)

    def __init__(self, product_id: UUID, merchant_id: UUID, index: int) -> None:
        self.product_id = product_id
        self.merchant_id = merchant_id
        self.index = index
        self.cards: dict[str, Card] = {}
        self.fingerprints: set[str] = set()

    @classmethod
    def open(cls, product_id: UUID, merchant_id: UUID, index: int, at: datetime) -> CardBucket:
        return cls._create(
            cls.Opened,
            id=bucket_id(product_id, index),
            timestamp=at,
            product_id=product_id,
            merchant_id=merchant_id,
            index=index,
        )

    def set_cards(
        self, card_ids: list[str], status: str, order_id: UUID | None, until: datetime | None
    ) -> None:
        for card_id in card_ids:
            card = self.cards[card_id]
            self.cards[card_id] = card._replace(status=status, order_id=order_id, until=until)

    def __deepcopy__(self, memo: dict[int, Any]) -> CardBucket:
        # Commands get a copy of the cached bucket. Cards are immutable tuples and the
        # fingerprint set is only ever replaced, so copying the map is enough: a deep copy
        # of thousands of cards on every command and every stock read would dominate.
        clone = copy.copy(self)
        clone.cards = dict(self.cards)
        clone._pending_events = list(self._pending_events)
        return clone

    def has_fingerprint(self, fp: str) -> bool:
        return fp in self.fingerprints

    def add_cards(self, cards: list[list[str]], at: datetime) -> None:
        if cards:
            self.trigger_event(self.CardsImported, cards=cards, timestamp=at)

    def available(self, now: datetime) -> list[str]:
        return [cid for cid, card in self.cards.items() if card.is_available(now)]

    def count_available(self, now: datetime) -> int:
        return sum(1 for card in self.cards.values() if card.is_available(now))

    def reserve(self, order_id: UUID, count: int, until: datetime, now: datetime) -> list[str]:
        """Reserve up to ``count`` cards; returns the ids taken (maybe fewer)."""
        # The first ``count`` free cards, without listing every free card of the bucket.
        taken = list(islice((cid for cid, card in self.cards.items() if card.is_available(now)), count))
        if taken:
            self.trigger_event(
                self.CardsReserved, order_id=order_id, card_ids=taken, until=until, timestamp=now
            )
        return taken

    def reserve_these(self, order_id: UUID, card_ids: list[str], now: datetime) -> None:
        if any(not self.cards[cid].is_available(now) for cid in card_ids):
            raise InvalidState("a card to reserve is no longer available")
        self.trigger_event(
            self.CardsReserved, order_id=order_id, card_ids=card_ids, until=now, timestamp=now
        )

    def reserved_for(self, order_id: UUID, card_ids: list[str]) -> list[str]:
        """Which of these cards are still held for this order (lapsed or not)."""
        return [
            cid
            for cid in card_ids
            if (card := self.cards.get(cid)) and card.status == RESERVED and card.order_id == order_id
        ]

    def claim(self, order_id: UUID, card_ids: list[str], at: datetime) -> None:
        if self.reserved_for(order_id, card_ids) != card_ids:
            raise InvalidState("a card to claim is no longer reserved for this order")
        if card_ids:
            self.trigger_event(self.CardsClaimed, order_id=order_id, card_ids=card_ids, timestamp=at)

    def release(self, order_id: UUID, card_ids: list[str], at: datetime) -> None:
        held = self.reserved_for(order_id, card_ids)
        if held:
            self.trigger_event(self.CardsReleased, order_id=order_id, card_ids=held, timestamp=at)

    def void(self, card_id: str, reason: str, at: datetime) -> None:
        card = self.cards.get(card_id)
        if card is None:
            raise NotFound("no such card in this product")
        if card.status == SOLD:
            raise InvalidState("a sold card cannot be voided")
        if card.status == RESERVED and card.until is not None and card.until > at:
            raise InvalidState("this card is reserved by an open order")
        if card.status != VOID:
            self.trigger_event(self.CardVoided, card_id=card_id, reason=reason, timestamp=at)

    def sealed(self, card_id: str) -> str:
        return self.cards[card_id].sealed


class Card(NamedTuple):
    """One card's state inside its bucket. Immutable: a change replaces the entry, so a
    copy of the bucket never shares a card that is changing under it."""

    fingerprint: str
    sealed: str
    status: str
    order_id: UUID | None
    until: datetime | None

    def is_available(self, now: datetime) -> bool:
        if self.status == FREE:
            return True
        return self.status == RESERVED and self.until is not None and self.until <= now
