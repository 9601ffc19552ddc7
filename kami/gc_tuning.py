"""The cyclic garbage collector's settings for a long-running kami process.

Measured under the HTTP benchmark's load (16 clients, one API process, Python 3.11):
with Python's defaults (thresholds 700, 10, 10) a full collection ran about every
1.5 s and each stopped the whole process for 130 to 250 ms of CPU, walking the
aggregate cache, the card buckets and everything imported at start. Those pauses were
the p99 latency (over 200 ms) and about a tenth of the CPU. Yet kami's garbage is
almost all freed by reference counting, and the cycles it does make (exceptions with
their frames, asyncio's futures) die young: with the thresholds below they are found by
young collections, full passes become rare, and throughput rose by about half with the
p99 under 60 ms (README, "http").

- ``gc.freeze()`` once the process is set up: modules, classes, the FastAPI app and
  the pools live as long as the process, so no collection needs to walk them again.
- A young generation of 10,000 objects rather than 700: a request's cycles are garbage
  by the time it is collected instead of being promoted while still in use.
- Full collections after 50 x 100 young ones, so memory held by long-lived cycles is
  still returned, minutes apart instead of every second or two.
"""

from __future__ import annotations

import gc

YOUNG = 10_000
MIDDLE_EVERY = 50
FULL_EVERY = 100


def tune_for_serving() -> None:
    """Call once the process is set up, right before it starts serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE_EVERY, FULL_EVERY)
