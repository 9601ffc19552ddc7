"""Card stock in buckets. Each bucket is an aggregate holding a slice of a product's cards.

A card's bucket is fixed by its fingerprint, so the same key always lands in the same
bucket and de-duplication against existing keys needs no global lock. Orders reserve
from buckets chosen at random, so concurrent buyers of a hot product rarely collide.

A reservation lapses at its deadline: a lapsed card counts as available again even
before the expiry process has released it, so stock never waits on a background job.

A bucket may hold thousands of cards, most of them sold in time, and every order copies
a bucket twice (the cached one is shared) and reserves from it, and every product page
counts its stock. So none of these walks the whole bucket: the cards sit in a
``CardMap``, whose copy costs its changes since the last compaction, not every card; a
reservation takes lapsed and released cards from two small indexes (``held``,
``returned``), then free cards from a mark (``next_mark``) before which no card is free
but the returned ones; and the free count is kept, not counted. The indexes are kept by
the events' ``apply``, so a replay builds them too; the cards stay the one state.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
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
            # Copy on write, as every shared part of a bucket: a cached bucket is shared by
            # the threads that copy it (``__deepcopy__``), and a dict growing mid-copy raises
            # RuntimeError.
            new = {card_id: Card(fp, sealed, FREE, None, None) for card_id, fp, sealed in self.cards}
            bucket.cards = bucket.cards.merged(new)
            bucket.fingerprints = bucket.fingerprints | {fp for _, fp, _ in self.cards}
            bucket.order = bucket.order + list(new)
            bucket.free += len(new)

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
        self.cards = CardMap()
        self.fingerprints: frozenset[str] = frozenset()
        # The indexes (see the module's docstring). Card ids in import order, shared by
        # copies and replaced on import; no card before ``order[next_mark]`` is free but
        # those in ``returned``; the reserved cards and their deadlines; the free count.
        self.order: list[str] = []
        self.next_mark = 0
        self.returned: dict[str, None] = {}
        self.held: dict[str, datetime | None] = {}
        self.free = 0

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
            self.cards.put(card_id, card._replace(status=status, order_id=order_id, until=until))
            if card.status == FREE:
                self.free -= 1
                self.returned.pop(card_id, None)
            elif card.status == RESERVED:
                del self.held[card_id]
            if status == FREE:
                self.free += 1
                # Behind the mark a freed card would be missed: it waits in ``returned``.
                self.returned[card_id] = None
            elif status == RESERVED:
                self.held[card_id] = until
        # Past the cards no longer free, so that the next reservation starts at a free one.
        order, cards = self.order, self.cards
        while self.next_mark < len(order) and cards[order[self.next_mark]].status != FREE:
            self.next_mark += 1

    def __deepcopy__(self, memo: dict[int, Any]) -> CardBucket:
        # Commands get a copy of the cached bucket. Cards are immutable tuples, and the
        # card map's base, the fingerprint set and the import order are only ever
        # replaced, never changed: the copy shares them and copies the small rest.
        clone = copy.copy(self)
        clone.cards = self.cards.copy()
        clone.returned = dict(self.returned)
        clone.held = dict(self.held)
        clone._pending_events = list(self._pending_events)
        return clone

    def has_fingerprint(self, fp: str) -> bool:
        return fp in self.fingerprints

    def add_cards(self, cards: list[list[str]], at: datetime) -> None:
        if cards:
            self.trigger_event(self.CardsImported, cards=cards, timestamp=at)

    def available(self, now: datetime, limit: int | None = None) -> list[str]:
        """The cards an order may take now (at most ``limit`` of them)."""
        return list(islice(self._available(now), limit))

    def _available(self, now: datetime) -> Iterator[str]:
        # Lapsed reservations first (their orders are gone by now), then cards returned
        # by a release, then the free cards from the mark on: no sold card is walked.
        for card_id, until in self.held.items():
            if until is not None and until <= now:
                yield card_id
        yield from self.returned
        cards = self.cards
        for card_id in islice(self.order, self.next_mark, None):
            if cards[card_id].status == FREE and card_id not in self.returned:
                yield card_id

    def count_available(self, now: datetime) -> int:
        lapsed = sum(1 for until in self.held.values() if until is not None and until <= now)
        return self.free + lapsed

    def reserve(self, order_id: UUID, count: int, until: datetime, now: datetime) -> list[str]:
        """Reserve up to ``count`` cards; returns the ids taken (maybe fewer)."""
        taken = self.available(now, count)
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


class CardMap(Mapping[str, "Card"]):
    """A bucket's cards by id: a base map shared by copies, and the changes since.

    A command's copy of a bucket copies only the changes, and a change adds one entry,
    so neither costs the thousands of cards a bucket may hold. When the changes grow to
    a sixteenth of the base they are folded into a new base (the old one may be shared:
    it is never changed), which spreads that copy over many changes.
    """

    __slots__ = ("_base", "_changes")

    def __init__(self, base: dict[str, Card] | None = None, changes: dict[str, Card] | None = None) -> None:
        self._base: dict[str, Card] = {} if base is None else base
        self._changes: dict[str, Card] = {} if changes is None else changes

    def __getitem__(self, card_id: str) -> Card:
        card = self._changes.get(card_id)
        return self._base[card_id] if card is None else card

    def get(self, card_id: str, default: Any = None) -> Any:
        card = self._changes.get(card_id)
        return self._base.get(card_id, default) if card is None else card

    def __contains__(self, card_id: object) -> bool:
        return card_id in self._base

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)  # every card is in the base: changes only replace

    def __len__(self) -> int:
        return len(self._base)

    def put(self, card_id: str, card: Card) -> None:
        """Replace a card this map holds (new cards come by ``merged``)."""
        if card_id not in self._base:
            raise KeyError(card_id)
        self._changes[card_id] = card
        if len(self._changes) > max(64, len(self._base) >> 4):
            self._base = {**self._base, **self._changes}
            self._changes = {}

    def merged(self, new: dict[str, Card]) -> CardMap:
        """A map with these cards added; this one is left as it is."""
        return CardMap({**self._base, **self._changes, **new})

    def copy(self) -> CardMap:
        return CardMap(self._base, dict(self._changes))


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
