"""Subcommands of ``kami``.

Each module in ``COMMANDS`` has ``register(subparsers)``, which adds its parser and sets
``handler`` to a function of the parsed arguments returning the exit code. Adding a
subcommand (relay, consume, rebuild, replay, verify, dlq, status, tiers, merchant
shred) is one new module and one line here. Modules import heavy dependencies inside
their handler, so ``kami --help`` stays fast.
"""

COMMANDS: tuple[str, ...] = (
    "kami.commands.serve",
    "kami.commands.relay",
    "kami.commands.consume",
    "kami.commands.verify",
    "kami.commands.merchant",
    "kami.commands.tiers",
    "kami.commands.rebuild",
    "kami.commands.replay",
    "kami.commands.dlq",
    "kami.commands.status",
)
