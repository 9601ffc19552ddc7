"""Long-running subcommands stop cleanly on SIGTERM or Ctrl-C: one stop event for all threads."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType


def stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
    return stop


HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 30.0


def heartbeat(home: Path, name: str, stop: threading.Event, workers: list[threading.Thread]) -> None:
    """Touch ``home/name.alive`` while every worker thread lives: what health checks read."""
    path = home / f"{name}.alive"
    home.mkdir(parents=True, exist_ok=True)

    def beat() -> None:
        while not stop.is_set():
            if workers and not all(t.is_alive() for t in workers):
                return  # a dead worker must show as unhealthy, not be papered over
            path.touch()
            stop.wait(HEARTBEAT_SECONDS)

    threading.Thread(target=beat, name=f"kami-heartbeat-{name}", daemon=True).start()


def alive_main() -> int:
    """``kami-alive NAME``: exit 0 when that process touched its heartbeat lately."""
    from kami.settings import DEFAULT_HOME

    if len(sys.argv) != 2:
        print("usage: kami-alive relay|consume", file=sys.stderr)
        return 2
    home = Path(os.environ.get("KAMI_HOME") or DEFAULT_HOME).expanduser()
    path = home / f"{sys.argv[1]}.alive"
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 1
    return 0 if age < STALE_SECONDS else 1
