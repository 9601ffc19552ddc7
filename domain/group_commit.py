"""Group commit: the events of concurrent commands go to the store in one transaction.

The event store serialises writers with a table lock, so each command paying for its
own transaction (lock, insert, commit, fsync) caps throughput. Commands still load and
decide in their own threads; only the write is handed to one committer thread, which
takes everything queued and inserts it at once. A command whose events would collide
with another in the same batch, or with one already committed, is sent back to retry
before the batch is written, so one stale command never fails a whole batch.

A connection that dies during the COMMIT leaves the outcome unknown. eventsourcing's
recorder retries the insert on a fresh connection; if the lost COMMIT had happened,
that retry collides with the batch's own events and raises IntegrityError, which must
not be read as another writer's conflict: the commands would run again and do their
work twice (a second withdrawal, a second order). So on IntegrityError, and when the
recorder gives up on the connection, the committer asks the store whether these very
events are in it. If they are, the batch is written; if the store cannot be asked, the
error reaches the commands (a 503; the client's retry is made safe by idempotency).
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)

from domain.exceptions import ConcurrencyConflict

MAX_BATCH = 256
VERSION_MEMORY = 200_000
# The recorder's errors once its own retries on a lost connection are spent.
LOST = (OperationalError, InterfaceError)


@dataclass
class _Write:
    stored: Sequence[StoredEvent]
    future: Future[list[int]] = field(default_factory=Future)


class GroupCommitter:
    def __init__(self, recorder: ApplicationRecorder) -> None:
        self._recorder = recorder
        self._queue: queue.Queue[_Write | None] = queue.Queue()
        # Last committed version per aggregate, to spot stale commands before writing.
        self._versions: OrderedDict[UUID, int] = OrderedDict()
        self._thread = threading.Thread(target=self._run, name="kami-group-commit", daemon=True)
        self._closed = False
        self._thread.start()

    def write(self, stored: Sequence[StoredEvent]) -> list[int]:
        """Block until these events are committed; return their notification ids."""
        if self._closed:
            raise RuntimeError("the committer is closed")
        item = _Write(stored)
        self._queue.put(item)
        return item.future.result()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            self._commit(batch)

    def _is_stale(self, stored: Sequence[StoredEvent], pending: dict[UUID, int]) -> bool:
        for event in stored:
            oid = event.originator_id
            assert isinstance(oid, UUID)
            known = max(pending.get(oid, 0), self._versions.get(oid, 0))
            if event.originator_version <= known:
                return True
        return False

    def _commit(self, batch: list[_Write]) -> None:
        accepted: list[_Write] = []
        pending: dict[UUID, int] = {}
        for item in batch:
            if self._is_stale(item.stored, pending):
                item.future.set_exception(ConcurrencyConflict())
                continue
            accepted.append(item)
            for event in item.stored:
                oid = event.originator_id
                assert isinstance(oid, UUID)
                pending[oid] = max(pending.get(oid, 0), event.originator_version)
        if not accepted:
            return
        try:
            ids = self._insert_surviving([e for item in accepted for e in item.stored])
        except IntegrityError:
            # Someone outside this process wrote first. Fall back to one transaction per
            # command so that only the commands that really collided retry.
            for item in accepted:
                self._commit_alone(item)
            return
        except BaseException as error:  # the store is down: every waiter must hear of it
            for item in accepted:
                item.future.set_exception(error)
            return
        offset = 0
        for item in accepted:
            n = len(item.stored)
            item.future.set_result(ids[offset : offset + n])
            offset += n
        self._remember(pending)

    def _commit_alone(self, item: _Write) -> None:
        try:
            ids = self._insert_surviving(list(item.stored))
        except IntegrityError:
            item.future.set_exception(ConcurrencyConflict())
        except BaseException as error:
            item.future.set_exception(error)
        else:
            item.future.set_result(ids)
            versions: dict[UUID, int] = {}
            for event in item.stored:
                assert isinstance(event.originator_id, UUID)
                versions[event.originator_id] = event.originator_version
            self._remember(versions)

    def _insert_surviving(self, stored: list[StoredEvent]) -> list[int]:
        """Insert in one transaction; when its outcome is in doubt, ask the store."""
        try:
            return self._insert(stored)
        except (IntegrityError, *LOST) as error:
            try:
                written = self._stored_already(stored)
            except LOST:
                raise error from None  # nobody can tell: the caller hears of the first error
            if not written:
                raise
        # The events are in the log at or below its head; their exact ids are lost with the
        # answer, and a position past them is a safe one to wait for.
        head = self._recorder.max_notification_id() or 0
        return [head] * len(stored)

    def _stored_already(self, stored: Sequence[StoredEvent]) -> bool:
        """Whether every one of these events is in the store, byte for byte."""
        for event in stored:
            found = self._recorder.select_events(
                event.originator_id,
                gt=event.originator_version - 1,
                lte=event.originator_version,
                limit=1,
            )
            # Another writer's event at this version: a real conflict, not our own COMMIT.
            if not found or found[0].topic != event.topic or found[0].state != event.state:
                return False
        return True

    def _insert(self, stored: list[StoredEvent]) -> list[int]:
        ids = self._recorder.insert_events(stored)
        assert ids is not None and len(ids) == len(stored)
        return list(ids)

    def _remember(self, versions: dict[UUID, int]) -> None:
        for oid, version in versions.items():
            self._versions[oid] = max(version, self._versions.get(oid, 0))
            self._versions.move_to_end(oid)
        while len(self._versions) > VERSION_MEMORY:
            self._versions.popitem(last=False)
