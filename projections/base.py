"""The projection machinery: versioned tables, one handler per event, batched writes.

A projection turns a batch of (log position, domain event) pairs into rows. Handlers do
not talk to the database: ``begin`` prefetches, in a few queries, the rows of its own
tables that the batch needs to read; handlers then record their changes in memory
(``Changes``: puts, deletes, additive counters, earliest values); ``flush`` writes
everything in a handful of set-based statements (``unnest`` arrays, ``ON CONFLICT``)
sent as one pipeline. A batch of thousands of events therefore costs a few round trips,
not one per event.

Order. Through Kafka only one aggregate's events keep their order, and two consumer
processes may apply batches of one projection at the same time. So a handler may read
only rows that earlier events of *its own aggregate* wrote (an order's merchant, a
bucket's product); where the facts of two aggregates meet in one row, each writes with
an operation that commutes with the other's: counters (``col + delta``), puts of
columns no other aggregate writes, earliest values (``LEAST``). Figures that need both
facts are derived when read. The rows are then the same in any order that keeps each
aggregate's own, and correct however two transactions interleave; only to keep them
from deadlocking on shared rows do a projection's flushes take turns (``flush_lock``).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, ClassVar, Generic, Self, TypeVar

import psycopg
from eventsourcing.utils import get_topic
from psycopg import pq
from psycopg.rows import tuple_row

from projections import catalog

Key = tuple[Any, ...]
F = TypeVar("F", bound=Callable[..., None])

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# What a runner should do when a handler raises on an event (issue 5's dead letters):
STOP = "stop"  # record the dead letter and stop this projection until ops retry or skip
SKIP = "skip"  # record the dead letter and apply the batch again without that event


def day_of(moment: datetime) -> date:
    """The UTC calendar day of a business timestamp: daily buckets are UTC days."""
    return moment.astimezone(UTC).date()


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a PostgreSQL type; also the cast of the array this column is written from
    default: str | None = None
    nullable: bool = False

    def ddl(self) -> str:
        text = f"{self.name} {self.type}"
        if not self.nullable:
            text += " NOT NULL"
        if self.default is not None:
            text += f" DEFAULT {self.default}"
        return text


def key(name: str, type_: str) -> Column:
    return Column(name, type_)


def counter(name: str) -> Column:
    """A bigint that handlers only ever add to: written with ``col = col + delta``."""
    return Column(name, "bigint", default="0")


def value(name: str, type_: str, *, default: str | None = None) -> Column:
    """A plain value. Nullable, so that a counter row may exist before its facts arrive."""
    return Column(name, type_, default=default, nullable=default is None)


def fact(name: str, type_: str) -> Column:
    """A value every row has from its first write."""
    return Column(name, type_)


def earliest(name: str, type_: str) -> Column:
    """The least value any event gave: written with ``LEAST(col, new)``, so events of
    different aggregates may give theirs in any order (NULL until the first one)."""
    return Column(name, type_, nullable=True)


@dataclass(frozen=True)
class Table:
    short: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        for name in [self.short, *names]:
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a plain lower-case SQL name")
        missing = [k for k in self.key if k not in names]
        if missing:
            raise ValueError(f"key columns {missing} are not columns of {self.short}")

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.short} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def ddl(self, full_name: str) -> list[str]:
        body = ", ".join([c.ddl() for c in self.columns] + [f"PRIMARY KEY ({', '.join(self.key)})"])
        statements = [f"CREATE TABLE IF NOT EXISTS {full_name} ({body})"]
        for columns in self.indexes:
            index = f"{full_name}_{'_'.join(columns)}_idx"
            statements.append(f"CREATE INDEX IF NOT EXISTS {index} ON {full_name} ({', '.join(columns)})")
        return statements


def _arrays(table: Table, columns: Sequence[str]) -> str:
    # Binary arrays: psycopg dumps them several times faster than text ones.
    return ", ".join(f"%b::{table.column(c).type}[]" for c in columns)


# -------------------------------------------------------------------------- changes


class NotLoaded(LookupError):
    """A handler read a row its batch did not prefetch: a bug in ``begin``, never data."""


class Changes:
    """One table's changes in a batch, kept in memory and written at the end in a few
    statements: deletes, then puts (upserts of the columns given), then counter deltas,
    then earliest values.

    A put after a delete of the same key replaces the row. Counters are only ever added
    to and earliest values only ever lowered, never put or deleted, so the kinds of
    change commute per column. Each statement writes its rows in key order: the same
    batch always gives the same statements, and locks rows in one order.
    """

    def __init__(self, table: Table, name: str) -> None:
        self.table = table
        self.name = name
        self._loaded: dict[Key, dict[str, Any] | None] = {}
        self._puts: dict[Key, dict[str, Any]] = {}
        self._deleted: set[Key] = set()
        self._adds: dict[Key, dict[str, int]] = {}
        self._least: dict[Key, dict[str, Any]] = {}

    # reads ------------------------------------------------------------------------

    def load(self, conn: psycopg.Connection[Any], keys: Iterable[Key]) -> None:
        """Prefetch these rows (those not already known) in one query."""
        wanted = {k for k in keys if k not in self._loaded and k not in self._puts}
        if not wanted:
            return
        for k in wanted:
            self._loaded[k] = None
        columns = self.table.key
        rows = zip(*wanted, strict=True)
        self._select(
            conn,
            f"({', '.join(columns)}) IN (SELECT * FROM unnest({_arrays(self.table, columns)}))",
            [list(r) for r in rows],
        )

    def load_by(self, conn: psycopg.Connection[Any], column: str, values: Iterable[Any]) -> list[Key]:
        """Prefetch every row whose ``column`` is one of ``values``; returns their keys."""
        wanted = list(set(values))
        if not wanted:
            return []
        return self._select(conn, f"{column} = ANY(%b::{self.table.column(column).type}[])", [wanted])

    def _select(self, conn: psycopg.Connection[Any], where: str, params: list[Any]) -> list[Key]:
        names = self.table.column_names
        found: list[Key] = []
        # Tuples whatever the connection's row factory (eventsourcing's gives dicts).
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(f"SELECT {', '.join(names)} FROM {self.name} WHERE {where}", params)
            for row in cur:
                record = dict(zip(names, row, strict=True))
                k = tuple(record[c] for c in self.table.key)
                self._loaded[k] = record
                found.append(k)
        return found

    def seed(self, rows: dict[Key, dict[str, Any] | None]) -> None:
        """Take these rows as loaded (None: known absent), as if read from the table."""
        self._loaded.update(rows)

    def get(self, k: Key) -> Mapping[str, Any] | None:
        """The row as this batch sees it: as loaded, then with this batch's changes.

        Read-only: an unchanged loaded row is returned as is, without a copy, since
        most reads are lookups of facts (an order's merchant) on the hot path.
        """
        put, adds, least = self._puts.get(k), self._adds.get(k), self._least.get(k)
        if put is None and adds is None and least is None:
            if k in self._deleted:
                return None
            try:
                return self._loaded[k]
            except KeyError:
                raise NotLoaded(f"{self.name} row {k} was not prefetched") from None
        if put is not None:
            base = None if k in self._deleted else self._loaded.get(k)
            row = {**(base or {}), **put}
        elif k in self._loaded:
            row = dict(self._loaded[k] or {})
        else:
            raise NotLoaded(f"{self.name} row {k} was not prefetched")
        for column, delta in (adds or {}).items():
            row[column] = (row.get(column) or 0) + delta
        for column, candidate in (least or {}).items():
            row[column] = _least(row.get(column), candidate)
        return row

    # writes -----------------------------------------------------------------------

    def put(self, k: Key, **values: Any) -> None:
        self._puts.setdefault(k, {}).update(values)

    def delete(self, k: Key) -> None:
        if k in self._adds or k in self._least:
            raise ValueError(f"{self.name}: counters and earliest values are never deleted ({k})")
        self._puts.pop(k, None)
        self._deleted.add(k)

    def add(self, k: Key, **deltas: int) -> None:
        current = self._adds.setdefault(k, {})
        for column, delta in deltas.items():
            current[column] = current.get(column, 0) + delta

    def lower(self, k: Key, **values: Any) -> None:
        """Keep the least of each column's values (``earliest`` columns)."""
        current = self._least.setdefault(k, {})
        for column, candidate in values.items():
            current[column] = _least(current.get(column), candidate)

    def statements(self) -> Iterator[Statement]:
        table, keys = self.table, list(self.table.key)
        if self._deleted:
            cols = zip(*sorted(self._deleted), strict=True)
            yield Statement(
                f"DELETE FROM {self.name} t USING unnest({_arrays(table, keys)})"
                f" AS d({', '.join(keys)}) WHERE {_match(keys)}",
                [list(c) for c in cols],
            )
        # Puts are grouped by the set of columns they give.
        groups: dict[tuple[str, ...], list[Key]] = {}
        for k in sorted(self._puts):
            groups.setdefault(tuple(sorted(self._puts[k])), []).append(k)
        for columns, group in sorted(groups.items()):
            params = [list(c) for c in zip(*group, strict=True)]
            params += [[self._puts[k][c] for k in group] for c in columns]
            if self._required - set(columns):
                # Not a whole row: it changes a row an earlier event created. (INSERT
                # would check NOT NULL before it found the conflict.)
                yield self._update(keys, list(columns), params, len(group))
            else:
                yield self._upsert(keys, list(columns), params, how="put")
        if self._adds:
            columns = sorted({c for d in self._adds.values() for c in d})
            group = sorted(self._adds)
            params = [list(c) for c in zip(*group, strict=True)]
            params += [[self._adds[k].get(c, 0) for k in group] for c in columns]
            yield self._upsert(keys, columns, params, how="add")
        if self._least:
            # NULL for a column a key did not lower: LEAST ignores NULLs, so it keeps the old.
            columns = sorted({c for d in self._least.values() for c in d})
            group = sorted(self._least)
            params = [list(c) for c in zip(*group, strict=True)]
            params += [[self._least[k].get(c) for k in group] for c in columns]
            yield self._upsert(keys, columns, params, how="least")

    @property
    def _required(self) -> set[str]:
        return {
            c.name
            for c in self.table.columns
            if not c.nullable and c.default is None and c.name not in self.table.key
        }

    def _upsert(self, keys: list[str], columns: list[str], params: list[Any], *, how: str) -> Statement:
        every = keys + columns
        text = (
            f"INSERT INTO {self.name} AS t ({', '.join(every)})"
            f" SELECT * FROM unnest({_arrays(self.table, every)})"
            f" ON CONFLICT ({', '.join(keys)}) DO "
        )
        if not columns:
            text += "NOTHING"
        elif how == "add":
            text += "UPDATE SET " + ", ".join(f"{c} = t.{c} + EXCLUDED.{c}" for c in columns)
        elif how == "least":
            text += "UPDATE SET " + ", ".join(f"{c} = LEAST(t.{c}, EXCLUDED.{c})" for c in columns)
        else:
            text += "UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
        return Statement(text, params)

    def _update(self, keys: list[str], columns: list[str], params: list[Any], rows: int) -> Statement:
        every = keys + columns
        return Statement(
            f"UPDATE {self.name} t SET {', '.join(f'{c} = d.{c}' for c in columns)}"
            f" FROM unnest({_arrays(self.table, every)}) AS d({', '.join(every)})"
            f" WHERE {_match(keys)}",
            params,
            rows=rows,
        )


def _least(a: Any, b: Any) -> Any:
    """SQL's LEAST: the smaller, ignoring NULLs."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _match(keys: list[str]) -> str:
    return " AND ".join(f"t.{c} = d.{c}" for c in keys)


@dataclass(frozen=True)
class Statement:
    text: str
    params: list[Any]
    # How many rows it must change, when fewer would mean an event came before the one
    # that creates its row: a bug to stop on, never to skip silently.
    rows: int | None = None


class MissingRows(LookupError):
    """An update found fewer rows than it changes."""


def flush_lock(name: str) -> tuple[int, int]:
    """The advisory lock a projection's flushes take: (namespace, crc32 of its name)."""
    return _LOCK_NAMESPACE, zlib.crc32(name.encode()) - 2**31


# Two-key advisory locks (int4, int4) never collide with one-key ones such as the relay's.
_LOCK_NAMESPACE = 0x6B616D  # "kam"


class Batch:
    """The in-memory state of one batch: a ``Changes`` per table, flushed in one pipeline."""

    def __init__(self, projection: Projection[Any]) -> None:
        self.changes = {t.short: Changes(t, projection.table(t.short)) for t in projection.tables}
        self._lock = flush_lock(projection.name)

    def __getitem__(self, short: str) -> Changes:
        return self.changes[short]

    def before_flush(self) -> Iterator[Statement]:
        """Statements that must run before the tables' own changes (override)."""
        return iter(())

    def flush(self, conn: psycopg.Connection[Any]) -> None:
        statements = list(self.before_flush())
        for changes in self.changes.values():
            statements.extend(changes.statements())
        if not statements:
            return
        # Flushes of one projection take turns, held to commit. Two consumer processes
        # (Kafka partitions split between them) otherwise upsert shared rows (a
        # merchant's, a product's) in several statements each and may deadlock; their
        # handlers and prefetches still run side by side. Uncontended in embedded mode,
        # and sent in the same pipeline: no round trip of its own.
        statements.insert(0, Statement("SELECT pg_advisory_xact_lock(%s, %s)", list(self._lock)))
        # One pipeline: the statements go out together and the batch costs one round trip.
        checked: list[tuple[Statement, psycopg.Cursor[Any]]] = []
        with conn.pipeline():
            for statement in statements:
                cur = conn.cursor()
                cur.execute(statement.text, statement.params)
                if statement.rows is not None:
                    checked.append((statement, cur))
        for statement, cur in checked:
            if cur.rowcount != statement.rows:
                raise MissingRows(f"{statement.text[:80]}... changed {cur.rowcount} of {statement.rows} rows")


# ------------------------------------------------------------------------ projection


def handler_name(event_type: type) -> str:
    """``Order.Paid`` -> ``order_paid``: the name a handler of that event must have."""
    parts = event_type.__qualname__.split(".")
    return "_".join(re.sub(r"(?<!^)(?=[A-Z])", "_", part).lower() for part in parts)


def handles(*event_types: type) -> Callable[[F], F]:
    """Mark a method as the handler of these event classes; it is named after the event."""

    def mark(method: F) -> F:
        method.__kami_handles__ = event_types  # type: ignore[attr-defined]
        return method

    return mark


class HandlerFailed(Exception):
    """A handler raised on one event. Nothing of the batch was written (handlers only
    change memory), so a runner can record a dead letter and either stop or apply the
    batch again without this event, as ``Projection.on_failure`` says."""

    def __init__(self, projection: str, position: int, event: object) -> None:
        super().__init__(f"{projection} failed on the event at position {position}: {event!r}")
        self.projection = projection
        self.position = position
        self.event = event


B = TypeVar("B", bound=Batch)


class Projection(Generic[B]):
    """A read model: a name, a version, its tables, and one handler per event type.

    The instance is a runner ``Consumer``: ``name`` is its tracking name, which carries
    the version (``rm_dashboard_v1``) so that a rebuild of v2 beside the live v1 has a
    position of its own. Table names carry the version the same way.
    """

    read_model: ClassVar[str]
    # The version of the code: bump it when a handler or a table changes, then rebuild.
    VERSION: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = ()
    on_failure: ClassVar[str] = STOP
    # Event class -> name of its handler method, collected from @handles.
    handlers: ClassVar[dict[type, str]] = {}
    topics: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[type, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, member in vars(klass).items():
                for event_type in getattr(member, "__kami_handles__", ()):
                    if len(member.__kami_handles__) == 1 and attr != handler_name(event_type):
                        raise TypeError(
                            f"{cls.__name__}.{attr} handles {event_type.__qualname__}:"
                            f" name it {handler_name(event_type)}"
                        )
                    found[event_type] = attr
        cls.handlers = found
        cls.topics = frozenset(get_topic(t) for t in found)

    def __init__(self, version: int | None = None) -> None:
        self.version = self.VERSION if version is None else version
        if self.version < 1:
            raise ValueError("versions count from 1")
        if not _NAME.match(self.read_model):
            raise ValueError(f"{self.read_model!r} is not a plain lower-case SQL name")
        self.prefix = f"rm_{self.read_model}_v{self.version}"
        self.name = self.prefix
        self._dispatch: dict[type, Callable[[B, int, Any], None]] = {
            event_type: getattr(self, attr) for event_type, attr in self.handlers.items()
        }

    @classmethod
    def live(cls, conn: psycopg.Connection[Any], version: int | None = None) -> Self:
        """The projection whose tables queries should read: the given or the live version."""
        if version is None:
            version = catalog.live_version(conn, cls.read_model) or cls.VERSION
        return cls(version)

    # tables ---------------------------------------------------------------------------

    def table(self, short: str) -> str:
        return f"{self.prefix}_{short}"

    def table_names(self, version: int | None = None) -> dict[str, str]:
        prefix = self.prefix if version is None else f"rm_{self.read_model}_v{version}"
        return {t.short: f"{prefix}_{t.short}" for t in self.tables}

    def ddl(self, version: int | None = None) -> list[str]:
        names = self.table_names(version)
        return [s for t in self.tables for s in t.ddl(names[t.short])]

    def create_tables(self, conn: psycopg.Connection[Any]) -> None:
        # Creating tables never makes a version live: queries read the catalog's live
        # version, or the code's VERSION while ops have promoted none.
        for statement in self.ddl():
            conn.execute(statement)

    def drop_tables(self, conn: psycopg.Connection[Any]) -> None:
        for name in self.table_names().values():
            conn.execute(f"DROP TABLE IF EXISTS {name}")

    def rows(self, conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, in key order: what a rebuild is compared with."""
        result: dict[str, list[tuple[Any, ...]]] = {}
        for t in self.tables:
            columns = ", ".join(t.column_names)
            result[t.short] = conn.execute(
                f"SELECT {columns} FROM {self.table(t.short)} ORDER BY {', '.join(t.key)}"
            ).fetchall()
        return result

    # events ---------------------------------------------------------------------------

    def begin(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> B:
        """A new batch with the rows these events will read prefetched (override)."""
        raise NotImplementedError

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> None:
        """Apply (position, event) pairs inside the caller's transaction."""
        relevant = [(p, e) for p, e in events if type(e) in self._dispatch]
        if not relevant:
            return
        batch = self.begin(conn, relevant)
        for position, event in relevant:
            try:
                self._dispatch[type(event)](batch, position, event)
            except Exception as error:
                raise HandlerFailed(self.name, position, event) from error
        batch.flush(conn)


def of_type(events: Sequence[tuple[int, Any]], *types: type) -> Iterator[Any]:
    """The events of these types, for ``begin`` to collect the keys it must prefetch."""
    for _, event in events:
        if isinstance(event, types):
            yield event


@contextmanager
def snapshot(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """Read several tables (and a position) as of one instant: a repeatable-read
    transaction, unless the caller already has a transaction of its own."""
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        yield conn
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield conn
