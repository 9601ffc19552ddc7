"""``kami relay``: publish the event log to Kafka (one active relay; others stand by)."""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any

from kami.settings import SettingsError, load_settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "relay",
        help="publish the event log to Kafka",
        description="Publish the event log to KAMI_KAFKA_TOPIC on KAMI_KAFKA_BOOTSTRAP, keyed by "
        "aggregate, and keep the hash chain. A second relay waits as a hot standby.",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not settings.kafka_bootstrap:
        raise SettingsError("kami relay needs KAMI_KAFKA_BOOTSTRAP", ("KAMI_KAFKA_BOOTSTRAP",))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from consumers import chain
    from consumers.relay import Relay, run_relay_until_stopped
    from kami.commands.common import open_kami, resolve_database_url
    from kami.commands.lifecycle import heartbeat, stop_on_signals

    stop = stop_on_signals()
    kami = open_kami(settings)
    try:
        relay = Relay(
            resolve_database_url(settings),
            kami.shop.recorder,
            settings.kafka_bootstrap,
            settings.kafka_topic,
            settings.kafka_partitions,
        )
        table = kami.shop.recorder.events_table_name
        with kami.pool.connection() as conn:
            chain.ensure_schema(conn)

        def keep_chain() -> None:
            # The hash chain follows the log here, beside the relay, in scale-out mode.
            while not stop.is_set():
                with kami.pool.connection() as conn:
                    chain.extend(conn, table)
                stop.wait(1.0)

        chain_thread = threading.Thread(target=keep_chain, name="kami-chain", daemon=True)
        chain_thread.start()
        heartbeat(settings.home, "relay", stop, [chain_thread])
        run_relay_until_stopped(relay, stop)
        chain_thread.join(timeout=5)
    finally:
        kami.close()
    return 0
