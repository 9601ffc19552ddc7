"""Ledger balances for auditors (``GET /v1/audit/ledger[?as_of=]``), now and as of any
instant.

Every entry of every ``Posting.Recorded`` is stored with its log position and the
event's business timestamp, so a balance as of an instant is a sum over the entries up
to it: by time (``as_of``: entries whose posting's timestamp is at or before it) or by
log position (``until``). Postings balance, so every such total is 0, whatever subset
of whole postings is summed. The current balances are also kept per account, so "now"
does not scan the history.

Each posting is one aggregate and its own whole fact, and balances are sums, so the
rows are the same in any order of the postings (``projections.base``); ``until`` is by
log position whatever order they arrived in.

Accounts are named by domain.ledger (``platform:clearing``, ``merchant:<id>``, ...);
the sign convention is the ledger's: positive is cash the platform holds, negative what
it owes or earned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from domain.posting import Posting
from projections.base import Batch, Projection, Table, counter, fact, handles, key, snapshot, value

ENTRIES = Table(
    "entries",
    (
        key("position", "bigint"),
        key("account", "text"),
        fact("amount", "bigint"),
        fact("at", "timestamptz"),
        fact("kind", "text"),
        fact("ref", "text"),
        value("order_id", "uuid"),
    ),
    ("position", "account"),
    indexes=(("at",), ("account", "position")),
)
BALANCES = Table(
    "balances",
    (key("account", "text"), counter("balance"), counter("entries")),
    ("account",),
)


class LedgerProjection(Projection[Batch]):
    read_model = "ledger"
    tables = (ENTRIES, BALANCES)

    def begin(self, conn: psycopg.Connection[Any], events: Sequence[tuple[int, Any]]) -> Batch:
        # Nothing to read: entries are facts and balances are sums.
        return Batch(self)

    @handles(Posting.Recorded)
    def posting_recorded(self, b: Batch, position: int, e: Posting.Recorded) -> None:
        for account, amount in e.entries.items():
            b["entries"].put(
                (position, account),
                amount=amount,
                at=e.timestamp,
                kind=e.kind,
                ref=e.ref,
                order_id=e.order_id,
            )
            b["balances"].add((account,), balance=amount, entries=1)


@dataclass(frozen=True)
class LedgerBalances:
    accounts: dict[str, int]
    total: int
    as_of: datetime | None
    until: int | None


def ledger_balances(
    conn: psycopg.Connection[Any],
    *,
    as_of: datetime | None = None,
    until: int | None = None,
    version: int | None = None,
) -> LedgerBalances:
    """Balances per account: now, or as of a business time and/or up to a log position.

    An account appears once it has had an entry (in the period asked for), even if its
    balance has come back to 0.
    """
    with snapshot(conn):
        p = LedgerProjection.live(conn, version)
        if as_of is None and until is None:
            rows = conn.execute(f"SELECT account, balance FROM {p.table('balances')}").fetchall()
        else:
            rows = conn.execute(
                f"SELECT account, sum(amount)::bigint FROM {p.table('entries')}"
                " WHERE (%s::timestamptz IS NULL OR at <= %s::timestamptz)"
                " AND (%s::bigint IS NULL OR position <= %s::bigint)"
                " GROUP BY account",
                (as_of, as_of, until, until),
            ).fetchall()
    accounts = {account: int(balance) for account, balance in sorted(rows)}
    return LedgerBalances(accounts, sum(accounts.values()), as_of, until)


@dataclass(frozen=True)
class Entry:
    position: int
    at: datetime
    kind: str
    ref: str
    order_id: UUID | None
    amount: int


def account_entries(
    conn: psycopg.Connection[Any],
    account: str,
    *,
    limit: int = 100,
    before: int | None = None,
    version: int | None = None,
) -> list[Entry]:
    """An account's entries, newest first, a page at a time (``before`` a position)."""
    p = LedgerProjection.live(conn, version)
    return [
        Entry(*row)
        for row in conn.execute(
            f"SELECT position, at, kind, ref, order_id, amount FROM {p.table('entries')}"
            " WHERE account = %s AND (%s::bigint IS NULL OR position < %s::bigint)"
            " ORDER BY position DESC LIMIT %s",
            (account, before, before, limit),
        )
    ]
