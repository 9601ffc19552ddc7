"""The HTTP layer's secrets: who is admin or auditor, and the payment callback keys."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from api.ratelimit import RateLimits

MIN_SECRET_LENGTH = 16
SECRETS = ("admin_token", "auditor_token", "payment_secret", "epay_key")


@dataclass(frozen=True)
class ApiSettings:
    """Plain secrets as configured; `create_app` keeps only digests of the bearer tokens."""

    # repr=False: a logged or printed settings object must not show the secrets.
    admin_token: str = field(repr=False)
    auditor_token: str = field(repr=False)
    payment_secret: str = field(repr=False)
    epay_key: str = field(repr=False)
    # From KAMI_RATE_LIMIT_* when not given: `kami serve` builds this object field by
    # field from its own settings, and the limits must apply there too.
    rate_limits: RateLimits = field(default_factory=RateLimits.from_env)

    def __post_init__(self) -> None:
        # A blank or short secret is a misconfiguration: refuse to start rather than
        # serve an admin API anyone can guess.
        for name in SECRETS:
            value = getattr(self, name)
            if not isinstance(value, str) or len(value.strip()) < MIN_SECRET_LENGTH:
                raise ValueError(f"{name} must be a secret of {MIN_SECRET_LENGTH}+ characters")
        if self.admin_token == self.auditor_token:
            raise ValueError("admin_token and auditor_token must differ")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        """Read the four KAMI_* secrets and the KAMI_RATE_LIMIT_* limits."""
        source = os.environ if env is None else env
        names = {
            "admin_token": "KAMI_ADMIN_TOKEN",
            "auditor_token": "KAMI_AUDITOR_TOKEN",
            "payment_secret": "KAMI_PAYMENT_SECRET",
            "epay_key": "KAMI_EPAY_KEY",
        }
        missing = [var for var in names.values() if not source.get(var)]
        if missing:
            raise ValueError(f"missing settings: {', '.join(missing)}")
        return cls(
            **{attr: source[var] for attr, var in names.items()}, rate_limits=RateLimits.from_env(source)
        )
