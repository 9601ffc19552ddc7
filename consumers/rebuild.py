"""Rebuild a read model beside the live one, switch reads to it, drop the old one.

``rebuild`` builds version n+1 (or the next free number) of each read model from
position zero under its own tables and tracking name, while the live version n keeps
serving and the follower (embedded or Kafka) keeps it current. Every step commits its
rows and its position together, so an interrupted rebuild (Ctrl-C, SIGKILL, a dead
letter that stops the new version) leaves the live version untouched and the new one
consistent at its position; ``rm_rebuilds`` remembers which version was under way,
and the next ``rebuild`` of that read model continues it from its position.

The switch, once the new version has caught up with the head, is one transaction:

1. lock the catalog row (Kafka consumers of the live version hold it while they
   apply a batch) and the position rows of both versions (the embedded follower
   locks its tracking rows for each step), so the live version stands still;
2. bring the new version to exactly the live one's position (or, embedded, the live
   one to the new one's), so both show the same events;
3. compare them table by table: the report of what the rebuild changed;
4. promote the new version (its position >= the live one's, checked here) and delete
   the old version's position rows, which retires it: followers leave it alone from
   that moment and follow the new version once they notice the promotion.

The old tables are dropped after that commit. A query that found the old version live
in its snapshot and reaches for a table just dropped reads again (``api.readside``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import Mapper
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from consumers import dead_letters
from consumers.positions import read_model_position
from consumers.runner import DEFAULT_BATCH, LogRunner, ensure_tracking, read_position
from projections import catalog
from projections.base import Projection
from projections.registry import projection_class

log = logging.getLogger(__name__)

EXAMPLES = 3
# Between the switch and dropping the old tables: a reader that read the catalog just
# before the switch reaches its tables within milliseconds (queries through
# ``api.readside`` even read again if it does not); one second covers the others.
DROP_GRACE_SECONDS = 1.0
# A switch retries when the live version moves between its checks; far more than ever needed.
SWITCH_ATTEMPTS = 50


class RebuildError(Exception):
    """A rebuild that cannot go on; the live version is untouched."""


class RebuildStopped(RebuildError):
    """A handler failed on an event and the new version's policy is to stop there."""

    def __init__(self, name: str, letters: Sequence[dead_letters.DeadLetter]) -> None:
        where = ", ".join(f"#{d.id} at position {d.position} ({d.error})" for d in letters)
        super().__init__(
            f"{name} stopped on a dead letter: {where}. The live version is untouched. Fix the code"
            " and run the rebuild again (it retries the letter and continues), or `kami dlq skip`."
        )
        self.letters = list(letters)


@dataclass(frozen=True)
class Progress:
    """Where a rebuild stands: what a progress bar shows."""

    names: tuple[str, ...]
    position: int  # the lowest position of the versions being built
    head: int
    started_at: int  # the lowest position when this run began (> 0 when resumed)
    events_per_s: float
    phase: str  # "building" or "switching <read model>"


ProgressCallback = Callable[[Progress], None]


@dataclass
class TableDiff:
    table: str
    added: int = 0
    removed: int = 0
    changed: int = 0
    old_rows: int = 0
    new_rows: int = 0
    columns_added: list[str] = field(default_factory=list)
    columns_removed: list[str] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed or self.columns_added or self.columns_removed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "old_rows": self.old_rows,
            "new_rows": self.new_rows,
            "columns_added": self.columns_added,
            "columns_removed": self.columns_removed,
            "examples": self.examples,
            "note": self.note,
        }


@dataclass
class Report:
    read_model: str
    old_version: int
    new_version: int
    resumed_from: int | None  # the position a resumed rebuild continued from
    compared_at: int  # the position both versions showed when compared
    live_position: int  # the live version's position at the switch
    position: int  # the new version's position at the switch
    seconds: float
    tables: list[TableDiff]
    dead_letters: list[dict[str, Any]]  # open letters of the new version (skip policy)

    @property
    def changed(self) -> bool:
        return any(not t.same for t in self.tables)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read_model": self.read_model,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "resumed_from": self.resumed_from,
            "compared_at": self.compared_at,
            "live_position": self.live_position,
            "position": self.position,
            "seconds": round(self.seconds, 3),
            "changed": self.changed,
            "tables": [t.as_dict() for t in self.tables],
            "dead_letters": self.dead_letters,
        }


