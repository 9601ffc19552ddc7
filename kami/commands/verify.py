"""``kami verify``: recompute the hash chain over the stored events and name any break."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kami.settings import load_settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "verify",
        help="prove the event log untampered",
        description="Recompute the hash chain over the stored events. Exit 0 when intact, 1 when "
        "an event no longer matches its link (its position is printed).",
    )
    parser.add_argument(
        "--export", action="store_true", help="print the head digest (POSITION:HEX) to keep outside kami"
    )
    parser.add_argument("--against", metavar="DIGEST", help="also check history against a kept digest")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()

    from consumers import chain
    from kami.commands.common import open_kami

    kept = chain.parse_digest(args.against) if args.against else None
    kami = open_kami(settings)
    try:
        table = kami.shop.recorder.events_table_name
        with kami.pool.connection() as conn:
            chain.ensure_schema(conn)
            conn.commit()
            # Link whatever the follower has not linked yet, so the verdict covers the whole log.
            chain.extend(conn, table)
            result = chain.verify(conn, table, against=kept)
    finally:
        kami.close()
    if args.export:
        if not result.ok or result.head is None:
            print(json.dumps({"ok": result.ok, "broken_at": result.broken_at}))
            return 1
        print(chain.export_digest(result.head_position, bytes.fromhex(result.head)))
        return 0
    print(
        json.dumps(
            {
                "ok": result.ok,
                "events_checked": result.events_checked,
                "head": result.head,
                "broken_at": result.broken_at,
            }
        )
    )
    return 0 if result.ok else 1
