"""Verification of the hash chain (issue 5: at least 50,000 events/s), against reading the
log eventsourcing's way.

The log is the run's shop log (``bench.shoplog``: 200,000 events of real shop traffic
through ``Shop``). The chain follower first links the whole log (``chain.extend``, timed
and reported, not compared). Then each repeat verifies the whole chain from the genesis:

- kami: ``consumers.chain.verify``: the stored events and the kept links streamed by two
  server-side cursors, 10,000 rows a fetch, recomputed and compared.
- baseline: the same recomputation (``chain.link``) and the same comparison, reading the
  events the way eventsourcing offers to followers of an application's log: its
  ``LocalNotificationLog``, section after section of the default 10 notifications, each
  section's kept links read with it.

Both must find the chain intact and check every event. The systems alternate (kami first
on even repeats) and the figures are medians.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from eventsourcing.application import LocalNotificationLog

from bench import shoplog
from consumers import chain

SECTIONS = ("verify",)
GOAL_EVENTS_PER_S = 50_000
SECTION_SIZE = LocalNotificationLog.DEFAULT_SECTION_SIZE


@dataclass(frozen=True)
class Config:
    repeats: int = 3

    @classmethod
    def from_env(cls) -> Config:
        return cls(repeats=int(os.environ.get("KAMI_BENCH_VERIFY_REPEATS", cls.repeats)))


@dataclass(frozen=True)
class Run:
    system: str
    repeat: int
    events: int
    seconds: float
    events_per_s: float


def verify_kami(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        result = chain.verify(conn, table)
    if not result.ok:
        raise RuntimeError(f"kami's verify found a break at {result.broken_at}")
    return result.events_checked


def verify_baseline(database_url: str, log: LocalNotificationLog) -> int:
    """The chain recomputed from eventsourcing's notification log, a section at a time."""
    previous = chain.GENESIS
    checked = 0
    section_id: str | None = f"1,{SECTION_SIZE}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        while section_id is not None:
            section = log[section_id]
            if not section.items:
                break
            first, last = section.items[0].id, section.items[-1].id
            kept = conn.execute(
                "SELECT position, digest FROM kami_chain WHERE position BETWEEN %s AND %s ORDER BY position",
                (first, last),
            ).fetchall()
            if len(kept) != len(section.items):
                raise RuntimeError(f"the baseline found a break in {section.id}")
            for n, (position, digest) in zip(section.items, kept, strict=True):
                previous = chain.link(previous, n.id, n.originator_id, n.originator_version, n.topic, n.state)
                if position != n.id or bytes(digest) != previous:
                    raise RuntimeError(f"the baseline found a break at {n.id}")
                checked += 1
            section_id = section.next_id
    return checked


def run(database_url: str, config: Config | None = None) -> dict[str, dict[str, Any]]:
    config = config or Config.from_env()
    kami, log = shoplog.prepare(database_url)
    try:
        table = kami.shop.recorder.events_table_name
        with psycopg.connect(database_url) as conn:
            chain.ensure_schema(conn)
            conn.commit()
            began = time.perf_counter()
            linked = chain.extend(conn, table)
            extend_s = time.perf_counter() - began
        notification_log = LocalNotificationLog(kami.shop.recorder, section_size=SECTION_SIZE)
        systems = {
            "kami": lambda: verify_kami(database_url, table),
            "baseline": lambda: verify_baseline(database_url, notification_log),
        }
        runs: list[Run] = []
        for repeat in range(config.repeats):
            for name in ("kami", "baseline") if repeat % 2 == 0 else ("baseline", "kami"):
                began = time.perf_counter()
                checked = systems[name]()
                seconds = time.perf_counter() - began
                if checked != log.events:
                    raise RuntimeError(f"{name} checked {checked} of {log.events} events")
                runs.append(Run(name, repeat, checked, round(seconds, 3), round(checked / seconds, 1)))
                print(
                    f"bench verify: {name:8} repeat {repeat}: {checked / seconds:10.0f} events/s"
                    f" ({checked} in {seconds:.2f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        kami.close()
    kami_rate = statistics.median(r.events_per_s for r in runs if r.system == "kami")
    baseline_rate = statistics.median(r.events_per_s for r in runs if r.system == "baseline")
    return {
        "verify": {
            "events_per_s": round(kami_rate, 1),
            "baseline_events_per_s": round(baseline_rate, 1),
            "events": log.events,
            "ratio": round(kami_rate / baseline_rate, 2),
            "goal_events_per_s": GOAL_EVENTS_PER_S,
            "repeats": config.repeats,
            "kami_runs_events_per_s": [r.events_per_s for r in runs if r.system == "kami"],
            "baseline_runs_events_per_s": [r.events_per_s for r in runs if r.system == "baseline"],
            "extend_events_per_s": round(linked / extend_s, 1),
            "kami": "consumers.chain.verify: events and links streamed by server-side cursors",
            "baseline": "the same hash over eventsourcing's LocalNotificationLog,"
            f" sections of {SECTION_SIZE}",
            **log.describe(),
            "runs": [asdict(r) for r in runs],
        }
    }


def table(sections: dict[str, dict[str, Any]]) -> str:
    s = sections["verify"]
    verdict = "meets" if s["events_per_s"] >= s["goal_events_per_s"] else "BELOW"
    return "\n".join(
        [
            f"verify: hash chain recomputed over {s['events']} events, {s['repeats']} repeats",
            f"  {'system':10} {'median ev/s':>12}   runs ev/s",
            f"  {'kami':10} {s['events_per_s']:12.0f}   "
            + " ".join(f"{v:.0f}" for v in s["kami_runs_events_per_s"]),
            f"  {'baseline':10} {s['baseline_events_per_s']:12.0f}   "
            + " ".join(f"{v:.0f}" for v in s["baseline_runs_events_per_s"]),
            f"  ratio {s['ratio']:.2f}x; {verdict} the goal of {s['goal_events_per_s']:,} events/s"
            f" (chain.extend: {s['extend_events_per_s']:.0f} events/s)",
        ]
    )
