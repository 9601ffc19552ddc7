"""A serving process stops walking what it set up, and collects the young less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from kami import gc_tuning


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_what_exists_at_start_is_frozen_and_the_thresholds_are_raised(restored_gc: None) -> None:
    set_up = object.__new__(type("SetUp", (), {}))  # a tracked object made before serving
    assert gc.is_tracked(set_up)

    gc_tuning.tune_for_serving()

    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (gc_tuning.YOUNG, gc_tuning.MIDDLE_EVERY, gc_tuning.FULL_EVERY)
    assert gc_tuning.YOUNG > 700  # Python's default, whose full passes were the p99
    # A full collection no longer walks what was frozen: it is not among the tracked
    # objects the collector looks at.
    assert not any(o is set_up for o in gc.get_objects())
