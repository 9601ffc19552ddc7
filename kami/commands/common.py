"""What every subcommand needs: the database the settings point at, and the built system."""

from __future__ import annotations

from kami.bootstrap import Kami, build
from kami.embedded import database_url, embedded_server_url
from kami.settings import Settings

# The embedded server's database for kami itself (tests use their own, fresh ones).
EMBEDDED_DATABASE = "kami"


def resolve_database_url(settings: Settings) -> str:
    """The external URL as given, or the embedded server's ``kami`` database (started if needed)."""
    if settings.database_url is not None:
        return settings.database_url
    return database_url(embedded_server_url(settings.pgdata), EMBEDDED_DATABASE)


def open_kami(settings: Settings) -> Kami:
    return build(resolve_database_url(settings), settings=settings.shop_settings())
