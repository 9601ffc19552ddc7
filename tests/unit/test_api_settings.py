"""ApiSettings refuses secrets that would leave the API open, and never shows them."""

from __future__ import annotations

import pytest

from api.settings import ApiSettings

GOOD = {
    "admin_token": "a" * 16,
    "auditor_token": "b" * 16,
    "payment_secret": "c" * 16,
    "epay_key": "d" * 16,
}


def test_good_secrets_are_accepted_and_hidden_from_repr() -> None:
    settings = ApiSettings(**GOOD)

    assert settings.admin_token == "a" * 16
    assert all(secret not in repr(settings) for secret in GOOD.values())


@pytest.mark.parametrize("name", sorted(GOOD))
@pytest.mark.parametrize("bad", ["", "   ", "short", " " * 20])
def test_a_blank_or_short_secret_is_refused(name: str, bad: str) -> None:
    with pytest.raises(ValueError, match=name):
        ApiSettings(**(GOOD | {name: bad}))


def test_the_auditor_cannot_share_the_admin_token() -> None:
    with pytest.raises(ValueError, match="differ"):
        ApiSettings(**(GOOD | {"auditor_token": GOOD["admin_token"]}))


def test_settings_come_from_the_kami_variables() -> None:
    env = {
        "KAMI_ADMIN_TOKEN": "A" * 20,
        "KAMI_AUDITOR_TOKEN": "B" * 20,
        "KAMI_PAYMENT_SECRET": "C" * 20,
        "KAMI_EPAY_KEY": "D" * 20,
    }

    settings = ApiSettings.from_env(env)

    assert (settings.admin_token, settings.epay_key) == ("A" * 20, "D" * 20)
    with pytest.raises(ValueError, match="KAMI_EPAY_KEY"):
        ApiSettings.from_env({k: v for k, v in env.items() if k != "KAMI_EPAY_KEY"})
