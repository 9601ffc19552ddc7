"""``kami status``: position, lag and dead letters of every read model and consumer."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kami.settings import load_settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "status",
        help="show how far each read model and consumer has got",
        description="Per read model (live and rebuilding versions), process manager, relay and "
        "hash chain: position, head of the log, lag in events and in seconds (business time), "
        "open dead letters, and for Kafka consumers each partition's offsets and watermark.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()

    from consumers.status import collect
    from kami.commands.common import open_kami

    kami = open_kami(settings)
    try:
        with kami.pool.connection() as conn:
            status = collect(conn, kami.shop.recorder.events_table_name, kami.shop.mapper)
    finally:
        kami.close()
    if args.json:
        print(json.dumps(status.as_dict(), indent=1))
        return 0
    head_time = status.head_time.isoformat() if status.head_time else "-"
    print(f"head of the log: position {status.head} ({head_time})")
    print(f"{'consumer':<32} {'state':<11} {'via':<5} {'position':>10} {'lag':>8} {'lag s':>10} {'dlq':>4}")
    for c in status.consumers:
        state = c.state or c.kind
        print(
            f"{c.name:<32} {state:<11} {c.transport:<5} {c.position:>10} {c.lag_events:>8}"
            f" {c.lag_seconds:>10.1f} {c.dead_letters:>4}"
        )
        for p in c.partitions:
            print(
                f"    {p.topic}[{p.partition}] next offset {p.next_offset}, applied id {p.applied_id},"
                f" watermark {p.watermark}"
            )
    return 0
