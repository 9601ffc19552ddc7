"""``kami dlq list|retry|skip``: the events projections could not process."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kami.settings import load_settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "dlq",
        help="dead letters: list, retry or skip events a projection could not process",
        description="Events a projection's handler failed on. A projection whose policy is "
        "'stop' waits right before its letter; 'skip' went on without it. Retry applies the "
        "event again with the code as it is now (after a fix) and resumes; skip records who "
        "decided the event is never applied, and why, and resumes past it.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list dead letters (open ones by default)")
    listing.add_argument("--all", action="store_true", help="also those retried, skipped or obsolete")
    listing.add_argument("--consumer", metavar="NAME", help="only this consumer (e.g. rm_dashboard_v1)")
    listing.add_argument("--json", action="store_true", help="JSON, with the tracebacks")
    listing.set_defaults(handler=run_list)
    retry = actions.add_parser("retry", help="apply letters' events again (all open ones without ID)")
    retry.add_argument("ids", nargs="*", type=int, metavar="ID")
    retry.set_defaults(handler=run_retry)
    skip = actions.add_parser("skip", help="never apply these letters' events; resume past them")
    skip.add_argument("ids", nargs="*", type=int, metavar="ID")
    skip.add_argument("--all", action="store_true", help="every open letter")
    skip.add_argument("--reason", required=True, help="why: kept on each letter as the audit trail")
    skip.add_argument("--by", help="who decides (default: KAMI_OPERATOR or the login name)")
    skip.set_defaults(handler=run_skip)


def run_list(args: argparse.Namespace) -> int:
    settings = load_settings()

    from consumers import dead_letters
    from kami.commands.common import open_kami

    kami = open_kami(settings)
    try:
        with kami.pool.connection() as conn:
            found = dead_letters.letters(conn, consumer=args.consumer, only_open=not args.all)
    finally:
        kami.close()
    if args.json:
        print(json.dumps([d.summary() for d in found], indent=1))
        return 0
    if not found:
        print("no dead letters" if args.all else "no open dead letters")
        return 0
    for d in found:
        print(
            f"#{d.id} {d.status:<8} {d.consumer} position {d.position} {d.topic}"
            f" ({d.attempts} attempt{'s' if d.attempts != 1 else ''}): {d.error}"
            + (f" [by {d.resolved_by}: {d.note}]" if d.resolved_by and d.note else "")
        )
    return 0


def run_retry(args: argparse.Namespace) -> int:
    settings = load_settings()

    from consumers import dead_letters
    from kami.commands.common import open_kami

    kami = open_kami(settings)
    try:
        if args.ids:
            outcomes = []
            for letter_id in args.ids:
                try:
                    outcomes.append(dead_letters.retry(kami.pool, kami.shop.mapper, letter_id))
                except dead_letters.DeadLetterError as error:
                    print(f"kami dlq: {error}", file=sys.stderr)
                    return 1
        else:
            outcomes = dead_letters.retry_all(kami.pool, kami.shop.mapper)
    finally:
        kami.close()
    for o in outcomes:
        verdict = "applied, resumed" if o.ok else f"failed again: {o.detail}"
        print(f"#{o.letter_id} {o.consumer} position {o.position}: {verdict}")
    if not outcomes:
        print("no open dead letters")
    return 0 if all(o.ok for o in outcomes) else 1


def run_skip(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        print("kami dlq skip: give letter IDs or --all", file=sys.stderr)
        return 2
    settings = load_settings()

    from consumers import dead_letters
    from kami.commands.common import open_kami

    kami = open_kami(settings)
    try:
        ids = args.ids
        if args.all:
            with kami.pool.connection() as conn:
                ids = [d.id for d in dead_letters.letters(conn)]
        for letter_id in ids:
            try:
                o = dead_letters.skip(kami.pool, letter_id, args.reason, args.by)
            except dead_letters.DeadLetterError as error:
                print(f"kami dlq: {error}", file=sys.stderr)
                return 1
            print(f"#{o.letter_id} {o.consumer} position {o.position}: skipped, resumed past it")
    finally:
        kami.close()
    return 0