@dataclass
class _Plan:
    cls: type[Projection[Any]]
    live: Projection[Any]
    new: Projection[Any]
    resumed_from: int | None
    started: float


class Rebuilder:
    """Rebuilds read models of one event store; see the module's docstring."""

    def __init__(
        self,
        pool: ConnectionPool,
        recorder: PostgresApplicationRecorder,
        mapper: Mapper[Any],
        *,
        batch_size: int = DEFAULT_BATCH,
        progress: ProgressCallback | None = None,
        classes: Callable[[str], type[Projection[Any]]] = projection_class,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self._pool = pool
        self._recorder = recorder
        self._mapper = mapper
        self._batch_size = batch_size
        self._progress = progress
        self._classes = classes
        # How the grace before a drop is waited: a test passes its own, and sees it.
        self._sleep = sleep

    def rebuild(self, read_models: Sequence[str]) -> list[Report]:
        """Build a new version of each read model, switch reads to it, drop the old one."""
        classes = [self._classes(name) for name in read_models]
        # One rebuild of a read model at a time, for as long as this session lives (a
        # SIGKILL ends the session, and with it the lock).
        with psycopg.connect(self._pool.conninfo, autocommit=True) as guard:
            for cls in classes:
                row = guard.execute(
                    "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, cls.read_model)
                ).fetchone()
                if not row or not row[0]:
                    raise RebuildError(f"another rebuild of {cls.read_model} is running")
            plans = [self._plan(cls) for cls in classes]
            runner = LogRunner(
                self._pool, self._recorder, self._mapper, [p.new for p in plans], self._batch_size
            )
            self._resume_stopped(plans)
            self._build(runner, plans)
            reports = []
            for plan in plans:
                reports.append(self._switch(runner, plan))
                self._sleep(DROP_GRACE_SECONDS)
                self._drop(plan.live)
            return reports

    def abandon(self, read_model: str) -> int | None:
        """Drop the half-built version of a read model, if any; returns its version."""
        with self._pool.connection() as conn, conn.transaction():
            under_way = catalog.rebuilding(conn).get(read_model)
            if under_way is None:
                return None
            version = under_way[0]
            _retire(conn, self._classes(read_model)(version), "its rebuild was abandoned")
            catalog.end_rebuild(conn, read_model)
        self._drop(self._classes(read_model)(version))
        return version

    # --------------------------------------------------------------------- phases

    def _plan(self, cls: type[Projection[Any]]) -> _Plan:
        with self._pool.connection() as conn, conn.transaction():
            live_version = catalog.live_version(conn, cls.read_model) or cls.VERSION
            catalog.pin(conn, cls.read_model, live_version)
            under_way = catalog.rebuilding(conn).get(cls.read_model)
            resumed_from: int | None = None
            if under_way is not None and under_way[1] == live_version and under_way[0] != live_version:
                version = under_way[0]
                resumed_from = read_position(conn, cls(version).name)
            else:
                if under_way is not None:
                    # Begun against a version that is no longer live: it cannot be switched
                    # in for this one, so start over.
                    stale = cls(under_way[0])
                    if under_way[0] != live_version:
                        _retire(conn, stale, "its rebuild was begun against another live version")
                        _drop_tables(conn, stale)
                version = _free_version(conn, cls, live_version)
            catalog.start_rebuild(conn, cls.read_model, version, live_version)
            new = cls(version)
            ensure_tracking(conn, new.name)
            new.create_tables(conn)
        if resumed_from is not None:
            log.info("resuming %s from position %s", new.name, resumed_from)
        return _Plan(cls, cls(live_version), new, resumed_from, time.monotonic())

    def _resume_stopped(self, plans: Sequence[_Plan]) -> None:
        """A resumed version stopped on a dead letter retries it first, with today's code."""
        names = {p.new.name: p.new for p in plans}
        with self._pool.connection() as conn:
            stuck = [d for d in dead_letters.letters(conn) if d.consumer in names and d.status == "stopped"]
        for letter in stuck:
            outcome = dead_letters.retry(self._pool, self._mapper, letter.id, names.get)
            if not outcome.ok:
                raise RebuildStopped(letter.consumer, [letter])

    def _build(self, runner: LogRunner, plans: Sequence[_Plan]) -> None:
        """Step the new versions until they have reached the head of the log."""
        names = tuple(p.new.name for p in plans)
        first = min(self._positions(names).values())
        clock = _Rate(first)
        while True:
            head = self._recorder.max_notification_id() or 0
            positions = self._positions(names)
            low = min(positions.values())
            self._report(Progress(names, low, head, first, clock.rate(low), "building"))
            behind = [p.new for p in plans if positions[p.new.name] < head]
            if not behind:
                return
            runner.step_many(behind)
            self._check_stopped(names)
            if runner.retired & set(names):
                # Its position row is gone: `kami rebuild --abandon` ran meanwhile.
                raise RebuildError(f"{sorted(runner.retired & set(names))} abandoned during the rebuild")

    def _switch(self, runner: LogRunner, plan: _Plan) -> Report:
        """Bring the new version level with the live one, compare, promote, retire the old."""
        live, new = plan.live, plan.new
        for _ in range(SWITCH_ATTEMPTS):
            head = self._recorder.max_notification_id() or 0
            self._report(
                Progress(
                    (new.name,),
                    read_position_of(self._pool, new.name),
                    head,
                    0,
                    0.0,
                    f"switching {plan.cls.read_model}",
                )
            )
            with self._pool.connection() as conn, conn.transaction():
                switched = self._switch_in(conn, runner, plan)
            if switched is None:
                # A dead letter stopped the new version on its way to the live position
                # (its letter committed with that transaction).
                self._check_stopped((new.name,))
                continue
            live_at, new_at, tables, letters = switched
            if new_at != live_at:
                log.warning(
                    "%s: compared at different positions (live %s, new %s): the live version's"
                    " consumers lag or stopped; the differences include the events between",
                    live.read_model,
                    live_at,
                    new_at,
                )
            return Report(
                read_model=live.read_model,
                old_version=live.version,
                new_version=new.version,
                resumed_from=plan.resumed_from,
                compared_at=min(live_at, new_at),
                live_position=live_at,
                position=new_at,
                seconds=time.monotonic() - plan.started,
                tables=tables,
                dead_letters=letters,
            )
        raise RebuildError(f"{new.name} could not be brought level with {live.name}")

    def _switch_in(
        self, conn: psycopg.Connection[Any], runner: LogRunner, plan: _Plan
    ) -> tuple[int, int, list[TableDiff], list[dict[str, Any]]] | None:
        """The switch's transaction; None when the new version could not reach the live one."""
        live, new = plan.live, plan.new
        current = conn.execute(
            "SELECT live_version FROM rm_catalog WHERE read_model = %s FOR UPDATE", (live.read_model,)
        ).fetchone()
        if current is None or int(current[0]) != live.version:
            raise RebuildError(
                f"{live.read_model}: version {current and current[0]} was promoted meanwhile,"
                f" not {live.version}; run the rebuild again"
            )
        kafka = _lock_positions(conn, live, new)
        live_at = read_model_position(conn, live.name)
        new_at = read_position(conn, new.name)
        if new_at < live_at:
            new_at = _level(runner, conn, new, live_at)
            if new_at < live_at:
                return None
        elif new_at > live_at and not kafka and _tracked(conn, live.name):
            # The live version lags (no follower running, or a slow one): bring it level
            # under the same locks, so that the comparison shows only what the code changed.
            live_at = _level(runner, conn, live, new_at)
        if new_at < live_at:  # never switch reads to a version behind the live one
            raise RebuildError(f"{new.name} is at {new_at}, behind the live {live.name} at {live_at}")
        tables = diff_versions(conn, plan.cls, live.version, new.version)
        catalog.promote(conn, live.read_model, new.version)
        _retire(conn, live, f"rebuilt as version {new.version}")
        catalog.end_rebuild(conn, live.read_model)
        letters = [d.summary() for d in dead_letters.letters(conn, consumer=new.name)]
        return live_at, new_at, tables, letters

    def _drop(self, old: Projection[Any]) -> None:
        with self._pool.connection() as conn, conn.transaction():
            _drop_tables(conn, old)

    # -------------------------------------------------------------------- helpers

    def _positions(self, names: Sequence[str]) -> dict[str, int]:
        with self._pool.connection() as conn:
            return {name: read_position(conn, name) for name in names}

    def _check_stopped(self, names: Sequence[str]) -> None:
        with self._pool.connection() as conn:
            stuck = [d for d in dead_letters.letters(conn) if d.consumer in names and d.status == "stopped"]
        if stuck:
            raise RebuildStopped(stuck[0].consumer, stuck)

    def _report(self, progress: Progress) -> None:
        if self._progress is not None:
            self._progress(progress)


_LOCK_NAMESPACE = 0x6B616E  # "kan": one rebuild per read model at a time


class _Rate:
    """Events per second since the first sample."""

    def __init__(self, first: int) -> None:
        self._first = first
        self._t0 = time.monotonic()

    def rate(self, position: int) -> float:
        elapsed = time.monotonic() - self._t0
        return (position - self._first) / elapsed if elapsed > 0 else 0.0


def read_position_of(pool: ConnectionPool, name: str) -> int:
    with pool.connection() as conn:
        return read_position(conn, name)


def _tracked(conn: psycopg.Connection[Any], name: str) -> bool:
    return conn.execute("SELECT 1 FROM kami_tracking WHERE name = %s", (name,)).fetchone() is not None


def _has_kafka_rows(conn: psycopg.Connection[Any], name: str) -> bool:
    if not _table_exists(conn, "kami_kafka_offsets"):
        return False
    row = conn.execute("SELECT 1 FROM kami_kafka_offsets WHERE consumer = %s LIMIT 1", (name,)).fetchone()
    return row is not None


def _lock_positions(conn: psycopg.Connection[Any], live: Projection[Any], new: Projection[Any]) -> bool:
    """Hold both versions' position rows to the end of the switch; True when Kafka feeds the live one."""
    kafka = _has_kafka_rows(conn, live.name)
    if kafka:
        conn.execute(
            "SELECT 1 FROM kami_kafka_offsets WHERE consumer = %s ORDER BY topic, partition FOR UPDATE",
            (live.name,),
        )
    # Name order, as the runner locks them: no deadlock with a follower's step.
    conn.execute(
        "SELECT 1 FROM kami_tracking WHERE name = ANY(%s) ORDER BY name FOR UPDATE", ([live.name, new.name],)
    )
    return kafka


def _level(runner: LogRunner, conn: psycopg.Connection[Any], projection: Projection[Any], target: int) -> int:
    """Step a version to ``target`` inside the caller's transaction; returns where it got."""
    position = read_position(conn, projection.name)
    while position < target:
        after = runner.step_in(conn, [projection], until=target)
        moved = after.get(projection.name, position)
        if moved == position:
            break  # stopped on a dead letter
        position = moved
    return position


def _free_version(conn: psycopg.Connection[Any], cls: type[Projection[Any]], live: int) -> int:
    """The first version above the live one with neither tables nor positions."""
    version = live + 1
    while _version_exists(conn, cls(version)):
        version += 1
    return version


def _version_exists(conn: psycopg.Connection[Any], projection: Projection[Any]) -> bool:
    if _table_exists(conn, "kami_tracking") and _tracked(conn, projection.name):
        return True
    if _has_kafka_rows(conn, projection.name):
        return True
    return bool(_tables_like(conn, projection.prefix))


def _table_exists(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def _tables_like(conn: psycopg.Connection[Any], prefix: str) -> list[str]:
    """Tables of one version, the class's or not: ``rm_x_v2_`` never matches ``rm_x_v20_``."""
    pattern = (prefix + "_").replace("_", r"\_") + "%"
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE %s"
        " ORDER BY tablename",
        (pattern,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _retire(conn: psycopg.Connection[Any], old: Projection[Any], why: str) -> None:
    """Delete a version's positions: followers stop at once (a step finds no row to lock)."""
    if _table_exists(conn, "kami_tracking"):
        conn.execute("DELETE FROM kami_tracking WHERE name = %s", (old.name,))
    if _table_exists(conn, "kami_kafka_offsets"):
        conn.execute("DELETE FROM kami_kafka_offsets WHERE consumer = %s", (old.name,))
    dead_letters.retire(conn, old.name, f"{old.name} dropped: {why}")


def _drop_tables(conn: psycopg.Connection[Any], old: Projection[Any]) -> None:
    for table in sorted(set(old.table_names().values()) | set(_tables_like(conn, old.prefix))):
        conn.execute(f"DROP TABLE IF EXISTS {table}")


# ------------------------------------------------------------------------ the diff


def diff_versions(
    conn: psycopg.Connection[Any],
    cls: type[Projection[Any]],
    old_version: int,
    new_version: int,
    examples: int = EXAMPLES,
) -> list[TableDiff]:
    """How the new version's rows differ from the old one's, table by table, by key.

    The comparison runs in SQL (a full join on the key of ``jsonb`` rows), so it is
    quick enough to run while the switch holds the positions. Tables and columns the
    new code added or removed are reported as such; rows compare on common columns.
    """
    old, new = cls(old_version), cls(new_version)
    diffs = []
    for table in cls.tables:
        diffs.append(
            _diff_table(
                conn,
                table.short,
                old.table(table.short),
                new.table(table.short),
                list(table.key),
                table.column_names,
                examples,
            )
        )
    known = {t.short for t in cls.tables}
    for name in _tables_like(conn, old.prefix):
        short = name[len(old.prefix) + 1 :]
        if short not in known:
            rows = _count(conn, name)
            diffs.append(TableDiff(short, removed=rows, old_rows=rows, note="table no longer in the code"))
    return diffs


def _diff_table(
    conn: psycopg.Connection[Any],
    short: str,
    old: str,
    new: str,
    keys: list[str],
    columns: list[str],
    examples: int,
) -> TableDiff:
    diff = TableDiff(short, new_rows=_count(conn, new))
    old_columns = _columns_of(conn, old)
    if old_columns is None:
        diff.added = diff.new_rows
        diff.note = "table new in this version"
        return diff
    diff.old_rows = _count(conn, old)
    diff.columns_added = [c for c in columns if c not in old_columns]
    diff.columns_removed = [c for c in old_columns if c not in columns]
    if any(k not in old_columns for k in keys):
        diff.note = "the key changed: rows not compared one by one"
        return diff
    common = [c for c in columns if c in old_columns]
    key_select = ", ".join(f"{k} AS _k{i}" for i, k in enumerate(keys))
    values = f"jsonb_build_array({', '.join(common)})"
    joined = " AND ".join(f"o._k{i} = n._k{i}" for i in range(len(keys)))
    key_out = ", ".join(f"COALESCE(o._k{i}, n._k{i})" for i in range(len(keys)))
    query = (
        f"SELECT o._v IS NULL, n._v IS NULL, {key_out}, o._v, n._v"
        f" FROM (SELECT {key_select}, {values} AS _v FROM {old}) o"
        f" FULL JOIN (SELECT {key_select}, {values} AS _v FROM {new}) n ON {joined}"
        " WHERE o._v IS DISTINCT FROM n._v"
        f" ORDER BY {key_out}"
    )
    shown = {"added": 0, "removed": 0, "changed": 0}
    with conn.cursor(name=f"kami_diff_{short}", row_factory=tuple_row) as cur:
        cur.itersize = 2000
        cur.execute(query)
        for row in cur:
            is_added, is_removed = row[0], row[1]
            key = {k: _plain(v) for k, v in zip(keys, row[2 : 2 + len(keys)], strict=True)}
            before, after = row[2 + len(keys)], row[3 + len(keys)]
            kind = "added" if is_added else "removed" if is_removed else "changed"
            setattr(diff, kind, getattr(diff, kind) + 1)
            if shown[kind] >= examples:
                continue
            shown[kind] += 1
            example: dict[str, Any] = {"kind": kind, "key": key}
            if kind == "added":
                example["row"] = dict(zip(common, after, strict=True))
            elif kind == "removed":
                example["row"] = dict(zip(common, before, strict=True))
            else:
                example["changes"] = {
                    c: [b, a] for c, b, a in zip(common, before, after, strict=True) if b != a
                }
            diff.examples.append(example)
    return diff


def _columns_of(conn: psycopg.Connection[Any], table: str) -> list[str] | None:
    if not _table_exists(conn, table):
        return None
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum",
        (table,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _plain(value: Any) -> Any:
    """A key value as JSON shows it."""
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
