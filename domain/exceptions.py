"""Domain errors. Each carries a stable machine code; the API maps classes to statuses."""

from __future__ import annotations


class KamiError(Exception):
    """Base of every error a command can raise on purpose."""

    code = "error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(KamiError):
    """Input that is well-formed JSON but breaks a rule (bad money, bad quantity)."""

    code = "invalid_input"


class InvalidMoney(InvalidInput):
    code = "invalid_money"


class NotFound(KamiError):
    code = "not_found"


class Unauthorized(KamiError):
    code = "unauthorized"


class Forbidden(KamiError):
    code = "forbidden"


class OutOfStock(KamiError):
    code = "out_of_stock"


class OverLimit(InvalidInput):
    code = "over_limit"


class UnknownReferrer(InvalidInput):
    code = "unknown_referrer"


class UnknownPromoter(InvalidInput):
    code = "unknown_promoter"


class DuplicateTxn(KamiError):
    """A txn id already used by a different order: a forged or misrouted callback."""

    code = "txn_conflict"


class BadSignature(KamiError):
    code = "bad_signature"


class AmountMismatch(KamiError):
    code = "amount_mismatch"


class InvalidState(KamiError):
    """The command does not apply to the aggregate in its current state."""

    code = "invalid_state"


class AlreadyReviewed(InvalidState):
    code = "already_reviewed"


class ProductUnavailable(InvalidState):
    code = "product_unavailable"


class MerchantRestricted(InvalidState):
    code = "merchant_restricted"


class InsufficientBalance(KamiError):
    code = "insufficient_balance"


class Busy(KamiError):
    """Contention did not clear within the retry budget; safe to retry."""

    code = "busy"


class ConcurrencyConflict(Exception):
    """A concurrent writer won; the command must reload and retry (never leaves Shop)."""


class ProjectionLagging(KamiError):
    """A read model has not yet processed the position the caller asked for."""

    code = "projection_lagging"


class BuyerBlacklisted(Forbidden):
    """The buyer's contact is on the merchant's or the platform's blacklist."""

    code = "buyer_blacklisted"


class IdempotencyKeyReused(InvalidInput):
    """An Idempotency-Key already placed an order for a different request."""

    code = "idempotency_key_reused"


class RateLimited(KamiError):
    """Too many requests of one kind from one client address; retry after ``retry_after`` s."""

    code = "rate_limited"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
