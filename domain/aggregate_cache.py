"""Where a command's aggregates come from: the store each time, or a cache checked at commit.

eventsourcing's own cache fast-forwards every cached aggregate with a SELECT on each
load, to catch writes by other processes; at about ten loads per order that SELECT was
the largest share of an order's cost. kami's cache does no SELECT on a hit. Instead, every
command records the version of each aggregate it loaded (0 for one that does not exist),
and that read set is checked against the store once, when the command's events are
written (``domain.group_commit``, under the store's table lock) or, for a command that
writes nothing, by one query of the current versions. A command that read something
stale is sent back: its stale entries are caught up from the store and it runs again on
fresh state. So a stale cache costs a retry, never a wrong decision.

Entries are only ever replaced by newer versions: a thread that loaded an old version
from the store cannot overwrite the version a commit just put there.

An id that is new by construction (a payment's id derived from a fresh txn id) is not
looked up on a miss: it is taken as absent (``likely_new``), and the read check that
every command passes anyway proves it. A wrong guess (a provider's retry landing in
another process) costs a retry, whose catch-up loads the aggregate; a right one saves a
round trip on every payment.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from copy import deepcopy
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository, project_aggregate
from eventsourcing.domain import Aggregate

from domain.event_store import ShopRecorder
from domain.exceptions import ConcurrencyConflict

DEFAULT_MAXSIZE = 20_000


class StaleRead(ConcurrencyConflict):
    """A command decided on aggregates that changed since it loaded them."""

    def __init__(self, ids: Iterable[UUID]) -> None:
        self.ids = frozenset(ids)
        super().__init__(f"{len(self.ids)} aggregate(s) changed under the command")


class Loads(Protocol):
    """What a unit of work loads aggregates from."""

    # Whether a command's reads must be checked before its outcome is trusted.
    checks_reads: bool

    def load(self, aggregate_id: UUID, *, copy: bool, likely_new: bool = False) -> Aggregate | None:
        """The aggregate (a copy of it if ``copy``), None if it does not exist. With
        ``likely_new`` an aggregate not at hand may be taken as absent: only for loads
        whose read is checked before the command's outcome is trusted."""

    def check(self, reads: Mapping[UUID, int]) -> int:
        """Raise StaleRead if any of these versions is no longer current; else the log head."""

    def remember(self, aggregates: Iterable[Aggregate]) -> None: ...

    def refresh(self, ids: Iterable[UUID]) -> None:
        """Bring these entries up to the store's current version."""


class StoreLoads:
    """eventsourcing's plain way: every load reconstructs the aggregate from the store."""

    checks_reads = False

    def __init__(self, repository: Repository[UUID], recorder: Any) -> None:
        self._repository = repository
        self._recorder = recorder

    def load(self, aggregate_id: UUID, *, copy: bool, likely_new: bool = False) -> Aggregate | None:
        try:
            return self._repository.get(aggregate_id, deepcopy_from_cache=copy)
        except AggregateNotFoundError:
            return None

    def check(self, reads: Mapping[UUID, int]) -> int:
        return int(self._recorder.max_notification_id() or 0)

    def remember(self, aggregates: Iterable[Aggregate]) -> None:
        pass

    def refresh(self, ids: Iterable[UUID]) -> None:
        pass


_ABSENT = object()


