"""Typed settings from the environment, validated once at start-up.

Two modes:

- external: ``KAMI_DATABASE_URL`` names a PostgreSQL server. Every secret must then
  come from the environment; a missing one is a start-up error, because inventing a
  secret for a shared deployment would silently lock out the other processes.
- embedded: no ``KAMI_DATABASE_URL``. kami starts a private PostgreSQL under
  ``KAMI_HOME`` (default ``.kami``) and generates the missing secrets once, keeping
  them in ``KAMI_HOME/secrets.json`` (mode 0600) so a restart keeps the same tokens.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict

from domain.shop import ShopSettings

# The secrets, by the environment variable that carries each one.
SECRET_VARS: tuple[str, ...] = (
    "KAMI_ADMIN_TOKEN",
    "KAMI_AUDITOR_TOKEN",
    "KAMI_PAYMENT_SECRET",
    "KAMI_EPAY_KEY",
)
# Same floor as api.settings.ApiSettings: checked here too so that a short secret is a clear
# start-up error naming the variable, not a traceback from deep inside the app factory.
MIN_SECRET_LENGTH = 16
SECRETS_FILE = "secrets.json"
DEFAULT_HOME = ".kami"


class SettingsError(Exception):
    """The environment does not describe a runnable kami; the message says what to fix."""

    def __init__(self, message: str, variables: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.variables = variables


DEFAULT_KAFKA_TOPIC = "kami.events"
DEFAULT_KAFKA_PARTITIONS = 8
# How long the log follower lets commits gather after a notification wakes it, so that
# one step carries many of them. A step costs a fixed part (its reads, statements and
# commit: about 12 ms of CPU on the development VM) beside its part per event, so the
# fewer and larger the steps, the less per order; but every view read with ``?after=``
# may wait that much longer, so a follower gathers only while busy
# (``consumers.runner.GATHER_AFTER``). Where the follower runs sets the default
# (``KAMI_FOLLOWER_GATHER_MS`` overrides both):
# - in the API process (``kami serve``): none. A large step there holds the process's GIL
#   in long stretches, and the API's requests wait: gathering 100 to 1,000 ms carried
#   fewer orders under the HTTP benchmark (docs/load-notes.md).
# - in a process of its own (``kami serve --workers N``): 200 ms. There it takes a core
#   in short bursts beside the API processes, and carried 1 to 38% more orders than the
#   follower in an API process in 7 alternated pairs, at less CPU per order in 6 of
#   them (docs/load-notes.md).
FOLLOWER_GATHER_MS_IN_API = 0
FOLLOWER_GATHER_MS_OWN_PROCESS = 200
# What an on/off variable may say.
SWITCH_WORDS = {
    **dict.fromkeys(("1", "on", "true", "yes"), True),
    **dict.fromkeys(("0", "off", "false", "no"), False),
}


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    admin_token: str
    auditor_token: str
    payment_secret: str
    epay_key: str
    kafka_bootstrap: str | None
    order_ttl_minutes: int
    after_sales_days: int
    home: Path
    # Which secrets were generated (embedded mode), so start-up can print them.
    generated: tuple[str, ...] = ()
    kafka_topic: str = DEFAULT_KAFKA_TOPIC
    kafka_partitions: int = DEFAULT_KAFKA_PARTITIONS
    # None: the default for where the follower runs (``follower_gather_s``).
    follower_gather_ms: int | None = None
    # Off: eventsourcing's plain write path (a transaction per command, every aggregate
    # replayed from the store), to rule kami's committer and cache in or out of a problem,
    # and the HTTP benchmark's baseline.
    group_commit: bool = True

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    def follower_gather_s(self, *, own_process: bool) -> float:
        """Seconds the log follower gathers commits, as set or by where it runs."""
        if self.follower_gather_ms is not None:
            return self.follower_gather_ms / 1000
        return (FOLLOWER_GATHER_MS_OWN_PROCESS if own_process else FOLLOWER_GATHER_MS_IN_API) / 1000

    @property
    def pgdata(self) -> Path:
        """Where the embedded PostgreSQL keeps its data."""
        return self.home / "pg"

    def shop_settings(self) -> ShopSettings:
        return ShopSettings(
            order_ttl=timedelta(minutes=self.order_ttl_minutes),
            after_sales_window=timedelta(days=self.after_sales_days),
            group_commit=self.group_commit,
        )

    def secret_values(self) -> dict[str, str]:
        return {
            "KAMI_ADMIN_TOKEN": self.admin_token,
            "KAMI_AUDITOR_TOKEN": self.auditor_token,
            "KAMI_PAYMENT_SECRET": self.payment_secret,
            "KAMI_EPAY_KEY": self.epay_key,
        }

    def __repr__(self) -> str:
        # Settings end up in tracebacks and logs; the secrets must not.
        return (
            f"Settings(database_url={_redact_url(self.database_url)!r}, "
            f"kafka_bootstrap={self.kafka_bootstrap!r}, order_ttl_minutes={self.order_ttl_minutes}, "
            f"after_sales_days={self.after_sales_days}, home={str(self.home)!r}, secrets=<redacted>)"
        )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise SettingsError naming every bad variable."""
    env = os.environ if environ is None else environ
    home = Path(_text(env, "KAMI_HOME") or DEFAULT_HOME).expanduser().absolute()
    database_url = _text(env, "KAMI_DATABASE_URL")
    if database_url is not None:
        _check_database_url(database_url)
    order_ttl = _positive_int(env, "KAMI_ORDER_TTL_MINUTES", 15)
    after_sales = _positive_int(env, "KAMI_AFTER_SALES_DAYS", 7)

    given = {name: value for name in SECRET_VARS if (value := _text(env, name)) is not None}
    missing = tuple(name for name in SECRET_VARS if name not in given)
    generated: tuple[str, ...] = ()
    if missing and database_url is not None:
        raise SettingsError(
            f"KAMI_DATABASE_URL is set, so these secrets must be set too: {', '.join(missing)}",
            missing,
        )
    if missing:
        stored = load_or_create_secrets(home, missing)
        given.update({name: stored[name] for name in missing})
        generated = missing

    # Checked after the merge: a hand-edited secrets.json is held to the same rule.
    short = tuple(name for name in SECRET_VARS if len(given[name]) < MIN_SECRET_LENGTH)
    if short:
        raise SettingsError(
            f"secrets must have at least {MIN_SECRET_LENGTH} characters: {', '.join(short)}", short
        )
    if given["KAMI_ADMIN_TOKEN"] == given["KAMI_AUDITOR_TOKEN"]:
        # The auditor must not be able to act as admin.
        raise SettingsError(
            "KAMI_ADMIN_TOKEN and KAMI_AUDITOR_TOKEN must differ",
            ("KAMI_ADMIN_TOKEN", "KAMI_AUDITOR_TOKEN"),
        )
    return Settings(
        database_url=database_url,
        admin_token=given["KAMI_ADMIN_TOKEN"],
        auditor_token=given["KAMI_AUDITOR_TOKEN"],
        payment_secret=given["KAMI_PAYMENT_SECRET"],
        epay_key=given["KAMI_EPAY_KEY"],
        kafka_bootstrap=_text(env, "KAMI_KAFKA_BOOTSTRAP"),
        order_ttl_minutes=order_ttl,
        after_sales_days=after_sales,
        home=home,
        generated=generated,
        kafka_topic=_text(env, "KAMI_KAFKA_TOPIC") or DEFAULT_KAFKA_TOPIC,
        kafka_partitions=_positive_int(env, "KAMI_KAFKA_PARTITIONS", DEFAULT_KAFKA_PARTITIONS),
        follower_gather_ms=(
            None
            if _text(env, "KAMI_FOLLOWER_GATHER_MS") is None
            else _positive_int(env, "KAMI_FOLLOWER_GATHER_MS", 0, minimum=0)
        ),
        group_commit=_switch(env, "KAMI_GROUP_COMMIT", True),
    )


