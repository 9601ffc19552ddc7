"""``kami serve``: the HTTP API, on the embedded PostgreSQL or on KAMI_DATABASE_URL.

With ``--workers N`` (N > 1) this process becomes a small supervisor: it resolves the
database (starting the embedded PostgreSQL, whose lifetime stays tied to this process),
seeds the demo once, prints the banner, binds the listening socket and starts N worker
processes that share it. Each worker builds its own Kami (pool, Shop) and runs uvicorn;
the write side is safe across processes because every command is checked against
PostgreSQL when it commits (unique versions, and the versions of everything it read from
its process's aggregate cache), not trusted to one process's memory. The log follower
(read models, process managers, hash chain) runs in one more process of its own, which
while busy gathers commits for a moment after each wake-up (``kami.settings``): beside
the API processes it takes a core in short bursts and costs less per order than in an
API process, where its steps would hold that process's GIL. It takes the follower lock
(``consumers.embedded``), so replicas of this supervisor still have one following. A
worker or follower process that dies is replaced.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import signal
import socket
import threading
import time
from dataclasses import replace
from types import FrameType
from typing import Any, NoReturn

from kami.gc_tuning import tune_for_serving
from kami.settings import Settings, load_settings

log = logging.getLogger("kami.serve")

# A worker that keeps dying at start must not be respawned in a tight loop.
RESPAWN_BACKOFF_S = 1.0
STOP_GRACE_S = 20.0


def register(commands: Any) -> None:  # argparse's subparsers action has no public type
    parser = commands.add_parser(
        "serve",
        help="run the HTTP API",
        description="Run the HTTP API. Without KAMI_DATABASE_URL, on a private PostgreSQL "
        "under KAMI_HOME (default .kami/), with generated secrets kept there.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument(
        "--demo", action="store_true", help="seed a demo shop (once) and print its credentials"
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="API processes sharing the port (default 1); with more than one, the log follower"
        " runs in a process of its own",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log every request (off by default: it costs CPU on every request)",
    )
    parser.set_defaults(handler=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    # Settings first: a configuration error must be reported before anything heavy runs.
    settings = load_settings()
    if args.workers > 1:
        return _supervise(args, settings)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)

    # Heavy imports here, not at module level, so that `kami --help` stays fast.
    import uvicorn

    from kami.commands.common import open_kami
    from kami.demo import describe, seed_demo

    kami = open_kami(settings)
    try:
        demo = seed_demo(kami.shop, settings.home / "demo.json") if args.demo else None
        app, follower = _app(kami, settings, follow=True)
        tune_for_serving()
        try:
            base_url = f"http://{_display_host(args.host)}:{args.port}"
            print(_banner(settings, base_url, 1), flush=True)
            if demo is not None:
                shown_secret = settings.payment_secret if settings.embedded else None
                print(describe(demo, base_url, shown_secret), flush=True)
            # uvicorn handles SIGINT/SIGTERM and returns, so the finally below (and the
            # embedded server's own exit hook) still run on Ctrl-C or `docker stop`.
            uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=args.access_log)
        finally:
            if follower is not None:
                follower.stop()
    finally:
        kami.close()
    return 0


def _app(kami: Any, settings: Settings, *, follow: bool) -> tuple[Any, Any]:
    """The FastAPI app around ``kami``, and the log follower started beside it if
    ``follow`` (None with Kafka, where `kami relay` and `kami consume` keep the read
    models instead, and in the workers of ``--workers N``, which have a follower process)."""
    from api.main import create_app
    from api.settings import ApiSettings
    from consumers.embedded import EmbeddedWorkers

    app = create_app(
        kami,
        ApiSettings(
            admin_token=settings.admin_token,
            auditor_token=settings.auditor_token,
            payment_secret=settings.payment_secret,
            epay_key=settings.epay_key,
        ),
    )
    # Embedded, the log follower keeps the read models and drives the process managers
    # (order expiry, commission settlement). It takes the follower lock first, so that
    # however many processes serve, one follows.
    follower = None
    if follow and not settings.kafka_bootstrap:
        follower = EmbeddedWorkers(kami, gather_s=settings.follower_gather_s(own_process=False)).start()
    return app, follower


# ------------------------------------------------------------------- several workers


def _supervise(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from kami.commands.common import open_kami, resolve_database_url
    from kami.commands.lifecycle import stop_on_signals
    from kami.demo import describe, seed_demo

    stop = stop_on_signals()

    # Resolved here, once: the workers get the URL and never start (nor, on exit, stop)
    # the embedded server; this process is its user and stops it when it exits.
    database_url = resolve_database_url(settings)
    demo = None
    if args.demo:
        kami = open_kami(settings)
        try:
            demo = seed_demo(kami.shop, settings.home / "demo.json")
        finally:
            kami.close()
    config = uvicorn.Config("api.main:create_app", host=args.host, port=args.port, log_level="info")
    sock = config.bind_socket()
    base_url = f"http://{_display_host(args.host)}:{args.port}"
    print(_banner(settings, base_url, args.workers), flush=True)
    if demo is not None:
        shown_secret = settings.payment_secret if settings.embedded else None
        print(describe(demo, base_url, shown_secret), flush=True)

    # Spawned, not forked: a fork would copy this process's threads' locks and the
    # embedded server's handle, and every worker builds its own pool anyway.
    context = multiprocessing.get_context("spawn")

    def start(index: int) -> multiprocessing.process.BaseProcess:
        share = (index, args.workers)
        process = (
            context.Process(target=_follower_main, args=(settings, database_url), name="kami-follow")
            if index == args.workers
            else context.Process(
                target=_worker_main,
                args=(settings, database_url, sock, args.host, args.port, args.access_log, share),
                name=f"kami-serve-{index}",
            )
        )
        process.start()
        return process

    # The API workers, then the log follower (none with Kafka: `kami consume` follows).
    workers = [start(i) for i in range(args.workers + (0 if settings.kafka_bootstrap else 1))]
    try:
        while not stop.wait(0.5):
            for i, process in enumerate(workers):
                if process.is_alive():
                    continue
                log.warning("%s exited with %s; starting another", process.name, process.exitcode)
                process.join()
                if stop.wait(RESPAWN_BACKOFF_S):
                    break
                workers[i] = start(i)
    finally:
        for process in workers:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + STOP_GRACE_S
        for process in workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        sock.close()
    return 0


def _worker_main(
    settings: Settings,
    database_url: str,
    sock: socket.socket,
    host: str,
    port: int,
    access_log: bool,
    share: tuple[int, int],
) -> None:
    """One API process of ``--workers N``: its own Kami and app."""
    import uvicorn

    from kami.bootstrap import build

    # uvicorn handles SIGTERM (the supervisor's stop) and Ctrl-C (which reaches the whole
    # process group) gracefully, then re-raises the signal for the handler it found: this
    # one, so that the follower and the pool are closed on the way out.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    kami = build(database_url, settings=replace(settings.shop_settings(), bucket_share=share))
    try:
        app, _ = _app(kami, settings, follow=False)
        tune_for_serving()
        config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=access_log)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        kami.close()


def _follower_main(settings: Settings, database_url: str) -> None:
    """The log follower process of ``--workers N``: exits when stopped (SIGTERM, or
    Ctrl-C on the process group), and with an error when its follower stops on one, so
    that the supervisor starts another."""
    from consumers.embedded import EmbeddedWorkers
    from kami.bootstrap import build
    from kami.commands.lifecycle import stop_on_signals

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = stop_on_signals()
    kami = build(database_url, settings=settings.shop_settings())
    try:
        follower = EmbeddedWorkers(kami, gather_s=settings.follower_gather_s(own_process=True)).start()
        try:
            while not stop.wait(0.5):
                if not follower.running:
                    raise SystemExit(1)  # the follower logged why
        finally:
            follower.stop()
    finally:
        kami.close()


# --------------------------------------------------------------------------- shared


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    # uvicorn shuts down gracefully on SIGTERM and then raises the signal again for the
    # handler it found installed. With the default one the process would die right there,
    # skipping kami.close() and the exit hook that stops the embedded PostgreSQL.
    raise SystemExit(0)


def _display_host(host: str) -> str:
    # 0.0.0.0 and :: are where to listen, not where to connect.
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _banner(settings: Settings, base_url: str, workers: int) -> str:
    lines = [
        "",
        "kami is starting",
        f"  API      {base_url}",
        f"  docs     {base_url}/docs",
        f"  health   {base_url}/healthz",
    ]
    if workers > 1:
        lines.append(f"  workers  {workers} API processes, and one that follows the log")
    if settings.embedded:
        lines += [
            f"  database embedded PostgreSQL, data in {settings.pgdata}",
            "  secrets  (set the KAMI_* variable to override; generated ones are kept in "
            f"{settings.home / 'secrets.json'})",
        ]
        lines += [f"    {name}={value}" for name, value in settings.secret_values().items()]
    else:
        lines += ["  database KAMI_DATABASE_URL", "  secrets  from the environment"]
    lines.append("")
    return "\n".join(lines)
