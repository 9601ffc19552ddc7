"""The HTTP layer's secrets: who is admin or auditor, and the payment callback keys."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

MIN_SECRET_LENGTH = 16


@dataclass(frozen=True)
class ApiSettings:
    """Plain secrets as configured; `create_app` keeps only digests of the bearer tokens."""

    # repr=False: a logged or printed settings object must not show the secrets.
    admin_token: str = field(repr=False)
    auditor_token: str = field(repr=False)
    payment_secret: str = field(repr=False)
    epay_key: str = field(repr=False)

    def __post_init__(self) -> None:
        # A blank or short secret is a misconfiguration: refuse to start rather than
        # serve an admin API anyone can guess.
        for secret in fields(self):
            value = getattr(self, secret.name)
            if not isinstance(value, str) or len(value.strip()) < MIN_SECRET_LENGTH:
                raise ValueError(f"{secret.name} must be a secret of {MIN_SECRET_LENGTH}+ characters")
        if self.admin_token == self.auditor_token:
            raise ValueError("admin_token and auditor_token must differ")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        """Read KAMI_ADMIN_TOKEN, KAMI_AUDITOR_TOKEN, KAMI_PAYMENT_SECRET and KAMI_EPAY_KEY."""
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
        return cls(**{attr: source[var] for attr, var in names.items()})
