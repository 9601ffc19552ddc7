"""The hash chain names the exact position of a tampered event; shredding breaks nothing."""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import sys
from uuid import uuid4

import pytest

from consumers import chain
from kami.bootstrap import Kami
from tests.e2e.api_client import in_process, random_cards
from tests.support.workload import Workload, traffic


def _verify(kami: Kami, against: tuple[int, bytes] | None = None) -> chain.Verification:
    table = kami.shop.recorder.events_table_name
    with kami.pool.connection() as conn:
        chain.ensure_schema(conn)
        conn.commit()
        chain.extend(conn, table)
        return chain.verify(conn, table, against=against)


def _cli(kami: Kami, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAMI_DATABASE_URL": kami.database_url,
        **{
            name: secrets.token_urlsafe(24)
            for name in ("KAMI_ADMIN_TOKEN", "KAMI_AUDITOR_TOKEN", "KAMI_PAYMENT_SECRET", "KAMI_EPAY_KEY")
        },
    }
    return subprocess.run(
        [sys.executable, "-m", "kami.cli", *argv], env=env, capture_output=True, text=True, timeout=120
    )


def test_tampering_with_one_stored_event_is_detected_at_exactly_its_position(system: Kami) -> None:
    traffic(system.shop, 3, 40, merchants=1, products=2)
    intact = _verify(system)
    assert intact.ok and intact.events_checked == system.shop.position()
    victim = random.Random(5).randint(1, system.shop.position())

    with system.pool.connection() as conn:
        # One byte more in one event's stored state: still valid JSON, still loadable.
        conn.execute(
            f"UPDATE {system.shop.recorder.events_table_name}"
            " SET state = state || '\\x20'::bytea WHERE notification_id = %s",
            (victim,),
        )

    broken = _verify(system)
    assert not broken.ok
    assert broken.broken_at == victim
    assert broken.events_checked == victim - 1


# Each rewrite of one stored event, as someone with write access to the table could do.
REWRITES = {
    "its topic": "SET topic = topic || 'x'",
    "its aggregate": "SET originator_id = gen_random_uuid()",
    "its version": "SET originator_version = originator_version + 1000000",
    "the event itself": None,  # deleted
}


@pytest.mark.parametrize("what", sorted(REWRITES))
def test_any_rewrite_of_a_linked_event_is_found_at_its_position(system: Kami, what: str) -> None:
    traffic(system.shop, 6, 20, merchants=1, products=2)
    assert _verify(system).ok
    victim = random.Random(7).randint(1, system.shop.position() - 1)
    table = system.shop.recorder.events_table_name
    rewrite = REWRITES[what]

    with system.pool.connection() as conn:
        if rewrite is None:
            conn.execute(f"DELETE FROM {table} WHERE notification_id = %s", (victim,))
        else:
            conn.execute(f"UPDATE {table} {rewrite} WHERE notification_id = %s", (victim,))

    broken = _verify(system)
    assert not broken.ok
    assert broken.broken_at == victim
    assert broken.events_checked == victim - 1


def test_deleting_the_newest_events_is_found_where_the_links_outlive_them(system: Kami) -> None:
    work = Workload(system.shop, random.Random(8))
    work.setup(merchants=1, products=1)
    head = system.shop.position()
    assert _verify(system).ok
    table = system.shop.recorder.events_table_name

    with system.pool.connection() as conn:
        conn.execute(f"DELETE FROM {table} WHERE notification_id > %s", (head - 2,))

    broken = _verify(system)
    assert not broken.ok
    assert broken.broken_at == head - 1
    assert broken.events_checked == head - 2


def test_an_exported_digest_catches_a_rewritten_chain(system: Kami) -> None:
    work = Workload(system.shop, random.Random(4))
    work.setup(merchants=1, products=1)
    exported = _cli(system, "verify", "--export")
    assert exported.returncode == 0, exported.stderr
    kept = exported.stdout.strip()
    assert _cli(system, "verify", "--against", kept).returncode == 0

    # Rewrite an event AND recompute every link, as an attacker with database access could.
    table = system.shop.recorder.events_table_name
    with system.pool.connection() as conn:
        conn.execute(f"UPDATE {table} SET state = state || '\\x20'::bytea WHERE notification_id = 2")
        conn.execute("DELETE FROM kami_chain")
    assert _verify(system).ok  # the chain alone is fooled...
    checked = _cli(system, "verify", "--against", kept)
    assert checked.returncode == 1  # ...the digest kept outside is not
    assert '"ok": false' in checked.stdout


def test_after_a_shred_no_path_reveals_the_cards_and_verify_still_passes(system: Kami) -> None:
    shop = system.shop
    cards = random_cards(3)
    with in_process(system) as api:
        merchant_id, merchant = api.merchant()
        product_id = api.product(merchant, cards)
        order = api.order(product_id)
        api.pay(order)
        revealed_before = api.read_order(order)["cards"]
        assert len(revealed_before) == 1 and revealed_before[0] in cards

        shredded = _cli(system, "merchant", "shred", merchant_id)
        assert shredded.returncode == 0, shredded.stderr

        after = api.http.get(f"/v1/orders/{order['order_id']}", params={"token": order["token"]})
        assert after.status_code == 200
        assert not any(card in after.text for card in cards)
        refused = api.http.post(
            "/v1/orders", json={"product_id": product_id, "quantity": 1, "contact": "b@example.com"}
        )
        assert refused.status_code == 409
        reimport = api.http.post(
            f"/v1/products/{product_id}/cards", json={"cards": [uuid4().hex]}, headers=merchant
        )
        assert reimport.status_code == 409
    assert shop.keyring.get(shop.get_merchant(merchant_id).id) is None
    assert _verify(system).ok


def test_a_chain_extended_a_few_events_at_a_time_verifies_as_a_whole(
    system: Kami, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the follower extends it: after every step, and in reads of BATCH events.
    monkeypatch.setattr(chain, "BATCH", 3)
    table = system.shop.recorder.events_table_name
    work = Workload(system.shop, random.Random(11))
    work.setup(merchants=1, products=1)
    with system.pool.connection() as conn:
        chain.ensure_schema(conn)
        conn.commit()
        linked = chain.extend(conn, table)
        for _ in range(6):
            work.step()
            linked += chain.extend(conn, table)
        assert chain.extend(conn, table) == 0
        result = chain.verify(conn, table)
        linked_to = chain.head(conn)[0]
    assert linked > 6
    assert result.ok and result.broken_at is None
    assert linked_to == result.head_position == system.shop.position()
