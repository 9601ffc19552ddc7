"""The ``kami`` command: one small module per subcommand under ``kami.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kami.commands import COMMANDS
from kami.embedded import EmbeddedPostgresError
from kami.settings import SettingsError

# Exit codes: 2 is argparse's own for a bad command line; a bad environment is the same
# kind of mistake (the operator's, fixed before retrying), so it shares the code.
EXIT_CONFIG = 2
EXIT_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kami",
        description="kami: an event-sourced card-key shop backend (发卡网).",
        epilog="Configuration comes from KAMI_* environment variables; see README.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except SettingsError as error:
        # A configuration mistake is the operator's to fix: a sentence, not a traceback.
        print(f"kami: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except EmbeddedPostgresError as error:
        print(f"kami: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