class CachedLoads:
    """Aggregates kept between commands; reads are checked when the command ends."""

    checks_reads = True

    def __init__(
        self, repository: Repository[UUID], recorder: ShopRecorder, maxsize: int = DEFAULT_MAXSIZE
    ) -> None:
        if repository.cache is not None:
            raise ValueError("the repository's own cache must be off: it would fast-forward every load")
        self._repository = repository
        self._recorder = recorder
        self._maxsize = maxsize
        self._entries: OrderedDict[UUID, Any] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, aggregate_id: UUID, *, copy: bool, likely_new: bool = False) -> Aggregate | None:
        with self._lock:
            entry = self._entries.get(aggregate_id)
            if entry is not None:
                self._entries.move_to_end(aggregate_id)
        if entry is None:
            if likely_new:
                return None  # not cached either: the guess is checked with the command's reads
            entry = self._fetch(aggregate_id)
            self._put(aggregate_id, entry)
        if entry is _ABSENT:
            return None
        # Cached objects are shared and never changed in place: a command that will
        # change one works on its own copy, which replaces the entry once committed.
        return copy_of(entry) if copy else entry

    def _fetch(self, aggregate_id: UUID) -> Any:
        try:
            return self._repository.get(aggregate_id)
        except AggregateNotFoundError:
            return _ABSENT

    def check(self, reads: Mapping[UUID, int]) -> int:
        current, head = self._recorder.versions_and_head(list(reads))
        stale = stale_reads(reads, current)
        if stale:
            raise StaleRead(stale)
        return head

    def remember(self, aggregates: Iterable[Aggregate]) -> None:
        for aggregate in aggregates:
            self._put(aggregate.id, aggregate)

    def refresh(self, ids: Iterable[UUID]) -> None:
        # Fast-forward rather than drop: rebuilding a busy card bucket from its first
        # event would cost far more than reading the few events it missed.
        for aggregate_id in ids:
            with self._lock:
                entry = self._entries.get(aggregate_id)
            if entry is None:
                # Never cached (taken as absent, or evicted): the retry needs what is stored.
                self._put(aggregate_id, self._fetch(aggregate_id))
                continue
            if entry is _ABSENT:
                with self._lock:
                    if self._entries.get(aggregate_id) is _ABSENT:
                        del self._entries[aggregate_id]
                continue
            missed = list(self._repository.event_store.get(aggregate_id, gt=entry.version))
            if missed:
                self._put(aggregate_id, project_aggregate(copy_of(entry), missed))

    def _put(self, aggregate_id: UUID, entry: Any) -> None:
        with self._lock:
            held = self._entries.get(aggregate_id)
            if held is not None and _version(held) > _version(entry):
                return  # a commit already put a newer version here
            self._entries[aggregate_id] = entry
            self._entries.move_to_end(aggregate_id)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)


# Values that never change once made: a copy may share them. deepcopy rebuilds every
# UUID and datetime through __reduce__, most of the cost of copying an order.
_IMMUTABLE = (str, int, float, bytes, type(None), UUID, datetime, date, timedelta, Decimal, frozenset)


def copy_of(aggregate: Any) -> Any:
    """A copy of a cached aggregate that shares nothing a command could change.

    An aggregate with a ``__deepcopy__`` of its own (a card bucket) is copied its way.
    Otherwise its attributes are copied as ``_copied`` says: lists, dicts, sets and
    tuples anew, immutable values shared, anything else deep-copied.
    """
    if hasattr(aggregate, "__deepcopy__"):
        return deepcopy(aggregate)
    clone = object.__new__(type(aggregate))
    clone.__dict__.update({name: _copied(value) for name, value in aggregate.__dict__.items()})
    return clone


def _copied(value: Any) -> Any:
    if isinstance(value, _IMMUTABLE):
        return value
    kind = type(value)
    if kind is list:
        return [_copied(v) for v in value]
    if kind is dict:
        return {k: _copied(v) for k, v in value.items()}
    if kind is tuple:
        return tuple(_copied(v) for v in value)
    if kind is set:
        return {_copied(v) for v in value}
    return deepcopy(value)


def version_of(aggregate: Aggregate | None) -> int:
    return 0 if aggregate is None else int(aggregate.version)


def _version(entry: Any) -> int:
    return 0 if entry is _ABSENT else int(entry.version)


def stale_reads(reads: Mapping[UUID, int], current: Mapping[UUID, int]) -> list[UUID]:
    """The ids whose stored version is not the version the command read."""
    return [oid for oid, seen in reads.items() if current.get(oid, 0) != seen]
