"""``kami serve``: the HTTP API, on the embedded PostgreSQL or on KAMI_DATABASE_URL."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any, NoReturn

from kami.settings import Settings, load_settings


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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Settings first: a configuration error must be reported before anything heavy runs.
    settings = load_settings()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)

    # Heavy imports here, not at module level, so that `kami --help` stays fast.
    import uvicorn

    from api.main import create_app
    from api.settings import ApiSettings
    from consumers.embedded import EmbeddedWorkers
    from kami.commands.common import open_kami
    from kami.demo import describe, seed_demo

    kami = open_kami(settings)
    workers: EmbeddedWorkers | None = None
    try:
        demo = seed_demo(kami.shop, settings.home / "demo.json") if args.demo else None
        app = create_app(
            kami,
            ApiSettings(
                admin_token=settings.admin_token,
                auditor_token=settings.auditor_token,
                payment_secret=settings.payment_secret,
                epay_key=settings.epay_key,
            ),
        )
        # Embedded, the log follower in this process keeps the read models and drives the
        # process managers (order expiry, commission settlement). With Kafka, `kami relay`
        # and `kami consume` do that, and this process only serves the API.
        if not settings.kafka_bootstrap:
            workers = EmbeddedWorkers(kami).start()
        base_url = f"http://{_display_host(args.host)}:{args.port}"
        print(_banner(settings, base_url), flush=True)
        if demo is not None:
            shown_secret = settings.payment_secret if settings.embedded else None
            print(describe(demo, base_url, shown_secret), flush=True)
        # uvicorn handles SIGINT/SIGTERM and returns, so the finally below (and the
        # embedded server's own exit hook) still run on Ctrl-C or `docker stop`.
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    finally:
        if workers is not None:
            workers.stop()
        kami.close()
    return 0


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


def _banner(settings: Settings, base_url: str) -> str:
    lines = [
        "",
        "kami is starting",
        f"  API      {base_url}",
        f"  docs     {base_url}/docs",
        f"  health   {base_url}/healthz",
    ]
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