def load_or_create_secrets(home: Path, names: tuple[str, ...]) -> dict[str, str]:
    """The stored secrets for ``names``, generating and saving those not stored yet."""
    home.mkdir(parents=True, exist_ok=True)
    # Two processes starting at once must agree on one set of secrets.
    with open(home / ".secrets.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _load_or_create(home / SECRETS_FILE, names)


def _load_or_create(path: Path, names: tuple[str, ...]) -> dict[str, str]:
    stored: dict[str, str] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise SettingsError(f"cannot read {path}: {error}; fix or delete it") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"{path} is not a JSON object; fix or delete it")
        stored = {str(k): str(v) for k, v in loaded.items() if isinstance(v, str) and v}
    fresh = {name: secrets.token_urlsafe(32) for name in names if name not in stored}
    if fresh:
        stored.update(fresh)
        write_private_file(path, json.dumps(stored, indent=2, sort_keys=True) + "\n")
    return stored


def write_private_file(path: Path, text: str) -> None:
    """Write a file readable by its owner only, atomically, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Created 0600 from the start: a chmod after writing would leave a window of exposure.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)  # O_CREAT honours the umask only for new files; be explicit
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _text(env: Mapping[str, str], name: str) -> str | None:
    """A variable's value, None when unset or blank: an empty secret is no secret."""
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _positive_int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}", (name,)) from None
    if value < minimum:
        floor = "positive" if minimum == 1 else f"at least {minimum}"
        raise SettingsError(f"{name} must be {floor}, got {value}", (name,))
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _text(env, name)
    if raw is None:
        return default
    value = SWITCH_WORDS.get(raw.lower())
    if value is None:
        raise SettingsError(f"{name} must be on or off (1/0, true/false), got {raw!r}", (name,))
    return value


def _check_database_url(url: str) -> None:
    try:
        conninfo_to_dict(url)
    except ProgrammingError as error:
        raise SettingsError(
            f"KAMI_DATABASE_URL is not a libpq URL: {error}", ("KAMI_DATABASE_URL",)
        ) from None


def _redact_url(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        info = conninfo_to_dict(url)
    except ProgrammingError:
        return "<unparseable>"
    if info.get("password"):
        info["password"] = "***"
    return " ".join(f"{k}={v}" for k, v in info.items())
