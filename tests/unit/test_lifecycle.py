"""Health checks of the long-running processes read a heartbeat file."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from kami.commands import lifecycle


def test_a_process_with_live_workers_is_alive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    lifecycle.heartbeat(tmp_path, "relay", stop, [worker])
    monkeypatch.setenv("KAMI_HOME", str(tmp_path))
    monkeypatch.setattr("sys.argv", ["kami-alive", "relay"])
    try:
        assert (tmp_path / "relay.alive").exists() or _wait_for(tmp_path / "relay.alive")
        assert lifecycle.alive_main() == 0
    finally:
        stop.set()
        worker.join()


def test_a_stale_or_missing_heartbeat_is_unhealthy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAMI_HOME", str(tmp_path))
    monkeypatch.setattr("sys.argv", ["kami-alive", "consume"])
    assert lifecycle.alive_main() == 1
    beat = tmp_path / "consume.alive"
    beat.touch()
    old = beat.stat().st_mtime - lifecycle.STALE_SECONDS - 1
    os.utime(beat, (old, old))
    assert lifecycle.alive_main() == 1


def test_a_dead_worker_stops_the_heartbeat(tmp_path: Path) -> None:
    stop = threading.Event()
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    lifecycle.heartbeat(tmp_path, "consume", stop, [dead])
    stop.wait(0.1)
    stop.set()
    assert not (tmp_path / "consume.alive").exists()


def _wait_for(path: Path) -> bool:
    done = threading.Event()
    for _ in range(100):
        if path.exists():
            return True
        done.wait(0.01)
    return path.exists()
