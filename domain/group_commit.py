"""Group commit: the events of concurrent commands go to the store in one transaction.

The event store serialises writers with a table lock, so each command paying for its
own transaction (lock, insert, commit, fsync) caps throughput. Commands still load and
decide in their own threads; only the write is handed to one committer thread, which
takes everything queued and inserts it at once. A command whose events would collide
with another in the same batch, or with one already committed, is sent back to retry
before the batch is written, so one stale command never fails a whole batch.

A connection that dies during the COMMIT leaves the outcome unknown. The recorder
(``ShopRecorder.insert_batch``, retried like eventsourcing's inserts) runs the write
again on a fresh connection; if the lost COMMIT had happened, that retry finds the
batch's own events: the read check refuses the commands that read what they wrote, and
one that read nothing collides (IntegrityError). Neither must be read as another
writer's conflict: the commands would run again and do their work twice (a second
withdrawal, a second order). So then, and when the recorder gives up on the connection,
the committer asks the store whether these very events are in it. If they are, the batch
is written; if the store cannot be asked, the error reaches the commands (a 503; the
client's retry is made safe by idempotency).

Each command also hands over its read set: the version of every aggregate it loaded
(``domain.aggregate_cache``). A command is stale if a command before it in the batch, or
one this process committed, changed what it read; and, once the store's table lock is
held, if the store says so (another process wrote it). Stale commands are sent back.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)

from domain.aggregate_cache import StaleRead

MAX_BATCH = 256
VERSION_MEMORY = 200_000
# The recorder's errors once its own retries on a lost connection are spent.
LOST = (OperationalError, InterfaceError)


@dataclass
class _Write:
    stored: Sequence[StoredEvent]
    # Version of each aggregate the command loaded, to be current when it commits.
    reads: Mapping[UUID, int]
    future: Future[list[int]] = field(default_factory=Future)
    # What the store said had changed under the command, when it refused it.
    stale: frozenset[UUID] = frozenset()

    @cached_property
    def new_versions(self) -> dict[UUID, int]:
        """The version each aggregate is at once these events are in."""
        written: dict[UUID, int] = {}
        for event in self.stored:
            oid = event.originator_id
            assert isinstance(oid, UUID)
            written[oid] = max(written.get(oid, 0), event.originator_version)
        return written


class GroupCommitter:
    def __init__(self, recorder: ApplicationRecorder) -> None:
        self._recorder = recorder
        self._queue: queue.Queue[_Write | None] = queue.Queue()
        # Last committed version per aggregate, to spot stale commands before writing.
        self._versions: OrderedDict[UUID, int] = OrderedDict()
        self._thread = threading.Thread(target=self._run, name="kami-group-commit", daemon=True)
        self._closed = False
        self._thread.start()

    def write(self, stored: Sequence[StoredEvent], reads: Mapping[UUID, int] | None = None) -> list[int]:
        """Block until these events are committed; return their notification ids.

        ``reads``: the versions the command's decision rests on. If any is no longer
        current, nothing is written and StaleRead names them.
        """
        if self._closed:
            raise RuntimeError("the committer is closed")
        item = _Write(stored, reads or {})
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

    def _stale(self, item: _Write, pending: Mapping[UUID, int]) -> list[UUID]:
        """What this process already knows makes the command stale: a write at a version
        someone took, or a read of an aggregate since changed."""
        stale = []
        for event in item.stored:
            oid = event.originator_id
            assert isinstance(oid, UUID)
            if event.originator_version <= max(pending.get(oid, 0), self._versions.get(oid, 0)):
                stale.append(oid)
        for oid, seen in item.reads.items():
            if max(pending.get(oid, 0), self._versions.get(oid, 0)) > seen:
                stale.append(oid)
        return stale

    def _commit(self, batch: list[_Write]) -> None:
        accepted: list[_Write] = []
        refused: list[tuple[_Write, list[UUID]]] = []
        pending: dict[UUID, int] = {}
        for item in batch:
            stale = self._stale(item, pending)
            if stale:
                refused.append((item, stale))
                continue
            accepted.append(item)
            for oid, version in item.new_versions.items():
                pending[oid] = max(pending.get(oid, 0), version)
        try:
            self._write(accepted)
        finally:
            # Told only now, once the commands they lost to are in the store: a command
            # told at once would catch up from the store before those events are there,
            # and lose again (on one hot card bucket, up to giving up as busy).
            for item, stale in refused:
                item.future.set_exception(StaleRead(stale))

    def _write(self, accepted: list[_Write]) -> None:
        if not accepted:
            return
        try:
            answered = self._insert_surviving(accepted)
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
        self._settle(accepted, answered)

    def _commit_alone(self, item: _Write) -> None:
        try:
            answered = self._insert_surviving([item])
        except IntegrityError:
            # Another process took one of these versions: the command's writes are stale.
            item.future.set_exception(StaleRead(item.new_versions))
        except BaseException as error:
            item.future.set_exception(error)
        else:
            self._settle([item], answered)

    def _settle(self, accepted: list[_Write], answered: dict[int, list[int]]) -> None:
        """Answer every command: its ids if written, StaleRead if the store refused it."""
        for item in accepted:
            if id(item) not in answered and self._own_lost_commit(item):
                answered[id(item)] = [self._recorder.max_notification_id() or 0] * len(item.stored)
        versions: dict[UUID, int] = {}
        for item in accepted:
            if id(item) in answered:
                item.future.set_result(answered[id(item)])
                for oid, version in item.new_versions.items():
                    versions[oid] = max(versions.get(oid, 0), version)
            else:
                item.future.set_exception(StaleRead(item.stale))
        self._remember(versions)

    def _own_lost_commit(self, item: _Write) -> bool:
        """Whether the store refused this command only because its own events are there.

        After a COMMIT whose answer was lost, the recorder's retry finds the versions the
        command read already moved on: by the command's own events, if they committed.
        """
        if not item.stale or not item.stale <= item.new_versions.keys():
            return False
        try:
            return self._stored_already(item.stored)
        except LOST:
            return False  # nobody can tell; the command reruns and its idempotency holds

    def _insert_surviving(self, accepted: list[_Write]) -> dict[int, list[int]]:
        """Insert the commands whose reads are current in one transaction; when the
        outcome is in doubt, ask the store. Returns the ids of each written command (by
        ``id(item)``); a command the store refused has its ``stale`` set."""
        try:
            written = self._recorder.insert_batch([(item.stored, item.reads) for item in accepted])
        except (IntegrityError, *LOST) as error:
            try:
                stored = [item for item in accepted if self._stored_already(item.stored)]
            except LOST:
                raise error from None  # nobody can tell: the caller hears of the first error
            if not stored:
                raise
            # The transaction committed, its answer lost: the commands whose events are
            # not in it were refused for stale reads, which ones exactly is lost too. The
            # exact ids are lost with the answer; a position past them is a safe one to
            # wait for.
            head = self._recorder.max_notification_id() or 0
            found = {id(item) for item in stored}
            for item in accepted:
                if id(item) not in found:
                    item.stale = frozenset(item.reads)
            return {id(item): [head] * len(item.stored) for item in stored}
        answered: dict[int, list[int]] = {}
        for n, item in enumerate(accepted):
            item.stale = written.stale.get(n, frozenset())
            if not item.stale:
                answered[id(item)] = [
                    written.ids[(e.originator_id, e.originator_version)]  # type: ignore[index]
                    for e in item.stored
                ]
        return answered

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

    def _remember(self, versions: dict[UUID, int]) -> None:
        for oid, version in versions.items():
            self._versions[oid] = max(version, self._versions.get(oid, 0))
            self._versions.move_to_end(oid)
        while len(self._versions) > VERSION_MEMORY:
            self._versions.popitem(last=False)
