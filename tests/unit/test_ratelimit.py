"""Per-IP token buckets: a burst of `limit`, refilled per minute, on an injected clock."""

from __future__ import annotations

import pytest

from api.ratelimit import RateLimiter, RateLimits
from domain.exceptions import RateLimited


class Clock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(**limits: object) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    settings = RateLimits(**({"orders": 3, "lookups": 60, "callbacks": 6, "exempt": ()} | limits))  # type: ignore[arg-type]
    return RateLimiter(settings, clock), clock


def test_a_burst_of_the_limit_passes_and_the_next_request_waits_for_a_refill() -> None:
    rl, _ = limiter()
    assert [rl.wait_for("orders", "203.0.113.1") for _ in range(3)] == [0, 0, 0]

    # 3 a minute: one token every 20 s.
    assert rl.wait_for("orders", "203.0.113.1") == pytest.approx(20.0)


def test_time_refills_the_bucket_up_to_the_limit_only() -> None:
    rl, clock = limiter()
    for _ in range(3):
        rl.wait_for("orders", "203.0.113.1")

    clock.now += 20
    assert rl.wait_for("orders", "203.0.113.1") == 0
    assert rl.wait_for("orders", "203.0.113.1") > 0

    clock.now += 3600  # a long quiet spell earns no more than one burst
    assert [rl.wait_for("orders", "203.0.113.1") for _ in range(4)][-1] > 0


def test_addresses_and_kinds_have_buckets_of_their_own() -> None:
    rl, _ = limiter()
    for _ in range(3):
        rl.wait_for("orders", "203.0.113.1")

    assert rl.wait_for("orders", "203.0.113.2") == 0
    assert rl.wait_for("callbacks", "203.0.113.1") == 0
    assert rl.wait_for("orders", "2001:db8::1") == 0


def test_an_ipv6_address_is_one_client_however_it_is_written() -> None:
    rl, _ = limiter(orders=1)
    rl.wait_for("orders", "2001:db8:0:0::1")
    assert rl.wait_for("orders", "2001:DB8::1") > 0


def test_a_refusal_says_when_to_retry_in_whole_seconds() -> None:
    rl, _ = limiter(orders=1)
    rl.check("orders", "203.0.113.1")

    with pytest.raises(RateLimited) as refused:
        rl.check("orders", "203.0.113.1")

    assert refused.value.code == "rate_limited"
    assert refused.value.retry_after == 60
    assert "order placements" in refused.value.detail


def test_exempt_networks_peers_without_an_ip_and_a_zero_limit_are_never_limited() -> None:
    rl, _ = limiter(orders=1, lookups=0, exempt=("10.0.0.0/8", "::1/128"))
    for _ in range(5):
        assert rl.wait_for("orders", "10.1.2.3") == 0
        assert rl.wait_for("orders", "::1") == 0
        assert rl.wait_for("orders", "testclient") == 0
        assert rl.wait_for("orders", None) == 0
        assert rl.wait_for("lookups", "203.0.113.1") == 0


def test_limits_come_from_the_environment_with_loopback_exempt_by_default() -> None:
    env = {
        "KAMI_RATE_LIMIT_ORDERS": "5",
        "KAMI_RATE_LIMIT_LOOKUPS": " 0 ",
        "KAMI_RATE_LIMIT_EXEMPT": "10.0.0.0/8, ::1",
    }

    limits = RateLimits.from_env(env)

    assert (limits.orders, limits.lookups, limits.callbacks) == (5, 0, RateLimits().callbacks)
    assert limits.exempt == ("10.0.0.0/8", "::1")
    assert RateLimits.from_env({}).exempt == ("127.0.0.0/8", "::1/128")
    assert RateLimits.from_env({"KAMI_RATE_LIMIT_EXEMPT": ""}).exempt == ()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAMI_RATE_LIMIT_ORDERS": "ten"}, "KAMI_RATE_LIMIT_ORDERS"),
        ({"KAMI_RATE_LIMIT_CALLBACKS": "-1"}, "KAMI_RATE_LIMIT_CALLBACKS"),
        ({"KAMI_RATE_LIMIT_EXEMPT": "not-a-network"}, "KAMI_RATE_LIMIT_EXEMPT"),
    ],
)
def test_a_bad_setting_is_refused_at_start_naming_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        RateLimits.from_env(env)
