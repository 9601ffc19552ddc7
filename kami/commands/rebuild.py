"""``kami rebuild NAME...|--all``: rebuild read models beside the live ones, then switch."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from kami.settings import load_settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "rebuild",
        help="rebuild read models without downtime",
        description="Build a new version of each read model from position zero beside the live "
        "one, which keeps serving and following the log; once the new version has caught up, "
        "switch reads to it atomically, drop the old one, and report how the rows differ. An "
        "interrupted rebuild leaves the live version untouched: run it again to resume.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="read models to rebuild")
    parser.add_argument("--all", action="store_true", help="rebuild every read model")
    parser.add_argument("--batch-size", type=int, default=1000, help="events per step (default 1000)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument(
        "--abandon", action="store_true", help="drop the half-built version of NAME instead of resuming it"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from projections.registry import PROJECTIONS

    known = [cls.read_model for cls in PROJECTIONS]
    names = known if args.all else list(dict.fromkeys(args.names))
    unknown = [n for n in names if n not in known]
    if not names or unknown or (args.all and args.names):
        print(
            f"kami rebuild: name read models or give --all (known: {', '.join(known)})"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
            file=sys.stderr,
        )
        return 2
    if args.batch_size < 1:
        print("kami rebuild: --batch-size must be at least 1", file=sys.stderr)
        return 2
    settings = load_settings()

    from consumers.rebuild import Rebuilder, RebuildError
    from kami.commands.common import open_kami

    kami = open_kami(settings)
    bar = ProgressBar(sys.stderr)
    rebuilder = Rebuilder(
        kami.pool, kami.shop.recorder, kami.shop.mapper, batch_size=args.batch_size, progress=bar
    )
    try:
        if args.abandon:
            for name in names:
                version = rebuilder.abandon(name)
                what = f"dropped half-built version {version}" if version else "no rebuild under way"
                print(f"{name}: {what}")
            return 0
        try:
            reports = rebuilder.rebuild(names)
        except RebuildError as error:
            bar.done()
            print(f"kami rebuild: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            bar.done()
            print(
                "kami rebuild: interrupted; the live versions are untouched. Run it again to resume.",
                file=sys.stderr,
            )
            return 130
        bar.done()
    finally:
        kami.close()
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=1))
    else:
        for report in reports:
            print(describe(report.as_dict()))
    return 0


def describe(report: dict[str, Any]) -> str:
    """A report for a person: per table, what the new version changed, with examples."""
    lines = [
        f"{report['read_model']}: version {report['old_version']} -> {report['new_version']}"
        f" at position {report['position']} in {report['seconds']:.1f} s"
        + (f" (resumed from position {report['resumed_from']})" if report["resumed_from"] else "")
    ]
    if report["compared_at"] != report["position"]:
        lines.append(
            f"  compared at position {report['compared_at']}: the live version was behind the new one"
        )
    for table in report["tables"]:
        if not (
            table["added"]
            or table["removed"]
            or table["changed"]
            or table["columns_added"]
            or table["columns_removed"]
        ):
            lines.append(f"  {table['table']}: same ({table['new_rows']} rows)")
            continue
        parts = [f"{table[k]} {k}" for k in ("added", "removed", "changed") if table[k]]
        for kind in ("columns_added", "columns_removed"):
            if table[kind]:
                parts.append(f"{kind.replace('_', ' ')}: {', '.join(table[kind])}")
        lines.append(
            f"  {table['table']}: {', '.join(parts)} ({table['old_rows']} -> {table['new_rows']} rows)"
            + (f"; {table['note']}" if table["note"] else "")
        )
        for example in table["examples"]:
            detail = example.get("changes") or example.get("row")
            key = json.dumps(example["key"])
            lines.append(f"    {example['kind']} {key}: {json.dumps(detail, default=str)}")
    if report["dead_letters"]:
        count = len(report["dead_letters"])
        lines.append(f"  {count} open dead letter(s) in the new version: see `kami dlq list`")
    if not report["changed"]:
        lines.append("  no differences: the new version equals the old one row for row")
    return "\n".join(lines)


class ProgressBar:
    """Position/head, percentage and events per second on stderr: redrawn in place on a
    terminal (at most 10 times a second), a line every few seconds otherwise."""

    WIDTH = 30

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._last = 0.0
        self._drawn = False

    def __call__(self, progress: Any) -> None:
        now = time.monotonic()
        if now - self._last < (0.1 if self._tty else 3.0) and progress.position < progress.head:
            return
        self._last = now
        total = max(progress.head, 1)
        share = min(progress.position / total, 1.0)
        filled = int(share * self.WIDTH)
        text = (
            f"{progress.phase} {', '.join(progress.names)} [{'#' * filled}{'.' * (self.WIDTH - filled)}]"
            f" {share:6.1%} {progress.position:,}/{progress.head:,}"
            + (f" {progress.events_per_s:,.0f} events/s" if progress.events_per_s else "")
        )
        if self._tty:
            self._out.write("\r\x1b[2K" + text)
            self._drawn = True
        else:
            self._out.write(text + "\n")
        self._out.flush()

    def done(self) -> None:
        if self._drawn:
            self._out.write("\n")
            self._out.flush()
            self._drawn = False
