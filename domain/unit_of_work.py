"""A command's unit of work: the aggregates it loaded or created, and their new events."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.aggregate_cache import Loads, version_of
from domain.exceptions import NotFound

A = TypeVar("A", bound=Aggregate)


class UnitOfWork:
    def __init__(self, loads: Loads) -> None:
        self._loads = loads
        self._aggregates: dict[UUID, Aggregate] = {}
        self._read: dict[UUID, Aggregate] = {}
        # The version of everything loaded (0: it did not exist): the command's decision
        # rests on these, so they must still be current when it commits.
        self.reads: dict[UUID, int] = {}
        # The aggregates that got new events, once collected: the cache takes them on commit.
        self.changed: list[Aggregate] = []
        # Card buckets this command is working on, so others can steer clear of them.
        self.busy: list[UUID] = []

    def _load(self, aggregate_id: UUID, *, copy: bool, likely_new: bool = False) -> Aggregate | None:
        # Callers may pass an id as text; the cache and the store's answers use UUIDs.
        key = aggregate_id if isinstance(aggregate_id, UUID) else UUID(str(aggregate_id))
        aggregate = self._loads.load(key, copy=copy, likely_new=likely_new)
        self.reads.setdefault(key, version_of(aggregate))
        return aggregate

    def find(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        if aggregate_id in self._read:
            raise AssertionError("an aggregate read without a copy cannot be changed in the same command")
        aggregate = self._aggregates.get(aggregate_id)
        if aggregate is None:
            aggregate = self._load(aggregate_id, copy=True)
            if aggregate is None:
                return None
            self._aggregates[aggregate_id] = aggregate
        # An id of another kind is as good as no id: never let a caller mix them up.
        return aggregate if isinstance(aggregate, kind) else None

    def peek(self, aggregate_id: UUID, kind: type[A], *, likely_new: bool = False) -> A | None:
        """An aggregate this command only reads: the cached object itself, not a copy.

        Never call its command methods. Copying every aggregate a command merely looks
        at (merchant, product, promoter) was a large share of each command's CPU.
        ``likely_new``: the id is new by construction (a fresh txn id), so one not
        cached is taken as absent without asking the store (``domain.aggregate_cache``).
        """
        aggregate = self._aggregates.get(aggregate_id) or self._read.get(aggregate_id)
        if aggregate is None:
            aggregate = self._load(aggregate_id, copy=False, likely_new=likely_new)
            if aggregate is None:
                return None
            self._read[aggregate_id] = aggregate
        return aggregate if isinstance(aggregate, kind) else None

    def read(self, aggregate_id: UUID, kind: type[A], what: str = "") -> A:
        aggregate = self.peek(aggregate_id, kind)
        if aggregate is None:
            raise NotFound(f"no such {what or kind.__name__.lower()}")
        return aggregate

    def get(self, aggregate_id: UUID, kind: type[A], what: str = "") -> A:
        aggregate = self.find(aggregate_id, kind)
        if aggregate is None:
            raise NotFound(f"no such {what or kind.__name__.lower()}")
        return aggregate

    def add(self, *aggregates: Aggregate) -> None:
        for aggregate in aggregates:
            self._aggregates[aggregate.id] = aggregate

    def collect_events(self) -> list[Any]:
        events: list[Any] = []
        for aggregate in self._aggregates.values():
            new = aggregate.collect_events()
            if new:
                events.extend(new)
                self.changed.append(aggregate)
        return events
