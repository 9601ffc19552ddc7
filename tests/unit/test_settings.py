"""Settings from the environment: embedded mode generates and keeps secrets, external mode demands them."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from kami.settings import (
    FOLLOWER_GATHER_MS_IN_API,
    FOLLOWER_GATHER_MS_OWN_PROCESS,
    SECRET_VARS,
    SettingsError,
    load_settings,
)

EXTERNAL_URL = "postgresql://kami@db.example:5432/kami"


def _secrets() -> dict[str, str]:
    return {name: f"{name.lower()}-value-0123456789" for name in SECRET_VARS}


def test_embedded_mode_generates_every_missing_secret_once(tmp_path: Path) -> None:
    settings = load_settings({"KAMI_HOME": str(tmp_path)})

    assert settings.embedded
    assert settings.database_url is None
    assert set(settings.generated) == set(SECRET_VARS)
    values = settings.secret_values()
    assert len(set(values.values())) == len(SECRET_VARS)
    assert all(len(value) >= 32 for value in values.values())


def test_generated_secrets_are_stored_private_and_reused_on_restart(tmp_path: Path) -> None:
    first = load_settings({"KAMI_HOME": str(tmp_path)})
    second = load_settings({"KAMI_HOME": str(tmp_path)})

    assert second.secret_values() == first.secret_values()
    path = tmp_path / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == first.secret_values()


def test_a_secret_from_the_environment_wins_and_is_not_stored(tmp_path: Path) -> None:
    admin = "admin-from-the-environment"

    settings = load_settings({"KAMI_HOME": str(tmp_path), "KAMI_ADMIN_TOKEN": admin})

    assert settings.admin_token == admin
    assert "KAMI_ADMIN_TOKEN" not in settings.generated
    assert "KAMI_ADMIN_TOKEN" not in json.loads((tmp_path / "secrets.json").read_text())


def test_a_newly_missing_secret_is_added_without_changing_the_stored_ones(tmp_path: Path) -> None:
    given = {"KAMI_HOME": str(tmp_path), "KAMI_EPAY_KEY": "epay-key-from-the-environment"}
    first = load_settings(given)

    second = load_settings({"KAMI_HOME": str(tmp_path)})

    assert second.admin_token == first.admin_token
    assert second.payment_secret == first.payment_secret
    assert second.epay_key != "epay-key-from-the-environment"
    assert "KAMI_EPAY_KEY" in json.loads((tmp_path / "secrets.json").read_text())


def test_external_database_with_every_secret_loads_without_touching_home(tmp_path: Path) -> None:
    env = {"KAMI_HOME": str(tmp_path / "home"), "KAMI_DATABASE_URL": EXTERNAL_URL, **_secrets()}

    settings = load_settings(env)

    assert not settings.embedded
    assert settings.database_url == EXTERNAL_URL
    assert settings.generated == ()
    assert settings.payment_secret == env["KAMI_PAYMENT_SECRET"]
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("missing", SECRET_VARS)
def test_external_database_refuses_to_start_without_a_secret(tmp_path: Path, missing: str) -> None:
    env = {"KAMI_HOME": str(tmp_path), "KAMI_DATABASE_URL": EXTERNAL_URL, **_secrets()}
    del env[missing]

    with pytest.raises(SettingsError) as raised:
        load_settings(env)

    assert missing in str(raised.value)
    assert raised.value.variables == (missing,)
    assert not (tmp_path / "secrets.json").exists()


def test_external_database_names_every_missing_secret_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"KAMI_DATABASE_URL": EXTERNAL_URL})

    assert raised.value.variables == SECRET_VARS
    for name in SECRET_VARS:
        assert name in str(raised.value)


def test_a_blank_secret_counts_as_missing() -> None:
    env = {"KAMI_DATABASE_URL": EXTERNAL_URL, **_secrets(), "KAMI_AUDITOR_TOKEN": "   "}

    with pytest.raises(SettingsError, match="KAMI_AUDITOR_TOKEN"):
        load_settings(env)


def test_a_short_secret_is_refused_by_name() -> None:
    env = {"KAMI_DATABASE_URL": EXTERNAL_URL, **_secrets(), "KAMI_PAYMENT_SECRET": "short"}

    with pytest.raises(SettingsError, match="KAMI_PAYMENT_SECRET"):
        load_settings(env)


def test_the_auditor_token_must_differ_from_the_admin_token() -> None:
    same = "the-same-token-for-both-roles"
    env = {**_secrets(), "KAMI_ADMIN_TOKEN": same, "KAMI_AUDITOR_TOKEN": same}

    with pytest.raises(SettingsError, match="differ"):
        load_settings({"KAMI_DATABASE_URL": EXTERNAL_URL, **env})


def test_durations_default_to_fifteen_minutes_and_seven_days(tmp_path: Path) -> None:
    settings = load_settings({"KAMI_HOME": str(tmp_path)})

    assert settings.order_ttl_minutes == 15
    assert settings.after_sales_days == 7
    assert settings.shop_settings().order_ttl == timedelta(minutes=15)
    assert settings.shop_settings().after_sales_window == timedelta(days=7)


def test_durations_and_kafka_come_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "KAMI_HOME": str(tmp_path),
            "KAMI_ORDER_TTL_MINUTES": "30",
            "KAMI_AFTER_SALES_DAYS": "3",
            "KAMI_KAFKA_BOOTSTRAP": "kafka:9092",
        }
    )

    assert settings.shop_settings().order_ttl == timedelta(minutes=30)
    assert settings.shop_settings().after_sales_window == timedelta(days=3)
    assert settings.kafka_bootstrap == "kafka:9092"


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5"])
def test_a_bad_duration_is_refused_by_name(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="KAMI_ORDER_TTL_MINUTES"):
        load_settings({"KAMI_HOME": str(tmp_path), "KAMI_ORDER_TTL_MINUTES": value})


def test_the_follower_gathers_by_where_it_runs_unless_told(tmp_path: Path) -> None:
    default = load_settings({"KAMI_HOME": str(tmp_path)})
    assert default.follower_gather_s(own_process=False) == FOLLOWER_GATHER_MS_IN_API / 1000 == 0
    assert default.follower_gather_s(own_process=True) == FOLLOWER_GATHER_MS_OWN_PROCESS / 1000 > 0
    for told, seconds in (("5", 0.005), ("0", 0.0)):
        settings = load_settings({"KAMI_HOME": str(tmp_path), "KAMI_FOLLOWER_GATHER_MS": told})
        assert settings.follower_gather_s(own_process=False) == seconds
        assert settings.follower_gather_s(own_process=True) == seconds


@pytest.mark.parametrize("value", ["-1", "five", "2.5"])
def test_a_bad_follower_gather_is_refused_by_name(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="KAMI_FOLLOWER_GATHER_MS"):
        load_settings({"KAMI_HOME": str(tmp_path), "KAMI_FOLLOWER_GATHER_MS": value})


def test_group_commit_is_on_unless_turned_off(tmp_path: Path) -> None:
    default = load_settings({"KAMI_HOME": str(tmp_path)})
    assert default.group_commit and default.shop_settings().group_commit
    for word in ("0", "off", "False", "no"):
        plain = load_settings({"KAMI_HOME": str(tmp_path), "KAMI_GROUP_COMMIT": word})
        assert not plain.group_commit and not plain.shop_settings().group_commit
    assert load_settings({"KAMI_HOME": str(tmp_path), "KAMI_GROUP_COMMIT": "on"}).group_commit


@pytest.mark.parametrize("value", ["2", "maybe", "enabled"])
def test_a_bad_group_commit_switch_is_refused_by_name(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="KAMI_GROUP_COMMIT"):
        load_settings({"KAMI_HOME": str(tmp_path), "KAMI_GROUP_COMMIT": value})


def test_a_malformed_database_url_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="KAMI_DATABASE_URL"):
        load_settings({"KAMI_DATABASE_URL": "host=x port", **_secrets()})


def test_a_corrupt_secrets_file_is_an_error_not_a_silent_new_identity(tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text("{not json")

    with pytest.raises(SettingsError, match="secrets.json"):
        load_settings({"KAMI_HOME": str(tmp_path)})


def test_the_repr_hides_the_secrets(tmp_path: Path) -> None:
    env = {"KAMI_DATABASE_URL": "postgresql://kami:hunter2-password@db/kami", **_secrets()}

    text = repr(load_settings(env))

    assert "hunter2" not in text
    for value in _secrets().values():
        assert value not in text


def test_a_hand_edited_short_secret_in_the_file_is_refused_by_name(tmp_path: Path) -> None:
    load_settings({"KAMI_HOME": str(tmp_path)})
    path = tmp_path / "secrets.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, "KAMI_EPAY_KEY": "short"}))

    with pytest.raises(SettingsError, match="KAMI_EPAY_KEY"):
        load_settings({"KAMI_HOME": str(tmp_path)})
