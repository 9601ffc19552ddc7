"""The tiering schedule and rectification deadline from the environment."""

from __future__ import annotations

from datetime import timedelta

import pytest

from consumers.tiering import policy_from_env
from kami.settings import SettingsError


def test_defaults_are_monthly_evaluations_and_a_30_day_deadline() -> None:
    policy = policy_from_env({})
    assert (policy.evaluation_every, policy.rectification) == (timedelta(days=30), timedelta(days=30))


def test_the_period_and_the_deadline_come_from_the_environment() -> None:
    policy = policy_from_env({"KAMI_TIER_EVALUATION_DAYS": "7", "KAMI_TIER_RECTIFICATION_DAYS": " 15 "})
    assert (policy.evaluation_every, policy.rectification) == (timedelta(days=7), timedelta(days=15))


@pytest.mark.parametrize(
    ("name", "value"),
    [("KAMI_TIER_EVALUATION_DAYS", "0"), ("KAMI_TIER_EVALUATION_DAYS", "monthly"),
     ("KAMI_TIER_RECTIFICATION_DAYS", "14"), ("KAMI_TIER_RECTIFICATION_DAYS", "31")],
)  # fmt: skip
def test_a_bad_value_is_a_settings_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        policy_from_env({name: value})
    assert error.value.variables == (name,)
