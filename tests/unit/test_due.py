"""A process manager's tick skips its query only while nothing it knows of can be due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consumers.due import DueCache

NOON = datetime(2026, 1, 1, 12, tzinfo=UTC)


class Ticks:
    """A monotonic clock that moves when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_unknown_until_a_tick_learns_the_earliest_deadline() -> None:
    due = DueCache(monotonic=Ticks())
    assert not due.nothing_due(NOON)
    due.learned(NOON + timedelta(minutes=15))
    assert due.nothing_due(NOON + timedelta(minutes=14))
    assert not due.nothing_due(NOON + timedelta(minutes=15))


def test_a_deadline_written_since_lowers_what_is_known() -> None:
    due = DueCache(monotonic=Ticks())
    due.learned(None)  # nothing scheduled at all
    assert due.nothing_due(NOON + timedelta(days=400))
    due.scheduled(NOON + timedelta(minutes=5))
    assert due.nothing_due(NOON)
    assert not due.nothing_due(NOON + timedelta(minutes=5))
    due.scheduled(NOON + timedelta(minutes=10))  # later than known: changes nothing
    assert not due.nothing_due(NOON + timedelta(minutes=5))


def test_what_is_known_is_asked_again_after_the_recheck_interval() -> None:
    ticks = Ticks()
    due = DueCache(recheck_s=1.0, monotonic=ticks)
    due.learned(None)
    ticks.now += 0.9
    assert due.nothing_due(NOON)
    ticks.now += 0.1  # another process may have written a deadline meanwhile
    assert not due.nothing_due(NOON)


def test_forget_and_an_unknown_earliest_are_never_lowered_into_a_guess() -> None:
    due = DueCache(monotonic=Ticks())
    due.scheduled(NOON)  # unknown stays unknown: others may be earlier
    assert not due.nothing_due(NOON - timedelta(hours=1))
    due.learned(NOON)
    due.forget()
    assert not due.nothing_due(NOON - timedelta(hours=1))
