"""Scale-out on a real broker: relay and consumers killed with SIGKILL at random points and
restarted, again and again, end in read models identical to an in-process run; a range
published twice changes nothing; two consumer processes share and take over partitions."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from consumers.positions import read_model_position
from consumers.runner import LogRunner
from kami.bootstrap import Kami
from projections.registry import PROJECTIONS
from tests.support.broker import kafka, unique_topic
from tests.support.workload import Workload

PARTITIONS = 4
READ_MODELS = [cls.read_model for cls in PROJECTIONS]
COMPARE_VERSION = 97  # the in-process run builds its tables beside the live code version


class Processes:
    """kami relay / kami consume as real processes, killable and restartable."""

    def __init__(self, url: str, bootstrap: str, home: Path) -> None:
        self.env = {
            **os.environ,
            "KAMI_DATABASE_URL": url,
            "KAMI_KAFKA_BOOTSTRAP": bootstrap,
            "KAMI_KAFKA_PARTITIONS": str(PARTITIONS),
            "KAMI_KAFKA_TOPIC": unique_topic("kami.crashes"),
            "KAMI_HOME": str(home),
            **{
                name: secrets.token_urlsafe(24)
                for name in ("KAMI_ADMIN_TOKEN", "KAMI_AUDITOR_TOKEN", "KAMI_PAYMENT_SECRET", "KAMI_EPAY_KEY")
            },
        }
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = home

    def start(self, name: str, *argv: str) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it
        self.running[name] = subprocess.Popen(
            [sys.executable, "-m", "kami.cli", *argv], env=self.env, stdout=log, stderr=log
        )

    def kill(self, name: str) -> None:
        process = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for name in list(self.running):
            process = self.running.pop(name)
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    def alive(self) -> None:
        for name, process in self.running.items():
            assert process.poll() is None, f"{name} exited: {(self.logs / f'{name}.log').read_text()[-3000:]}"

    def watch(self, seconds: float) -> None:
        """Wait a moment while watching the processes: returns early only if one died."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            next(iter(self.running.values())).wait(timeout=seconds)
        self.alive()


def _wait_until_caught_up(kami: Kami, processes: Processes, timeout: float = 90.0) -> None:
    head = kami.shop.position()
    deadline = time.monotonic() + timeout
    while True:
        processes.alive()
        with kami.pool.connection() as conn:
            positions = {cls.read_model: read_model_position(conn, cls().name) for cls in PROJECTIONS}
        if all(p >= head for p in positions.values()):
            return
        assert time.monotonic() < deadline, f"not caught up to {head}: {positions}"
        processes.watch(0.2)


def _rows_both_ways(kami: Kami) -> tuple[dict[str, object], dict[str, object]]:
    live = [cls() for cls in PROJECTIONS]
    fresh = [cls(COMPARE_VERSION) for cls in PROJECTIONS]
    LogRunner(kami.pool, kami.shop.recorder, kami.shop.mapper, fresh).catch_up()
    with kami.pool.connection() as conn:
        return (
            {p.read_model: p.rows(conn) for p in live},
            {p.read_model: p.rows(conn) for p in fresh},
        )


def test_killed_relays_and_consumers_end_in_the_same_read_models(system: Kami, tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("KAMI_TEST_SEED", "7")))
    work = Workload(system.shop, rng)
    work.setup()
    with kafka() as bootstrap:
        processes = Processes(system.database_url, bootstrap, tmp_path)
        try:
            processes.start("relay", "relay")
            processes.start("consume-a", "consume", *READ_MODELS)
            processes.start("consume-b", "consume", *READ_MODELS)
            for _ in range(5):
                for _ in range(rng.randint(20, 60)):
                    work.step()
                victim = rng.choice(["relay", "consume-a", "consume-b"])
                # Let it run for a random moment, then kill it mid-whatever it is doing.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    processes.running[victim].wait(timeout=rng.uniform(0.2, 2.0))
                processes.kill(victim)
                argv = ("relay",) if victim == "relay" else ("consume", *READ_MODELS)
                processes.start(victim, *argv)

            # One consumer process dies for good: the other takes over its partitions.
            processes.kill("consume-b")
            for _ in range(30):
                work.step()
            _wait_until_caught_up(system, processes)

            # A relay that publishes a range twice changes nothing.
            processes.kill("relay")
            with system.pool.connection() as conn:
                conn.execute("UPDATE kami_relay SET position = position / 2")
            processes.start("relay", "relay")
            work.step()
            _wait_until_caught_up(system, processes)
        finally:
            processes.stop_all()

    through_kafka, in_process = _rows_both_ways(system)
    for name in READ_MODELS:
        assert through_kafka[name] == in_process[name], f"{name} differs between Kafka and in-process"
