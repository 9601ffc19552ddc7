"""``kami consume [NAME...]``: Kafka consumer groups for the read models and process managers.

The read models of one process share one consumer group (``KafkaGroup``): each record is
fetched and decoded once for all of them. Each process manager is a group of its own, as
it ticks whenever its consumer is idle.
"""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any

from kami.settings import SettingsError, load_settings

DEADLINES = "deadlines"
TIERING = "tiering"
LEVELS = "promoter_levels"
MANAGERS = (DEADLINES, TIERING, LEVELS)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "consume",
        help="feed read models and process managers from Kafka",
        description="Run one Kafka consumer group for the read models named (and one per "
        "process manager). Any number of these processes running the same names share the "
        "partitions.",
    )
    parser.add_argument(
        "names", nargs="*", help=f"read models to run (default: all, and {', '.join(MANAGERS)})"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not settings.kafka_bootstrap:
        raise SettingsError("kami consume needs KAMI_KAFKA_BOOTSTRAP", ("KAMI_KAFKA_BOOTSTRAP",))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from consumers.deadlines import DeadlineManager
    from consumers.kafka_consumer import KafkaGroup, KafkaProjector
    from consumers.promoter_levels import PromoterLevelManager
    from consumers.tiering import TieringManager, policy_from_env
    from kami.commands.common import open_kami
    from kami.commands.lifecycle import heartbeat, stop_on_signals
    from projections.registry import build_live

    stop = stop_on_signals()
    kami = open_kami(settings)
    try:
        with kami.pool.connection() as conn:
            projections = {p.read_model: p for p in build_live(conn)}
        wanted = args.names or [*projections, *MANAGERS]
        unknown = [n for n in wanted if n not in projections and n not in MANAGERS]
        if unknown:
            print(f"kami: unknown read model(s): {', '.join(unknown)}; known: "
                  f"{', '.join([*projections, *MANAGERS])}")
            return 2
        managers = {
            DEADLINES: lambda: DeadlineManager(kami.shop, kami.pool),
            TIERING: lambda: TieringManager(kami.shop, kami.pool, policy_from_env()),
            LEVELS: lambda: PromoterLevelManager(kami.shop, kami.pool),
        }
        projectors: list[KafkaGroup] = []
        read_models = [projections[name] for name in wanted if name in projections]
        if read_models:
            # follow_live: after a `kami rebuild` switch, move to the promoted version.
            projectors.append(KafkaGroup(
                kami.pool, kami.shop.mapper, read_models, settings.kafka_bootstrap,
                settings.kafka_topic, follow_live=True,
            ))
        for name in wanted:
            if name in managers:
                # A process manager ticks with the injected clock whenever its consumer is idle.
                manager = managers[name]()
                projectors.append(KafkaProjector(
                    kami.pool, kami.shop.mapper, manager, settings.kafka_bootstrap,
                    settings.kafka_topic, on_idle=manager.tick,
                ))
        threads = [
            threading.Thread(target=_run, args=(p, stop), name=f"kami-consume-{p.name}")
            for p in projectors
        ]
        for thread in threads:
            thread.start()
        heartbeat(settings.home, "consume", stop, threads)
        for thread in threads:
            thread.join()
    finally:
        kami.close()
    return 1 if any(p.failed for p in projectors) else 0


def _run(projector: Any, stop: threading.Event) -> None:
    import psycopg
    from kafka.errors import KafkaError

    log = logging.getLogger("kami.consume")
    backoff = 1.0
    while not stop.is_set():
        try:
            projector.run(stop)
            return
        except (KafkaError, psycopg.OperationalError) as error:
            # The broker or the database is away for now: nothing was committed that is
            # not already in PostgreSQL, so wait and join again, as the relay does.
            log.warning("consumer %s: %s; retrying in %.0f s", projector.name, error, backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)
        except BaseException:
            # Anything else stops the process: a supervisor restarts it, and it resumes from
            # the offsets it committed. Carrying on would let that view go stale unnoticed.
            log.exception("consumer %s failed", projector.name)
            projector.failed = True
            stop.set()
            return
