"""A command's unit of work: the aggregates it loaded or created, and their new events."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.domain import Aggregate

from domain.exceptions import NotFound

A = TypeVar("A", bound=Aggregate)


class UnitOfWork:
    def __init__(self, repository: Repository[UUID]) -> None:
        self._repository = repository
        self._aggregates: dict[UUID, Aggregate] = {}
        self._read: dict[UUID, Aggregate] = {}
        # Card buckets this command is working on, so others can steer clear of them.
        self.busy: list[UUID] = []

    def find(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        if aggregate_id in self._read:
            raise AssertionError("an aggregate read without a copy cannot be changed in the same command")
        aggregate = self._aggregates.get(aggregate_id)
        if aggregate is None:
            try:
                aggregate = self._repository.get(aggregate_id)
            except AggregateNotFoundError:
                return None
            self._aggregates[aggregate_id] = aggregate
        # An id of another kind is as good as no id: never let a caller mix them up.
        return aggregate if isinstance(aggregate, kind) else None

    def peek(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        """An aggregate this command only reads: the cached object itself, not a copy.

        Never call its command methods. Copying every aggregate a command merely looks
        at (merchant, product, promoter) was a large share of each command's CPU.
        """
        aggregate = self._aggregates.get(aggregate_id) or self._read.get(aggregate_id)
        if aggregate is None:
            try:
                aggregate = self._repository.get(aggregate_id, deepcopy_from_cache=False)
            except AggregateNotFoundError:
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
            events.extend(aggregate.collect_events())
        return events
