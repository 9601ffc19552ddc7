"""A Posting is one balanced money movement. Its id derives from what moved the money,
so each movement is posted exactly once however often a command is retried."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.ids import posting_id
from domain.ledger import Entries, is_balanced


class UnbalancedPosting(Exception):
    """A bug, never user input: the split must always balance."""


class Posting(Aggregate):
    class Recorded(Aggregate.Created):
        kind: str
        ref: str
        order_id: UUID | None
        entries: dict[str, int]

    def __init__(self, kind: str, ref: str, order_id: UUID | None, entries: dict[str, int]):
        self.kind = kind
        self.ref = ref
        self.order_id = order_id
        self.entries = dict(entries)

    @classmethod
    def record(
        cls, kind: str, ref: str, order_id: UUID | None, entries: Entries, at: datetime
    ) -> Posting:
        if not is_balanced(entries):
            raise UnbalancedPosting(f"{kind} {ref} does not balance: {entries}")
        return cls._create(
            cls.Recorded,
            id=posting_id(kind, ref),
            timestamp=at,
            kind=kind,
            ref=ref,
            order_id=order_id,
            entries=dict(entries),
        )
