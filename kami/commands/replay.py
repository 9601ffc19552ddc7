"""``kami replay --until TIME|POSITION``: read models as they stood at that instant."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from kami.settings import load_settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "replay",
        help="print read models as they stood at an instant",
        description="Build read models from position zero up to a log position (or the last "
        "event at or before a time) in throwaway tables, print their rows, and drop them. The "
        "live read models are not touched.",
    )
    parser.add_argument(
        "--until",
        required=True,
        metavar="TIME|POSITION",
        help="a log position, or an ISO 8601 time (UTC when no zone): events' business times",
    )
    parser.add_argument(
        "--projection", action="append", metavar="NAME", help="a read model (repeatable; default: all)"
    )
    parser.add_argument("--format", choices=("json", "csv"), default="json", help="output format")
    parser.add_argument("--table", metavar="TABLE", help="only this table (e.g. merchants): plain CSV")
    parser.add_argument("--batch-size", type=int, default=1000, help="events per step (default 1000)")
    parser.set_defaults(handler=run)


def parse_until(text: str) -> int | datetime:
    """A position when it is a whole number, else a time."""
    if text.strip().isdigit():
        return int(text)
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    from projections.registry import PROJECTIONS, projection_class

    try:
        until = parse_until(args.until)
    except ValueError:
        print(f"kami replay: --until {args.until!r} is no position nor ISO 8601 time", file=sys.stderr)
        return 2
    known = [cls.read_model for cls in PROJECTIONS]
    unknown = [n for n in args.projection or [] if n not in known]
    if unknown:
        print(
            f"kami replay: unknown read model(s) {', '.join(unknown)}; known: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    classes = [projection_class(n) for n in dict.fromkeys(args.projection or known)]
    if args.table and not all(any(t.short == args.table for t in cls.tables) for cls in classes):
        print(
            f"kami replay: no table {args.table!r} in {', '.join(c.read_model for c in classes)}",
            file=sys.stderr,
        )
        return 2
    settings = load_settings()

    from consumers.replay import ReplayFailed, position_at, replay, table_csv
    from kami.commands.common import open_kami

    kami = open_kami(settings)
    try:
        if isinstance(until, int):
            position = until
        else:
            with kami.pool.connection() as conn:
                position = position_at(conn, kami.shop.recorder.events_table_name, kami.shop.mapper, until)
        position = min(position, kami.shop.position())
        names = ", ".join(c.read_model for c in classes)
        print(f"replaying {names} up to position {position}", file=sys.stderr)
        try:
            result = replay(
                kami.database_url, kami.shop.recorder, kami.shop.mapper, classes, position, args.batch_size
            )
        except ReplayFailed as error:
            print(f"kami replay: {error}", file=sys.stderr)
            return 1
    finally:
        kami.close()
    if args.table:
        tables = {name: {args.table: t[args.table]} for name, t in result.read_models.items()}
        result = type(result)(result.position, tables)
        if args.format == "csv" and len(tables) == 1:
            sys.stdout.write(table_csv(next(iter(tables.values()))[args.table]))
            return 0
    sys.stdout.write(result.as_json() + "\n" if args.format == "json" else result.as_csv())
    return 0
