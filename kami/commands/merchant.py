"""``kami merchant shred ID``: delete a merchant's card key (crypto-shredding)."""

from __future__ import annotations

import argparse
from typing import Any
from uuid import UUID

from kami.settings import load_settings


def register(commands: Any) -> None:
    parser = commands.add_parser("merchant", help="merchant operations")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    shred = actions.add_parser(
        "shred",
        help="delete a merchant's card key",
        description="Delete the merchant's card-encryption key: its cards become unreadable "
        "everywhere, while every replay and the hash chain keep working. Irreversible.",
    )
    shred.add_argument("merchant_id", type=UUID)
    shred.add_argument("--reason", default="erasure requested", help="recorded with the event")
    shred.set_defaults(handler=run_shred)


def run_shred(args: argparse.Namespace) -> int:
    settings = load_settings()

    from domain.exceptions import NotFound
    from kami.commands.common import open_kami

    kami = open_kami(settings)
    try:
        try:
            kami.shop.shred_card_key(args.merchant_id, args.reason)
        except NotFound:
            print(f"kami: no merchant {args.merchant_id}")
            return 1
    finally:
        kami.close()
    print(f"shredded the card key of merchant {args.merchant_id}")
    return 0
