"""Rebuilding every read model from position zero (issue 3: at least 15x the baseline).

kami, per repeat: a ``consumers.runner.LogRunner`` over all projections at a fresh version
(new tables, tracking from 0) runs ``catch_up()`` over the run's shop log (``bench.shoplog``:
200,000 events of real shop traffic): one read of the log per step for every projection,
each event decoded once, each projection's batch flushed in a few set-based statements,
positions committed with the rows. Creating the tables is not timed.

baseline, per repeat: ``bench.readside.run_baseline``: eventsourcing's ``ProjectionRunner``,
one per projection, over the first ``subset`` events of the same log. For a like-for-like
look, kami's ``catch_up`` is also timed on that subset (``kami_subset_events_per_s``).

The rate is log events per second. The systems alternate (kami first on even repeats);
the figures are medians.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench import readside, shoplog
from consumers.runner import LogRunner
from kami.bootstrap import Kami, build
from projections.registry import PROJECTIONS, build_all

SECTIONS = ("rebuild",)
GOAL_RATIO = 15.0


@dataclass(frozen=True)
class Config:
    repeats: int = 3

    @classmethod
    def from_env(cls) -> Config:
        return cls(repeats=int(os.environ.get("KAMI_BENCH_REBUILD_REPEATS", cls.repeats)))


@dataclass(frozen=True)
class Run:
    system: str
    repeat: int
    events: int
    seconds: float
    events_per_s: float


def rebuild(kami: Kami, version: int) -> tuple[int, float]:
    """Every projection at ``version`` from zero: (events in the log, seconds of catch_up)."""
    runner = LogRunner(kami.pool, kami.shop.recorder, kami.shop.mapper, build_all(readside.versions(version)))
    head = kami.shop.position()
    began = time.perf_counter()
    runner.catch_up()
    seconds = time.perf_counter() - began
    behind = {c.name: p for c in runner.consumers if (p := runner.position(c.name)) < head}
    if behind:
        raise RuntimeError(f"catch_up left read models behind the head {head}: {behind}")
    return head, seconds


def run(database_url: str, config: Config | None = None) -> dict[str, dict[str, Any]]:
    config = config or Config.from_env()
    subset = readside.baseline_subset()
    kami, log = shoplog.prepare(database_url)
    runs: list[Run] = []
    try:
        with readside.baseline_database(database_url, subset) as baseline_url:
            small = build(baseline_url)
            try:
                for repeat in range(config.repeats):
                    order = ("kami", "baseline") if repeat % 2 == 0 else ("baseline", "kami")
                    for name in order:
                        if name == "kami":
                            events, seconds = rebuild(kami, 10 + repeat)
                            runs.append(_run("kami", repeat, events, seconds))
                            events, seconds = rebuild(small, 10 + repeat)
                            runs.append(_run("kami_subset", repeat, events, seconds))
                        else:
                            events, seconds = readside.run_baseline(baseline_url, 100 + repeat)
                            runs.append(_run("baseline", repeat, events, seconds))
            finally:
                small.close()
    finally:
        kami.close()

    def median(system: str) -> float:
        return round(statistics.median(r.events_per_s for r in runs if r.system == system), 1)

    def each(system: str) -> list[float]:
        return [r.events_per_s for r in runs if r.system == system]

    kami_rate, baseline_rate = median("kami"), median("baseline")
    return {
        "rebuild": {
            "kami_events_per_s": kami_rate,
            "baseline_events_per_s": baseline_rate,
            "events": log.events,
            "ratio": round(kami_rate / baseline_rate, 2),
            "goal_ratio": GOAL_RATIO,
            "baseline_events": subset,
            "kami_subset_events_per_s": median("kami_subset"),
            "subset_ratio": round(median("kami_subset") / baseline_rate, 2),
            "repeats": config.repeats,
            "read_models": len(PROJECTIONS),
            "kami_runs_events_per_s": each("kami"),
            "kami_subset_runs_events_per_s": each("kami_subset"),
            "baseline_runs_events_per_s": each("baseline"),
            "kami": "LogRunner.catch_up over every projection at a fresh version, from position 0",
            "baseline": "one eventsourcing ProjectionRunner per read model, all at once,"
            f" over the first {subset} events of the same log",
            **log.describe(),
            "runs": [asdict(r) for r in runs],
        }
    }


def _run(system: str, repeat: int, events: int, seconds: float) -> Run:
    run = Run(system, repeat, events, round(seconds, 3), round(events / seconds, 1))
    print(
        f"bench rebuild: {system:11} repeat {repeat}: {run.events_per_s:9.0f} events/s"
        f" ({events} in {seconds:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
    return run


def table(sections: dict[str, dict[str, Any]]) -> str:
    s = sections["rebuild"]
    verdict = "meets" if s["ratio"] >= s["goal_ratio"] else "BELOW"
    rows = [
        f"rebuild: {s['read_models']} read models from position 0, {s['events']} events"
        f" (baseline: first {s['baseline_events']}), {s['repeats']} repeats",
        f"  {'system':22} {'median ev/s':>12}   runs ev/s",
    ]
    for label, key in (
        ("kami", "kami"),
        (f"kami, first {s['baseline_events']}", "kami_subset"),
        ("baseline", "baseline"),
    ):
        runs = " ".join(f"{v:.0f}" for v in s[f"{key}_runs_events_per_s"])
        rows.append(f"  {label:22} {s[f'{key}_events_per_s']:12.0f}   {runs}")
    rows.append(
        f"  ratio {s['ratio']:.2f}x ({verdict} the goal of {s['goal_ratio']:g}x);"
        f" on the same {s['baseline_events']} events {s['subset_ratio']:.2f}x"
    )
    return "\n".join(rows)
