"""The platform fee table: the fee a merchant pays depends on its tier; core pays least."""

from __future__ import annotations

TIERS = ("core", "growth", "basic", "watch")
NEW_MERCHANT_TIER = "basic"

# Basis points of each paid order's amount.
FEE_RATE_BPS: dict[str, int] = {
    "core": 300,
    "growth": 400,
    "basic": 500,
    "watch": 600,
}


def fee_rate_for(tier: str) -> int:
    return FEE_RATE_BPS[tier]
