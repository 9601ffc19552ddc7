"""How fast the machine is while a benchmark runs.

The benchmark machines are shared virtual machines. The same code on the same machine
carried anything from 111 to 535 orders/s on one day (2026-12-03), and the server's CPU
seconds per order swung nearly as much (2.2 to 8 ms): a CPU second bought less work at
some hours than at others. Two readings let a reader tell the machine's state from kami's:

- ``reference_ms``: the CPU time of a fixed piece of pure Python (arithmetic, no I/O) on
  one thread. It grows when the host is crowded even if nothing is stolen outright,
  since the CPU seconds themselves are slower then.
- ``Steal``: the share of the machine's time the hypervisor gave to other guests
  (``steal`` in ``/proc/stat``); those moments are missing from everyone's CPU time.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

REFERENCE_ITERATIONS = 300_000
REFERENCE_REPEATS = 5
PROC_STAT = Path("/proc/stat")
STEAL_FIELD = 7  # after user, nice, system, idle, iowait, irq, softirq


def _reference_once() -> float:
    started = time.thread_time()
    total = 0
    for i in range(REFERENCE_ITERATIONS):
        total += i * i % 7
    return time.thread_time() - started


def reference_ms() -> float:
    """Median CPU milliseconds of the fixed loop over a few repeats: lower is faster."""
    return round(statistics.median(_reference_once() for _ in range(REFERENCE_REPEATS)) * 1000, 2)


def _cpu_ticks(stat: Path) -> list[int]:
    """The machine-wide CPU time counters, or none where the kernel does not show them."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return []
    return [int(field) for field in first[1:]]


class Steal:
    """The share of the machine's time stolen by the hypervisor between start and stop."""

    def __init__(self, stat: Path = PROC_STAT) -> None:
        self._stat = stat
        self._before: list[int] = []

    def start(self) -> None:
        self._before = _cpu_ticks(self._stat)

    def stop(self) -> float | None:
        """Percent of all CPU time stolen in the window; None where it cannot be read."""
        after = _cpu_ticks(self._stat)
        if len(after) <= STEAL_FIELD or len(self._before) != len(after):
            return None
        spent = [b - a for a, b in zip(self._before, after, strict=True)]
        total = sum(spent)
        return round(100 * spent[STEAL_FIELD] / total, 1) if total else None
