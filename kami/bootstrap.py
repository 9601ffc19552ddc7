"""The composition root: builds the Shop and its adapters from a database URL."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from domain.clock import Clock, system_clock
from domain.shop import Shop, ShopSettings
from kami.keystore import PostgresKeyring


def eventsourcing_env(database_url: str) -> dict[str, str]:
    """Translate a libpq URL into eventsourcing's POSTGRES_* settings."""
    info = conninfo_to_dict(database_url)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(info.get("dbname", "postgres")),
        "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
        "POSTGRES_PORT": str(info.get("port", "5432")),
        "POSTGRES_USER": str(info.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(info.get("password", "")),
        # Readers of the log skip events under concurrent writers with these on.
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        "CREATE_TABLE": "y",
    }
    return env


@dataclass
class Kami:
    shop: Shop
    pool: ConnectionPool
    database_url: str

    def close(self) -> None:
        self.shop.close()
        self.pool.close()


def build(
    database_url: str,
    *,
    clock: Clock = system_clock,
    settings: ShopSettings | None = None,
    pool_size: int = 8,
) -> Kami:
    pool = ConnectionPool(database_url, min_size=1, max_size=pool_size, open=True)
    keyring = PostgresKeyring(pool)
    shop = Shop(eventsourcing_env(database_url), keyring=keyring, clock=clock, settings=settings)
    return Kami(shop=shop, pool=pool, database_url=database_url)
